"""One Hypothesis profile for every test: derandomized and without an example database, so CI sees the same
generated cases on every run (a property suite must not be flaky) and nothing is written into the checkout.
One scratch artifact store for the session (`artifact_root`)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before any test imports timm: a missing weight file fails at once, no retries

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("simstress", derandomize=True, database=None)
settings.load_profile("simstress")


@pytest.fixture(scope="session")
def artifact_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One scratch artifact store for the session: the smoke zoo's networks are trained once, then shared."""
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(autouse=True)
def _quiet_does_not_leak() -> Iterator[None]:
    """`simstress --quiet` silences builders through TQDM_DISABLE in its own process; a test calling `main` shares
    the process, so the variable is restored after each test."""
    before = os.environ.get("TQDM_DISABLE")
    yield
    if before is None:
        os.environ.pop("TQDM_DISABLE", None)
    else:
        os.environ["TQDM_DISABLE"] = before
