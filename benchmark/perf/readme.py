"""The README's generated performance section: a markdown table of the results, between two markers."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .figures import draw_figures
from .results import rows

README_START, README_END = "<!-- perf:start -->", "<!-- perf:end -->"
FLOOR_WORDS = ("the p×p singular values (in the input's dtype for cca_mean and svcca, in float64 for Procrustes, "
               "pwcca and the streaming routes, as each takes them for p < n), two p×p Cholesky factors (the CCA "
               "family), two p×p eigendecompositions (svcca); for rbf_cka the exact median and the exponentials of "
               "both n×n distance matrices, for rsa the sort of both RDMs' upper triangles, for mutual_knn each "
               "row's top-k; for the probes (no products counted) 100 gradient evaluations of the multinomial loss "
               "per probe")


def _fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def cka_untiled_limit() -> str:
    """rbf_cka's threshold for row tiles, in words."""
    from simstress.metrics.cka import RBF_UNTILED_MAX_BYTES

    return f"{RBF_UNTILED_MAX_BYTES / 2**20:.0f} MiB per n×n matrix"


def render_table(docs: list[dict]) -> str:
    """Markdown: one row per metric × size × dtype × device; baselines shown as the reference rows."""
    lines = []
    for doc in docs:
        meta = doc["simstress"]
        lines += [(f"**{meta['device']}** (torch {meta['torch']}, {meta['threads']} threads, load average at start "
                  f"{meta['load_average'][0]:.1f}; `{meta['command']}`)"), "",
                  "| metric | n × p | dtype | median s | peak MiB | GFLOP/s | roofline | floor | vs plain "
                  "| f32 − f64 |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        table = sorted(rows(doc), key=lambda r: (r["kind"] == "baseline", r["name"], r["n"], r["dtype"]))
        demos = [r for r in table if r["kind"] == "demo"]
        tilings = [r for r in table if r["kind"] == "rbf_tiling"]
        networks = [r for r in table if r["kind"] == "network"]
        for r in table:
            if r["kind"] in ("demo", "rbf_tiling", "network"):
                continue
            mem = None if r.get("peak_bytes") is None else r["peak_bytes"] / 2**20
            lines.append(
                f"| {r['name']}{' (baseline)' if r['kind'] == 'baseline' else ''} | {r['n']} × {r['p']} | "
                f"{r['dtype']} | {r['median']:.4g} | {_fmt(mem, '.0f')} | {_fmt(r.get('gflops'), '.0f')} | "
                f"{_fmt(r.get('roofline_ratio'), '.2f')} | {_fmt(r.get('floor_ratio'), '.2f')} | "
                f"{_fmt(r.get('reference_ratio'), '.2f')} | {_fmt(r.get('f32_error'), '.1e')} |")
        if demos:
            lines += ["", ("Exact streaming (`simstress.streaming.LinearMoments`, batches of 10000 rows made on the "
                      "fly; float64 values, and |float32 − float64| of the same batches):"), "",
                      "| rows × p | time s | rows/s | peak MiB | linear_cka | procrustes | cca_mean |",
                      "|---|---:|---:|---:|---|---|---|"]
            for r in demos:
                vals = " | ".join(f"{v['float64']:.6f} (f32 err {v['float32_error']:.1e})"
                                  for v in r["values"].values())
                mem = None if r.get("peak_bytes") is None else r["peak_bytes"] / 2**20
                lines.append(f"| {r['n']} × {r['p']} | {r['median']:.1f} | {r['rows_per_s']:.3g} | "
                             f"{_fmt(mem, '.0f')} | {vals} |")
        for r in tilings:
            lines += ["", (f"`rbf_cka` at n = {r['n']}, p = {r['p']}, {r['dtype']}: row tiles (the default above "
                      f"{cka_untiled_limit()}) against the untiled n×n path:"), "",
                      "| route | value | time s | peak MiB above the inputs |", "|---|---|---:|---:|"]
            for route, v in r["routes"].items():
                lines.append(f"| {route} | {v['value']:.10f} | {v['seconds']:.1f} | "
                             f"{_fmt(None if v['peak_bytes'] is None else v['peak_bytes'] / 2**20, '.0f')} |")
        if networks:
            lines += ["", ("The networks' work (M1: random images of Fashion-MNIST's padded shape, batch 128 for a "
                      "training step, the 10,000-image test set otherwise; timm: feature extraction of the "
                      "pretrained models, every stage pooled plus pre-logits and logits, 200 random images, p = "
                      "the input resolution):"), "",
                      "| work | images | median s | images/s |", "|---|---:|---:|---:|"]
            lines += [f"| {r['name']} | {r['n']} | {r['median']:.4g} | {r['images_per_s']:.4g} |" for r in networks]
        if meta["skipped"]:
            lines += ["", "Skipped (with reasons):", ""]
            by_reason: dict[str, list[str]] = {}
            for s in meta["skipped"]:
                by_reason.setdefault(s["reason"], []).append(s["case"])
            for reason, cases in by_reason.items():  # a reason shared by many cases (no CUDA) is one line
                lines += ([f"- {c}: {reason}" for c in cases] if len(cases) <= 3 else
                          [f"- {len(cases)} cases ({cases[0]} … {cases[-1]}): {reason}"])
        lines.append("")
    return "\n".join(lines)


def report(results_dir: Path, readme: Path, figures_dir: Path) -> int:
    """Rewrite the section between the README markers and the figures from the results JSON; an exit code."""
    docs = [json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))]
    if not docs:
        print(f"no results in {results_dir}; run `simstress perf` first", file=sys.stderr)
        return 2
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        print(f"{readme} lacks the markers {README_START} / {README_END}; add them where the table goes",
              file=sys.stderr)
        return 2
    figs = draw_figures(docs, figures_dir)
    links = "".join(f"\n![perf]({Path(os.path.relpath(f, readme.parent)).as_posix()})\n" for f in figs)
    body = (f"{README_START}\nMeasured by `simstress perf` (regenerate this section with `simstress perf --report`)."
            f" roofline = time of the unavoidable products (X̃ᵀX̃, ỸᵀỸ, ỸᵀX̃ / ỸᵀX̃ / the n×n Grams) ÷ "
            f"the metric's time; floor = the time of everything the metric cannot avoid ÷ its time: the products "
            f"plus {FLOOR_WORDS}. vs plain = a plain torch implementation's time ÷ the metric's (> 1: faster). "
            f"f32 − f64 = |float32 − float64 value| of the same float32 numbers.\n\n"
            f"{render_table(docs)}{links}\n{README_END}")
    start, end = text.index(README_START), text.index(README_END) + len(README_END)
    readme.write_text(text[:start] + body + text[end:])
    print(f"wrote the performance section of {readme} and {len(figs)} figure(s) in {figures_dir}")
    return 0
