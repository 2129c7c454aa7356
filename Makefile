VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test leaderboard perf clean

setup: $(STAMP)

# Reinstall only when the project metadata changes.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# `run` exits 1 when some cells are recorded as errors (shown as ✗ on the page); anything else stops the build.
leaderboard: $(STAMP)
	$(VENV)/bin/simstress run --scale default || test $$? -eq 1
	$(VENV)/bin/simstress leaderboard

perf: $(STAMP)
	$(VENV)/bin/simstress perf

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
