"""Post-processing of pytest-benchmark's JSON: derived ratios, one results file per device, flat rows."""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path

import torch

from .profiles import PROFILES, ROOFLINE_BASELINES


def device_slug(device: str) -> str:
    """The device's file-name slug: GPU name, or CPU model and core count ('cpu-amd-epyc-2c')."""
    if device == "cuda":
        name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cuda"
    else:
        model = next((line.split(":", 1)[1] for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor() or "cpu")
        name = f"cpu {model} {os.cpu_count()}c"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def annotate(benchmarks: list[dict]) -> None:
    """Add gflops, roofline_ratio, floor_ratio, reference_ratio and f32_error to each benchmark's extra_info, in
    place (profiles.Profile: roofline = the products' time ÷ the metric's, floor = the products' and the floor
    baselines' time ÷ the metric's, reference = the plain reference's time ÷ the metric's)."""
    by_key = {}
    for b in benchmarks:
        e = b["extra_info"]
        by_key[(e["kind"], e["name"], e["n"], e["p"], e["dtype"], e["device"])] = b

    def median(kind: str, name: str, e: dict) -> float | None:
        b = by_key.get((kind, name, e["n"], e["p"], e["dtype"], e["device"]))
        return b["stats"]["median"] if b else None

    for b in benchmarks:
        e, t = b["extra_info"], b["stats"]["median"]
        e["gflops"] = e["flops"] / t / 1e9 if e.get("flops") else None
        prof = PROFILES.get(e["name"])
        e["roofline_ratio"] = e["floor_ratio"] = e["reference_ratio"] = None
        e["f32_error"] = abs(e["value"] - e["value_float64"]) if e.get("value_float64") is not None else None
        if e["kind"] == "baseline" or prof is None:
            continue
        base = 0.0
        if prof.baseline is not None:
            times = [x for x in (median("baseline", name, e) for name in ROOFLINE_BASELINES[prof.baseline]) if x]
            base = min(times) if times else None  # gram3: the faster of plain GEMMs and symmetric panels
            e["roofline_ratio"] = None if base is None else base / t
        rest = [median("baseline", name, e) for name in prof.floor]
        if base is not None and all(x is not None for x in rest):
            e["floor_ratio"] = (base + sum(rest)) / t
        ref = median("baseline", prof.reference, e) if prof.reference else None
        e["reference_ratio"] = None if ref is None else ref / t


def write_results(raw: dict, skipped: list[dict], out_dir: Path, command: str) -> list[Path]:
    """One pytest-benchmark JSON per device (so `--benchmark-compare` reads it), plus simstress's fields."""
    annotate(raw["benchmarks"])
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    devices = sorted({b["extra_info"]["device"] for b in raw["benchmarks"]} | {s["device"] for s in skipped})
    for device in devices:
        if device == "cuda" and not torch.cuda.is_available():
            continue  # only skips: nothing measured there; the reasons are in the CPU file
        doc = dict(raw)
        doc["benchmarks"] = [b for b in raw["benchmarks"] if b["extra_info"]["device"] == device]
        doc["simstress"] = {
            "device": device_slug(device),
            "command": command,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_average": os.getloadavg(),
            "skipped": [s for s in skipped if s["device"] == device or device == "cpu" and s["device"] == "cuda"],
        }
        path = out_dir / f"{device_slug(device)}.json"
        path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


def rows(doc: dict) -> list[dict]:
    """A results document's benchmarks as flat rows: extra_info plus the median time."""
    return [b["extra_info"] | {"median": b["stats"]["median"]} for b in doc["benchmarks"]]
