"""Score formulas shared by the tasks; each maps oriented, self-normalised similarities to [0, 1].

A non-finite similarity (the metric returned NaN/Inf, or its self-similarity on the reference was not positive)
counts as the worst behaviour for the task: 0 where higher is better, a failed comparison elsewhere. Orders and
wins are read at RESOLUTION: a metric that is constant up to rounding noise (e.g. mean CCA after deleting
principal components, 1 − 1e-15 against 1) has no order and wins nothing.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

RESOLUTION = 1e-9  # similarities are normalised to ~[0, 1]; float64 rounding noise in metrics stays far below


def resolved(s: np.ndarray) -> np.ndarray:
    """Similarities rounded to RESOLUTION, so that rounding noise reads as a tie."""
    return np.round(np.asarray(s, dtype=np.float64) / RESOLUTION) * RESOLUTION


def clip01(s: np.ndarray) -> np.ndarray:
    """clip(s, 0, 1) with non-finite values mapped to 0."""
    s = np.asarray(s, dtype=np.float64)
    return np.clip(np.where(np.isfinite(s), s, 0.0), 0.0, 1.0)


def mean_clipped(s: np.ndarray) -> float:
    """mean(clip(s, 0, 1)): the robustness score (1 = similarity stayed at self-similarity everywhere)."""
    return float(clip01(s).mean())


def positive_spearman(a: np.ndarray, b: np.ndarray) -> float:
    """max(0, Spearman ρ(a, b)) at RESOLUTION; 0 when ρ is undefined (a constant input) or an input is non-finite."""
    a, b = resolved(a), resolved(b)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        rho = stats.spearmanr(a, b).statistic
    return float(max(0.0, rho)) if np.isfinite(rho) else 0.0
