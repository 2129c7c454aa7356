"""One Hypothesis profile for every test: derandomized and without an example database, so CI sees the same
generated cases on every run (a property suite must not be flaky) and nothing is written into the checkout."""

from hypothesis import settings

settings.register_profile("simstress", derandomize=True, database=None)
settings.load_profile("simstress")
