VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

FMNIST_DIR := $(if $(SIMSTRESS_FASHION_MNIST),$(SIMSTRESS_FASHION_MNIST),/usr/share/datasets/fashion-mnist)
FMNIST := $(FMNIST_DIR)/t10k-images-idx3-ubyte.gz

.PHONY: setup data test leaderboard perf clean

setup: $(STAMP) data

# Fashion-MNIST from Debian's package (never downloaded by simstress itself): installed when missing and we are
# root; otherwise stop and say what to install. The tests use the slice that ships with simstress.
data:
	@test -f $(FMNIST) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }; \
	  fi; \
	  test -f $(FMNIST) || { echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist'," \
	    "or set SIMSTRESS_FASHION_MNIST to a folder holding its four .gz files"; exit 1; }; }

# Reinstall only when the project metadata changes.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The tests need only the slice that ships with simstress: a machine without Fashion-MNIST is told, not stopped.
# One worker per core of the reference machine; a test module stays on one worker, so its fixtures are built once.
TEST_WORKERS ?= 2
test: $(STAMP)
	-@$(MAKE) --no-print-directory data
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope

# `run` exits 1 when some cells are recorded as errors (shown as ✗ on the page); anything else stops the build.
leaderboard: setup
	$(VENV)/bin/simstress run --scale default || test $$? -eq 1
	$(VENV)/bin/simstress leaderboard

perf: $(STAMP)
	$(VENV)/bin/simstress perf

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
