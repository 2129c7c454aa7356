"""`simstress perf`: speed and memory of every metric, against the matrix products it cannot avoid.

The suite is `suite/` (installed with the package; pytest-benchmark underneath, deselected from any pytest run that
`simstress perf` did not start): metric × (n, p) × dtype × device, inputs X, Y (n, p) ReLU activations of a
shared latent. Each case is warmed up once, then timed for 2–5 rounds on fresh copies of the inputs (a probe
caches its fit per tensor; the copies are made outside the timing); the median is reported. Per case:

- median time; peak host memory above the inputs (exact: the kernel's VmHWM high-water mark, reset through
  /proc/self/clear_refs before the first timed round) or on CUDA `torch.cuda.max_memory_allocated`;
- FLOPs of the algorithm (leading dense linear-algebra terms, Golub & Van Loan) and the achieved GFLOP/s;
- roofline ratio = time of the bare products the metric cannot avoid, measured in the same run on already
  centred inputs, ÷ the metric's time. gram3: X̃ᵀX̃, ỸᵀỸ, ỸᵀX̃ (the faster of plain GEMMs and
  `feature_gram`'s symmetric panels); cross: ỸᵀX̃; grams: X̃X̃ᵀ, ỸỸᵀ (n×n);
- floor ratio = time of everything the metric cannot avoid ÷ its time: the products plus its profile's floor
  baselines (profiles.PROFILES: p×p singular values, Cholesky factors or eigendecompositions; the exact median
  and exponentials, the sort, or the top-k of the n×n matrices; 100 gradient evaluations per probe);
- vs plain = time of a plain torch implementation of the same metric ÷ its time, where a target names one (rsa,
  rbf_cka: measure.rsa_reference, measure.rbf_reference);
- the float32 error: |float32 value − float64 value| of the same float32 numbers (input precision float32); the
  float64 value is computed (untimed) inside the float32 case, so the error is known even where the float64
  timing is skipped for budget.

Two fixed-size showcases run beside the grid (not under --quick or --sizes, and only when --metrics selects them):
exact streaming of 1e5 and 1e6 rows × 512 features (suite/test_perf_streaming.py), and rbf_cka at
n = 20000, p = 1024 in float32, row tiles against the untiled n×n path (suite/test_perf_rbf_tiling.py).
The model zoo's work runs beside them (--metrics 'networks:m1'): an M1 training step, the activation pass over the
full test set, a layer × layer CKA map of one network, and the map forward + backward of one manipulation step at
batch 128 per attacker (suite/test_perf_networks.py); --metrics 'networks:timm' times the pretrained models'
feature extraction, images per second per model and input resolution (suite/test_perf_pretrained.py).

A case that cannot run is skipped with its reason recorded (no CUDA; n×n memory over the cap; a call
predicted, from the previous size and the FLOP model, to take longer than --budget seconds).

    simstress perf [--quick | --sizes 1000x256,...] [--metrics PAT] [--devices cpu,cuda] [--budget S] [--out DIR]
    simstress perf --compare results/perf/cpu-....json                          # run, flag regressions
    simstress perf --report [--out DIR] [--readme README.md] [--figures DIR]     # README section + figures

Paths are relative to the current directory (results/perf/, README.md, results/figures/).

Modules: profiles (FLOP models), grid (cases, inputs, skip rules), measure (timer, memory probe), results
(derived ratios, JSON per device), figures, readme (the generated README section), cli (`simstress perf`).
"""

from __future__ import annotations

from .cli import main

__all__ = ["main"]
