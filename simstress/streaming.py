"""Streaming similarity for inputs too big for memory: accumulate over row batches, one pass over the data.

Exact estimators. Linear CKA, Procrustes and the CCA family (cca_mean, cca_r2, svcca, pwcca) see the data only
through the centred co-moments X̃ᵀX̃, ỸᵀỸ, X̃ᵀỸ. `LinearMoments` accumulates them over batches with the pairwise
update of Chan, Golub & LeVeque 1979 (each batch is centred on its own mean, then merged with a rank-one
correction), in float64 accumulators, so no huge uncentred sums ever cancel. Memory is O(p1² + p2² + p1·p2 +
batch), independent of n; the values equal the full-batch metrics to ~1e-12 in float64. Each value comes from
the metric family's own function of the moments (`cka_from_moments`, `nuclear_similarity`, and metrics.cca's
`canonical_correlations`, `variance_cut`, `projection_weighted`); only the whitening here replaces their QR.

Minibatch estimators. Kernel CKA needs n×n kernels; `minibatch_cka` averages Song et al. 2012's unbiased
HSIC₁ (`simstress.core.linalg.hsic1`, as `linear_cka_debiased` does) over minibatches (Nguyen, Raghu &
Kornblith 2021, "Do Wide and Deep Networks Learn the Same Things?", ICLR, eq. 3):
CKA_mb = mean_b HSIC₁(K_b, L_b) / √(mean_b HSIC₁(K_b, K_b) · mean_b HSIC₁(L_b, L_b)).
Each HSIC₁(K_b, L_b) is unbiased, so the averages are too; CKA_mb estimates the debiased CKA (it equals
`linear_cka_debiased` when one batch holds all rows). Its distance to the full-batch value shrinks as the batch
size m grows; measured in tests/test_streaming.py (n = 2048, p = 128, shared 8-d latent, mean |CKA_mb −
debiased CKA| over 8 shuffles): 4e-3 at m = 16, 2.5e-3 at 64, 8e-4 at 256, 2e-4 at 1024, 0 at m = n. The
batches' first-order (Hájek) terms equal the full batch's, so what remains falls roughly as 1/√m or faster.

Layer maps. `cka_map` takes batches of (layers of network A, layers of network B) and returns the whole
La×Lb linear-CKA map from one pass; each layer's self-term is accumulated once, not once per pair.

Validation, as `simstress.score`: shapes are checked per batch from shapes alone (no device sync); NaN, Inf and
zero variance once, at the end, from the accumulators (one host sync).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from simstress.core.inputs import (
    InputError,
    Reduce,
    as_tensor,
    coarsest,
    input_precision,
    reduce_activations,
    source_dtype,
)
from simstress.core.linalg import CoMoments, block_slices, center, hsic1, rounding_floor
from simstress.core.metric import parse_id
from simstress.core.selection import median_all, squared_distances
from simstress.metrics import cca
from simstress.metrics.cka import cka_from_moments
from simstress.metrics.procrustes import nuclear_similarity

Batch = tuple[Any, Any]

_XY_PAIRS = ("(X_batch, Y_batch) of the same inputs, as zip(X_batches, Y_batches) or a DataLoader over "
             "TensorDataset(X, Y) yields")
_LAYER_PAIRS = "(layers_a, layers_b), each a list of layer activations of the same inputs"
_NO_BATCHES = "no batches were given: the iterable was empty (a generator is used up after one pass; make a new one)"


def _pair(batch: Any, index: int, what: str) -> tuple[Any, Any]:
    """The two items of a batch. Only a tuple or list of two is one: unpacking a bare array would split its rows,
    silently when it has two (or a leading axis of 2)."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise InputError(f"batch {index} is {_describe(batch)}; each batch must be a pair {what}")


def _describe(obj: Any) -> str:
    if isinstance(obj, (tuple, list)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    shape = f" of shape {tuple(obj.shape)}" if isinstance(obj, (torch.Tensor, np.ndarray)) else ""
    return f"a {type(obj).__name__}{shape}"


def _check_batch(index: int, named: Sequence[tuple[str, torch.Tensor]], widths: list[int] | None) -> list[int]:
    """Shape checks of one batch, no device sync: every array holds the same m ≥ 1 rows and has the feature count
    it had in the first batch (`widths`; None for the first batch). Returns the feature counts."""
    rows = [A.shape[0] for _, A in named]
    if len(set(rows)) > 1:
        got = ", ".join(f"{name} has {A.shape[0]}" for name, A in named)
        raise InputError(f"batch {index}: {got} rows; the arrays of a batch must hold the same inputs row by row "
                         f"(check that the loader yields aligned batches)")
    if rows[0] == 0:
        raise InputError(f"batch {index} has 0 rows; leave empty batches out")
    got = [A.shape[1] for _, A in named]
    if widths is not None and got != widths:
        changed = "; ".join(f"{name} has {w}, was {w0}" for (name, _), w, w0 in zip(named, got, widths) if w != w0)
        raise InputError(f"batch {index}: feature counts changed ({changed}); every batch must hold the same "
                         f"features as the first")
    return got


def _as_batch(A: Any, which: str, device: torch.device | str | None, reduce: Reduce | None = None,
              ) -> torch.Tensor:
    """numpy or torch batch → (m, p) tensor on `device` in its own precision (`as_tensor` without a dtype:
    float16/bfloat16 widened to float32, integers refused), conv maps and sequences reduced by `reduce`."""
    return reduce_activations(as_tensor(A, which, None, device), reduce, which)


def _layers(side: Any, index: int, net: str, device: torch.device | str | None, reduce: Reduce | None,
            ) -> list[tuple[str, torch.Tensor]]:
    """One network's layers in a batch, named "layer i of A" for errors."""
    if not isinstance(side, (tuple, list)) or not side:
        raise InputError(f"batch {index}: the layers of {net} must be a list of activations, one per layer; got "
                         f"{_describe(side)}. For one layer pass [activations]")
    names = [f"layer {i} of {net}" for i in range(len(side))]
    return [(name, _as_batch(t, name, device, reduce)) for name, t in zip(names, side)]


class LinearMoments(CoMoments):
    """Running column means and centred co-moments of (X, Y) over row batches, float64 accumulators
    (`simstress.core.linalg.CoMoments`, Chan, Golub & LeVeque 1979's pairwise update), with the checks and the
    metric values of `simstress.score`.

    After `update` on batches whose rows stack to X (n, p1) and Y (n, p2): `xx[i]` = X̃ᵢᵀX̃ᵢ for each column block
    i of X (`x_blocks`, default one block of all columns), `yy[j]` likewise, `xy` = X̃ᵀỸ (p1, p2), with X̃
    centred on the mean of all n rows. Batch products run in the batch's dtype (pass float64 batches for full
    float64; X and Y in the wider of theirs), on the batch's device; no host sync per batch. `precision_x` and
    `precision_y` are the coarsest dtypes the batches of each side came in (float16 batches are computed in
    float32 but keep float16's rounding floor, `simstress.core.inputs`).
    `names` label the blocks of X and of Y in error messages (default "X", or
    "columns a:b of X" per block).
    """

    def __init__(self, x_blocks: Sequence[int] | None = None, y_blocks: Sequence[int] | None = None,
                 device: torch.device | str | None = None,
                 names: tuple[Sequence[str], Sequence[str]] | None = None) -> None:
        super().__init__(x_blocks, y_blocks)
        self.batches = 0
        self.device = device
        self._names = names
        self.dtype: torch.dtype | None = None
        self.precision_x: torch.dtype | None = None
        self.precision_y: torch.dtype | None = None

    def update(self, X: Any, Y: Any) -> LinearMoments:
        """Add a batch: X (m, p1), Y (m, p2), the same m inputs row by row (numpy or torch)."""
        sources = [source_dtype(A) for A in (X, Y)]
        X, Y = _as_batch(X, "X", self.device), _as_batch(Y, "Y", self.device)
        _check_batch(self.batches, [("X", X), ("Y", Y)], None if self.xy is None else list(self.xy.shape))
        dtype = torch.promote_types(X.dtype, Y.dtype)
        X, Y = X.to(dtype), Y.to(X.device, dtype)
        if self.xy is None:
            self._check_blocks(X.shape[1], Y.shape[1])
        super().update(X, Y)
        self.batches += 1
        self.dtype = torch.promote_types(self.dtype, X.dtype) if self.dtype else X.dtype
        px, py = (input_precision(s, dtype) for s in sources)
        self.precision_x = coarsest(px, self.precision_x) if self.precision_x else px
        self.precision_y = coarsest(py, self.precision_y) if self.precision_y else py
        return self

    def _check_blocks(self, p1: int, p2: int) -> None:
        for which, blocks, p in (("x", self.x_blocks, p1), ("y", self.y_blocks, p2)):
            if blocks is not None and sum(blocks) != p:
                raise InputError(f"{which}_blocks {blocks} sum to {sum(blocks)} but the batches have {p} columns")
        counts = [len(self.x_blocks or [p1]), len(self.y_blocks or [p2])]
        names = self._names or [
            [side] if count == 1 else [f"columns {s.start}:{s.stop} of {side}" for s in block_slices(blocks)]
            for side, count, blocks in (("X", counts[0], self.x_blocks), ("Y", counts[1], self.y_blocks))
        ]
        if [len(names[0]), len(names[1])] != counts:
            raise InputError(f"names has {len(names[0])} and {len(names[1])} labels for {counts[0]} and "
                             f"{counts[1]} blocks; give one label per block")
        self._block_names = [*names[0], *names[1]]

    # ------------------------------------------------------------------------------------------ results
    def _ready(self, min_samples: int, single: bool = True) -> None:
        if self.xy is None:
            raise InputError(_NO_BATCHES)
        if self.n < min_samples:
            raise InputError(f"needs at least {min_samples} rows in all; got {self.n}: stream more rows")
        if single and (len(self.xx) > 1 or len(self.yy) > 1):
            raise InputError("this result needs one block per side; use cka_matrix() for layer blocks")
        self._check_values()

    def _check_values(self) -> None:
        """`check_values` on the accumulators: one host sync for all blocks, none per batch.

        NaN or ±Inf in a batch (±Inf alone or cancelling) makes its column's batch mean NaN or ±Inf, so centring
        puts NaN in that column of X̃ and on the diagonal of its block, and the NaN persists through every later
        merge. Finite traces bound the cross moments too, (X̃ᵀỸ)ᵢⱼ² ≤ (X̃ᵀX̃)ᵢᵢ(ỸᵀỸ)ⱼⱼ. A trace is exactly 0 when
        every row of the block is the same: two-pass centring of a constant column leaves exact zeros, and each
        batch's mean is then the constant itself, so the merge corrections vanish too.
        """
        traces = torch.stack([M.diagonal().sum() for M in self.xx + self.yy]).tolist()
        for name, t in zip(self._block_names, traces):
            if not math.isfinite(t):
                raise InputError(f"{name} contains NaN or Inf values, or values too large for {self.dtype} "
                                 f"arithmetic; remove or impute them first, or rescale the activations")
        for name, t in zip(self._block_names, traces):
            if t == 0:
                raise InputError(f"{name} has zero variance (all {self.n} rows identical); similarity to it is "
                                 f"undefined: check that the batches hold the activations you meant")

    def linear_cka(self) -> torch.Tensor:
        """||X̃ᵀỸ||²_F / (||X̃ᵀX̃||_F ||ỸᵀỸ||_F), as metrics `linear_cka` (Kornblith et al. 2019)."""
        return self.cka_matrix()[0, 0]

    def cka_matrix(self) -> torch.Tensor:
        """(blocks of X) × (blocks of Y) linear CKA: `cka_from_moments`(X̃ᵢᵀỸⱼ, X̃ᵢᵀX̃ᵢ, ỸⱼᵀỸⱼ), float64.

        The self-norms are recomputed per pair: O(p²) each, against the O(n·p²) the moments took to accumulate.
        """
        self._ready(2, single=False)
        return torch.stack([torch.stack([cka_from_moments(self.xy[sx, sy], Mx, My)
                                         for sy, My in zip(self.y_slices, self.yy)])
                            for sx, Mx in zip(self.x_slices, self.xx)])

    def procrustes(self) -> torch.Tensor:
        """||X̃ᵀỸ||_* / (||X̃||_F ||Ỹ||_F), ||X̃||²_F = tr X̃ᵀX̃, as metrics `procrustes` (Ding et al. 2021)."""
        self._ready(2)
        return nuclear_similarity(self.xy / torch.sqrt(self.xx[0].trace() * self.yy[0].trace()))

    def _floors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The rounding floors of X and Y (`simstress.core.linalg.rounding_floor`) at their input precisions."""
        return (rounding_floor(self.xx[0].trace(), self.n, self.mean_x, self.precision_x),
                rounding_floor(self.yy[0].trace(), self.n, self.mean_y, self.precision_y))

    def _cross(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, QxᵀX̃): the Cholesky route of the full-batch metrics (`cca.moments_cross`) where it is accurate,
        otherwise eigenvectors cut at the rank tolerance (`cca.eigen_whitening`): T = WxᵀX̃ᵀỸWy, QxᵀX̃ = WxᵀX̃ᵀX̃.
        Ranks can differ from the full-batch QR route only for singular values below √(max(n, p)·ε)·σ_max of the
        batches' dtype, which the moments cannot resolve (nearly collinear features)."""
        got = cca.moments_cross(self, self.precision_x, self.precision_y, self.dtype)
        if got is not None:
            return got
        fx, fy = self._floors()
        Wx, Wy = (cca.eigen_whitening(M, f, self.n, self.dtype) for M, f in ((self.xx[0], fx), (self.yy[0], fy)))
        return Wx.T @ self.xy @ Wy, Wx.T @ self.xx[0]

    def _check_ranks(self, T: torch.Tensor, name: str, advice: str) -> None:
        cca.check_nonzero_ranks(*T.shape, name)
        cca.check_ranks(*T.shape, self.n, name, advice)

    def canonical_correlations(self) -> torch.Tensor:
        """Canonical correlations, descending, clamped to [0, 1]: `cca.canonical_correlations` of T."""
        self._ready(3)
        T, _ = self._cross()
        self._check_ranks(T, "streaming cca", "Use more samples than features")
        return cca.canonical_correlations(T)

    def cca_mean(self, normalize: str = "rank") -> torch.Tensor:
        """Mean canonical correlation, as metrics `cca_mean[normalize=...]` (Raghu et al. 2017): Σρ over the
        min(rank X̃, rank Ỹ) correlations ("rank") or over min(p1, p2) ("width")."""
        rho = self.canonical_correlations()
        return rho.sum() / min(self.xy.shape) if normalize == "width" else rho.mean()

    def cca_r2(self) -> torch.Tensor:
        """Mean squared canonical correlation R²_CCA, as metrics `cca_r2` (Kornblith et al. 2019)."""
        self._ready(3)
        T, _ = self._cross()
        self._check_ranks(T, "streaming cca", "Use more samples than features")
        return cca.mean_squared_correlation(T)

    def svcca(self, keep: float = 0.99) -> torch.Tensor:
        """SVCCA: mean canonical correlation of the top-variance directions, as metrics `svcca[keep=...]`
        (`cca.top_variance_whitening`)."""
        self._ready(3)
        (Wx, _), (Wy, _) = (cca.top_variance_whitening(M, keep, f, self.n, self.dtype)
                            for M, f in zip((self.xx[0], self.yy[0]), self._floors()))
        T = Wx.T @ self.xy @ Wy
        self._check_ranks(T, f"streaming svcca[keep={keep}]", "Lower keep or use more samples")
        return cca.canonical_correlations(T).mean()

    def pwcca(self) -> torch.Tensor:
        """Projection-weighted CCA, as metrics `pwcca` (Morcos et al. 2018): `cca.projection_weighted`.

        X's neurons in the X basis, QxᵀX̃, come from the moments too (`_cross`).
        """
        self._ready(3)
        T, P = self._cross()
        rx, ry = T.shape
        if rx + ry >= self.n + 1:  # as metrics `pwcca`, with n for the distinct samples
            raise InputError(f"streaming pwcca: rank X̃ + rank Ỹ = {rx + ry} with {self.n} samples, so several "
                             f"canonical correlations are 1 by dimension count alone and their projection weights "
                             f"depend on an arbitrary choice of basis. Use more samples than p1 + p2")
        self._check_ranks(T, "streaming pwcca", "Use more samples than features")
        return cca.projection_weighted(T, P)


def _progress(batches: Iterable, what: str) -> Iterable:
    return tqdm(batches, desc=what, unit="batch", disable=None, leave=False)


# metric name -> how its value comes out of the moments (params from the metric id)
_EXACT = {
    "linear_cka": lambda m, p: m.linear_cka(),
    "procrustes": lambda m, p: m.procrustes(),
    "cca_mean": lambda m, p: m.cca_mean(p["normalize"]),
    "cca_r2": lambda m, p: m.cca_r2(),
    "svcca": lambda m, p: m.svcca(p["keep"]),
    "pwcca": lambda m, p: m.pwcca(),
}


def score(metric_id: str, batches: Iterable[Batch], device: torch.device | str | None = None) -> float:
    """Exact streaming value of `metric_id` over batches of (X_batch, Y_batch) (a generator or a DataLoader).

    Equal to `metrics.score(metric_id, X, Y)` on the stacked rows, in O(p²) memory. Supported ids: linear_cka,
    procrustes, cca_mean, cca_r2, svcca[keep=...], pwcca; kernel CKA has no exact streaming form (use
    `minibatch_cka`).
    """
    spec, params = parse_id(metric_id)
    if spec.name not in _EXACT:
        raise InputError(f"{metric_id} has no exact streaming form; streamable: {', '.join(_EXACT)}. "
                         f"For kernel or debiased CKA over minibatches use simstress.streaming.minibatch_cka")
    mom = LinearMoments(device=device)
    for index, batch in enumerate(_progress(batches, metric_id)):
        mom.update(*_pair(batch, index, _XY_PAIRS))
    return float(_EXACT[spec.name](mom, params))


# ------------------------------------------------------------------------------------------- minibatch
Kernel = Literal["linear", "rbf"]


def _hsic1_terms(K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(K̂ with zero diagonal, its row sums K̂1, its total 1ᵀK̂1) for a stack (L, m, m) of kernels."""
    K = K.clone()
    K.diagonal(dim1=-2, dim2=-1).zero_()
    rows = K.sum(-1)
    return K, rows, rows.sum(-1)


def _hsic1(A: tuple, B: tuple, m: int, pairwise: bool) -> torch.Tensor:
    """`hsic1` (Song et al. 2012) between kernel stacks: all pairs (La, Lb), or matching pairs (L,).

    tr(K̂L̂) = Σᵢⱼ K̂ᵢⱼL̂ᵢⱼ (symmetric kernels), 1ᵀK̂L̂1 = (K̂1)ᵀ(L̂1), from `_hsic1_terms` of each stack.
    """
    (Ka, ra, sa), (Kb, rb, sb) = A, B
    if pairwise:
        return hsic1(Ka.flatten(1) @ Kb.flatten(1).T, sa[:, None], sb[None, :], ra @ rb.T, m)
    return hsic1((Ka * Kb).sum((-2, -1)), sa, sb, (ra * rb).sum(-1), m)


def _kernels(layers: list[torch.Tensor], kernel: Kernel, sigma: float, scale: list[torch.Tensor] | None,
             ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Stack (L, m, m) of float64 kernels of each layer's centred rows. RBF: exp(−D/(2σ²·s)), s the median
    squared distance of the first batch (`scale`, fixed afterwards so every batch estimates the same kernel)."""
    scale = [] if scale is None else scale
    out = []
    for i, A in enumerate(layers):  # one centred copy at a time: memory O(L·m²) whatever the widths
        Ac = center(A).double()
        if kernel == "linear":
            out.append(Ac @ Ac.T)
            continue
        D = squared_distances(Ac)
        if i == len(scale):  # first batch: this layer's bandwidth, fixed from now on
            scale.append(median_all(D))
        out.append(D.div_(-2.0 * sigma * sigma * scale[i]).exp_())
    return torch.stack(out), scale


class _MinibatchHSIC:
    """Running sums of HSIC₁ over minibatches for layer stacks A (La) and B (Lb): cross (La, Lb) and selves.

    Batches reach `update` shape-checked (`_check_batch`); `names` label A's and B's layers in errors."""

    def __init__(self, kernel: Kernel, sigma: float, names: Sequence[str],
                 device: torch.device | str | None) -> None:
        if kernel not in ("linear", "rbf"):
            raise InputError(f"kernel must be 'linear' or 'rbf', got {kernel!r}")
        if not sigma > 0:
            raise InputError(f"sigma must be > 0, got {sigma}")
        self.kernel, self.sigma, self.names, self.device = kernel, sigma, list(names), device
        self.batches = 0
        self.scale_a = self.scale_b = None
        self.ab = self.aa = self.bb = None

    def update(self, A: list[torch.Tensor], B: list[torch.Tensor]) -> None:
        m = A[0].shape[0]
        if m < 4:
            raise InputError(f"the unbiased HSIC needs batches of at least 4 rows; batch {self.batches} has {m} "
                             f"(use drop_last=True in the DataLoader)")
        Ka, self.scale_a = _kernels(A, self.kernel, self.sigma, self.scale_a)
        Kb, self.scale_b = _kernels(B, self.kernel, self.sigma, self.scale_b)
        ta, tb = _hsic1_terms(Ka), _hsic1_terms(Kb)
        ab, aa, bb = _hsic1(ta, tb, m, True), _hsic1(ta, ta, m, False), _hsic1(tb, tb, m, False)
        if self.ab is None:
            self.ab, self.aa, self.bb = ab, aa, bb
        else:
            self.ab, self.aa, self.bb = self.ab + ab, self.aa + aa, self.bb + bb
        self.batches += 1

    def cka(self) -> torch.Tensor:
        if self.batches == 0:
            raise InputError(_NO_BATCHES)
        self._check_values()
        return self.ab / torch.sqrt(self.aa[:, None] * self.bb[None, :])

    def _check_values(self) -> None:
        """NaN, Inf and no variance from the summed self-terms and the RBF scales: one host sync, none per batch.

        NaN or ±Inf in a batch makes a column of its centred rows NaN (or ±Inf), and with it every off-diagonal
        kernel entry, so the layer's summed self-HSIC is NaN or ±Inf. A batch of identical rows contributes
        exactly 0 (zero centred rows; RBF needs the first batch's scale, > 0, for any other batch).
        """
        selves = torch.cat([self.aa, self.bb])
        scales = torch.stack(self.scale_a + self.scale_b) if self.kernel == "rbf" else torch.ones_like(selves)
        scales, selves = torch.stack([scales, selves]).tolist()
        for name, s in zip(self.names, scales):
            if s == 0:  # exp(−D/0) would be NaN: said here, before the NaN it causes is reported as bad input
                raise InputError(f"{name}: the RBF bandwidth is zero, since the median squared distance between "
                                 f"the rows of the first batch is 0 (most rows identical); shuffle the data so the "
                                 f"first batch mixes inputs, or make it larger")
        for name, h in zip(self.names, selves):
            if not math.isfinite(h):
                raise InputError(f"{name} contains NaN or Inf values; remove or impute them first")
        for name, h in zip(self.names, selves):
            if h <= 0:
                raise InputError(f"{name} has no variance within the batches: its HSIC with itself summed over "
                                 f"batches is {h:.3g}, as when the rows of every batch are identical; shuffle so "
                                 f"each batch mixes inputs, or use larger batches")


def minibatch_cka(batches: Iterable[Batch], kernel: Kernel = "linear", sigma: float = 1.0,
                  device: torch.device | str | None = None) -> float:
    """Minibatch CKA of Nguyen, Raghu & Kornblith 2021: mean unbiased HSIC₁ over batches of (X_b, Y_b).

    CKA_mb = Σ_b HSIC₁(K_b, L_b) / √(Σ_b HSIC₁(K_b, K_b) · Σ_b HSIC₁(L_b, L_b)), K_b the linear kernel of the
    batch's centred rows or the RBF kernel exp(−||a − b||²/(2σ²·s_X)) with s_X the median squared distance of
    the first batch (held fixed). It estimates debiased CKA; one batch of all n rows gives exactly
    `linear_cka_debiased` (linear), and the deviation from it shrinks as the batch grows (numbers in the
    module docstring). Batches need ≥ 4 rows; kernels are m×m in float64.
    """
    acc = _MinibatchHSIC(kernel, sigma, ["X", "Y"], device)
    widths = None
    for index, batch in enumerate(_progress(batches, "minibatch cka")):
        X, Y = (_as_batch(A, which, device) for A, which in zip(_pair(batch, index, _XY_PAIRS), "XY"))
        widths = _check_batch(index, [("X", X), ("Y", Y)], widths)
        acc.update([X], [Y])
    return float(acc.cka()[0, 0])


def cka_map(batches: Iterable[tuple[Sequence[Any], Sequence[Any]]], estimator: Literal["exact", "minibatch"] = "exact",
            kernel: Kernel = "linear", sigma: float = 1.0, reduce: Reduce | None = None,
            device: torch.device | str | None = None) -> torch.Tensor:
    """La×Lb CKA map between the layers of two networks from one pass over batches of (layers_a, layers_b).

    Each batch holds, for the same m inputs, a list of La activations of network A and Lb of network B
    ((m, p) each; conv maps and token sequences need `reduce`, as in metrics.score).
    estimator="exact": linear CKA of all rows, equal to `linear_cka` per pair; one LinearMoments over the
    concatenated layers keeps each layer's self-moment once and the cross-moments of all pairs as one
    (ΣpA, ΣpB) float64 matrix, filled by one GEMM per batch. estimator="minibatch": `minibatch_cka` per pair
    (kernel "linear" or "rbf"), memory O((La + Lb)·m²) whatever the widths; each layer's kernel and self-HSIC
    is computed once per batch. Returns float64 (La, Lb), row i = layer i of A.
    """
    if estimator not in ("exact", "minibatch"):
        raise InputError(f"estimator must be 'exact' or 'minibatch', got {estimator!r}")
    if estimator == "exact" and kernel != "linear":
        raise InputError("the exact map is linear CKA only; use estimator='minibatch' for kernel='rbf'")
    acc: LinearMoments | _MinibatchHSIC | None = None
    widths = counts = None
    for index, batch in enumerate(_progress(batches, "cka map")):
        named_a, named_b = (_layers(side, index, net, device, reduce)
                            for side, net in zip(_pair(batch, index, _LAYER_PAIRS), "AB"))
        if counts is not None and (len(named_a), len(named_b)) != counts:
            raise InputError(f"batch {index} has {len(named_a)} layers of A and {len(named_b)} of B; the first batch "
                             f"had {counts[0]} and {counts[1]}: every batch must hold the same layers")
        counts = len(named_a), len(named_b)
        widths = _check_batch(index, named_a + named_b, widths)
        names = [name for name, _ in named_a + named_b]
        A, B = [t for _, t in named_a], [t for _, t in named_b]
        if estimator == "minibatch":
            acc = acc or _MinibatchHSIC(kernel, sigma, names, device)
            acc.update(A, B)
        else:
            la = len(A)
            acc = acc or LinearMoments(widths[:la], widths[la:], device, (names[:la], names[la:]))
            acc.update(torch.cat(A, dim=1), torch.cat(B, dim=1))
    if acc is None:
        raise InputError(_NO_BATCHES)
    return acc.cka() if estimator == "minibatch" else acc.cka_matrix()
