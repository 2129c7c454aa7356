"""Score formulas shared by the tasks; each maps oriented, self-normalised similarities to [0, 1].

A non-finite similarity (the metric refused the case, or its self-similarity on the reference was not positive)
counts as the worst behaviour for the task: 0 where higher is better, 1 where lower is better, a failed
comparison elsewhere. (A metric that returns NaN or Inf never reaches a score: `Task.evaluate` makes that an
error cell.) Orders are read at RESOLUTION, so rounding noise is no order; but an order is not an effect either:
a score that rewards a change of similarity requires one larger than the metric's own noise. A win needs a margin
of at least EFFECT_FLOOR (1% of the self-similarity), and a sweep's order earns full credit only once the
similarity moves by FULL_EFFECT (10% of it) across the sweep, pro rata below (`effect_weight`).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

RESOLUTION = 1e-9  # similarities are normalised to ~[0, 1]; float64 rounding noise in metrics stays far below
EFFECT_FLOOR = 0.01  # the smallest margin of similarity that counts as a win
FULL_EFFECT = 0.1  # the range of similarity over a sweep that earns an order full credit


def resolved(s: np.ndarray) -> np.ndarray:
    """Similarities rounded to RESOLUTION, so that rounding noise reads as a tie."""
    return np.round(np.asarray(s, dtype=np.float64) / RESOLUTION) * RESOLUTION


def clip01(s: np.ndarray, nonfinite: float = 0.0) -> np.ndarray:
    """clip(s, 0, 1) with non-finite values mapped to `nonfinite` (the worst value: 0 where higher is better)."""
    s = np.asarray(s, dtype=np.float64)
    return np.clip(np.where(np.isfinite(s), s, nonfinite), 0.0, 1.0)


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


def effect_weight(s: np.ndarray) -> float:
    """min(1, (max s − min s) / FULL_EFFECT): how much of an order's credit the size of the change earns.

    0 when a similarity is non-finite (the worst outcome).
    """
    s = np.asarray(s, dtype=np.float64)
    if not np.isfinite(s).all():
        return 0.0
    return float(min(1.0, (s.max() - s.min()) / FULL_EFFECT))


def pair_matrix(curve: pd.DataFrame, size: int) -> np.ndarray:
    """(size, size) matrix of the curve's similarity at rows `i`, columns `j`, at RESOLUTION; −inf where a
    similarity is non-finite (it can never win a comparison)."""
    sims = np.full((size, size), -np.inf)
    s = curve["similarity"].to_numpy(dtype=np.float64)
    finite = np.isfinite(s)
    sims[curve["i"].to_numpy()[finite], curve["j"].to_numpy()[finite]] = resolved(s[finite])
    return sims
