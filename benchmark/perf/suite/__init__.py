"""The `simstress perf` suite: pytest-benchmark modules run by `simstress perf` (benchmark/perf/cli.py), installed
with the package so that the command works without the repository. Its conftest deselects every item unless the
run was started by `simstress perf`, so a user's own `pytest` never starts the grid."""
