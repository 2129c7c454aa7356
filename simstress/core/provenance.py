"""Provenance stamped into every record: package versions, git commit, device."""

from __future__ import annotations

import platform
import subprocess
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from .inputs import resolve_device

# The distributions whose versions can change a computed value.
PACKAGES = ("simstress", "torch", "numpy", "scipy", "pandas")
SOURCE_ROOT = Path(__file__).resolve().parents[2]


@cache
def package_versions() -> dict[str, str]:
    """Python and the value-relevant packages, e.g. {"python": "3.11.7", "torch": "2.14.1", ...}."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


@cache
def git_commit() -> str:
    """HEAD of the simstress checkout, suffixed `-dirty` when tracked files differ; "unknown" outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def run_device(device: str | None) -> str:
    """The device a run computes on: `device`, checked (`inputs.resolve_device`), or CUDA when present, else CPU."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(resolve_device(device))


@cache
def device_name(device: str) -> str:
    """Human-readable hardware name: the GPU model for CUDA, the CPU model otherwise."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
