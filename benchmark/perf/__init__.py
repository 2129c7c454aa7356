"""`simstress perf`: speed and memory of every metric, against the matrix products it cannot avoid.

The suite is tests/perf (marker `perf`, pytest-benchmark underneath): metric × (n, p) × dtype × device, inputs
X, Y (n, p) ReLU activations of a shared latent. Each case is warmed up once, then timed for 2–5 rounds
(fewer when a call takes seconds); the median is reported. Per case:

- median time; peak host memory above the inputs (exact: the kernel's VmHWM high-water mark, reset through
  /proc/self/clear_refs before the first timed round) or on CUDA `torch.cuda.max_memory_allocated`;
- FLOPs of the algorithm (leading dense linear-algebra terms, Golub & Van Loan) and the achieved GFLOP/s;
- roofline ratio = time of the bare products the metric cannot avoid, measured in the same run on already
  centred inputs, ÷ the metric's time. gram3: X̃ᵀX̃, ỸᵀỸ, ỸᵀX̃ (the faster of plain GEMMs and
  `feature_gram`'s symmetric panels); cross: ỸᵀX̃; grams: X̃X̃ᵀ, ỸỸᵀ (n×n). `floor_ratio` adds the p×p
  singular values a Procrustes or CCA algorithm needs on top of the products;
- the float32 error: |float32 value − float64 value| on the same inputs; the float64 value is computed (untimed)
  inside the float32 case, so the error is known even where the float64 timing is skipped for budget.

Two fixed-size showcases run beside the grid (not under --quick, and only when --metrics selects them):
exact streaming of 1e5 and 1e6 rows × 512 features (tests/perf/test_perf_streaming.py), and rbf_cka at
n = 20000, p = 1024 in float32, row tiles against the untiled n×n path (tests/perf/test_perf_rbf_tiling.py).
The model zoo's work runs beside them (--metrics 'networks:m1'): an M1 training step, the activation pass over the
full test set, a layer × layer CKA map of one network, and the map forward + backward of one manipulation step at
batch 128 per attacker (tests/perf/test_perf_networks.py); --metrics 'networks:timm' times the pretrained models'
feature extraction, images per second per model and input resolution (tests/perf/test_perf_pretrained.py).

A case that cannot run is skipped with its reason recorded (no CUDA; n×n memory over the cap; a call
predicted, from the previous size and the FLOP model, to take longer than --budget seconds).

    simstress perf [--quick] [--metrics PAT] [--devices cpu,cuda] [--budget S]   # run, write results/perf/
    simstress perf --compare results/perf/cpu-....json                          # run, flag regressions
    simstress perf --report                                # README performance section + results/figures/

Modules: profiles (FLOP models), grid (cases, inputs, skip rules), measure (timer, memory probe), results
(derived ratios, JSON per device), figures, readme (the generated README section), cli (`simstress perf`).
"""

from __future__ import annotations

from .cli import main

__all__ = ["main"]
