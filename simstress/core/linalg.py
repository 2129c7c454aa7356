"""Numerical building blocks shared by the metrics: centring, sums of squares, rank tolerances, orthonormal bases,
Gram products, centred co-moments over row chunks, the unbiased HSIC₁."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.autograd.function import once_differentiable

# Column panel width of `feature_gram`: wide enough that every panel product runs at full GEMM speed.
_PANEL = 256
_MAX_PANELS = 8


def center_with_mean(X: torch.Tensor, scale: torch.Tensor | None = None, out: torch.Tensor | None = None,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Column-centred copy X − 1·μᵀ (the action of H = I − 11ᵀ/n without forming H) and the mean μ (p,), float64.

    Centring features before any product is what keeps float32 sound under large translations (Davari et al.
    2023, §3: Gram-side centring loses everything by c = 2e4). A second pass removes the rounding left by the
    first mean, which matters when the offset dwarfs the spread; it runs in place, so one centred copy is all
    that is ever allocated (autograd is unaffected: the mean and the subtraction save no values). μ is the sum of
    both passes' means, added in float64 so that a streaming merge of batch means keeps the second pass's digits.
    `scale` (0-d, a power of two) multiplies the copy in the first pass, X·s − μ₁·s (exact: the same numbers as
    scaling after centring, one pass fewer), and μ comes in the same units. `out` (X's shape, not under autograd)
    receives the copy instead of a new allocation.
    """
    m1 = X.mean(dim=0, keepdim=True)
    if scale is None:
        Xc = torch.sub(X, m1, out=out)
    else:
        m1 = m1 * scale
        Xc = torch.addcmul(-m1, X, scale, out=out)
    m2 = Xc.mean(dim=0, keepdim=True)
    Xc.sub_(m2)
    return Xc, (m1.double() + m2.double()).squeeze(0)


def center(X: torch.Tensor) -> torch.Tensor:
    """Column-centred copy of X, as `center_with_mean`."""
    return center_with_mean(X)[0]


def power_of_two_scale(A: torch.Tensor) -> torch.Tensor:
    """2^−e (0-d, A's dtype and device, no gradient) with e the binary exponent of max |A|: A·2^−e has its largest
    |entry| in [1/2, 1). 1 for an all-zero A. No host sync."""
    lo, hi = torch.aminmax(A.detach())  # max |A| without an |A| copy
    _, e = torch.frexp(torch.maximum(-lo, hi))
    return torch.ldexp(torch.ones((), dtype=A.dtype, device=A.device), -e)


def centre_rescale(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(X̃·s, μ·s, s): `center_with_mean`, then the copy multiplied in place by s = `power_of_two_scale` of itself.
    Autograd is the caller's: `center_rescaled`, or a product that centres its own input (`gram`)."""
    Xc, mean = center_with_mean(X)
    scale = power_of_two_scale(Xc)
    return Xc.mul_(scale), mean * scale.double(), scale


def centring_gradient(P: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """s·H·P (n, n), H = I − 11ᵀ/n: a gradient P·X̃ with respect to X̃ = (X − 1μᵀ)·s, taken back to X as (s·H·P)·X̃.
    The centring's gradient applied to the n×n factor, not to the n×p product: no pass over the data."""
    return (P - P.mean(dim=0, keepdim=True)) * scale


class _CentreRescale(torch.autograd.Function):
    """X ↦ (X̃·s, μ·s) (`centre_rescale`). X̃ = (X − 1μᵀ)·s with s held constant, whose gradient is the same
    projection, g ↦ (g − 1ḡᵀ)·s: two passes, where autograd's record of the centring's steps took seven (a third
    of the flattened map step of M1's blocks, measured). μ carries no gradient (it sets rank tolerances only)."""

    @staticmethod
    def forward(ctx: Any, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Xc, mean, scale = centre_rescale(X)
        ctx.save_for_backward(scale)
        ctx.mark_non_differentiable(mean)
        return Xc, mean

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
        (scale,) = ctx.saved_tensors
        return torch.addcmul(grad.mean(dim=0, keepdim=True) * -scale, grad, scale)


def center_rescaled_with_mean(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`center_rescaled(X)` and the column mean μ (float64, no gradient) in the same scaled units."""
    return _CentreRescale.apply(X)


def center_rescaled(X: torch.Tensor) -> torch.Tensor:
    """`center(X)` multiplied, in place, by `power_of_two_scale` of itself: largest |entry| in [1/2, 1).

    For scale-invariant metrics. Multiplying by a power of two only shifts exponents, so every later product,
    sum, square root and ratio is the same bit for bit as on the unscaled data, except that nothing overflows or
    underflows: in float32, fourth powers (||X̃ᵀX̃||²_F) overflow from |x| ≈ 1e9 and squares underflow below 1e-19;
    at 1e20 linear CKA read NaN and Procrustes 0. Scaling after centring keeps an offset from setting the scale.
    Only entries below 2⁻¹²⁶ of the largest (float32) could round, as subnormals: far below anything they add.
    """
    return center_rescaled_with_mean(X)[0]


def rounding_floor(sum_sq: torch.Tensor, n: int, mean: torch.Tensor, precision: torch.dtype) -> torch.Tensor:
    """ε·‖X‖_F (float64, 0-d) for data X rounded to `precision`, from its centred sum of squares ‖X̃‖²_F, n rows and
    column mean μ (same units): ‖X‖²_F = ‖X̃‖²_F + n‖μ‖².

    Rounding every entry to `precision` is a perturbation E with |Eᵢⱼ| ≤ (ε/2)|xᵢⱼ|, so ‖E‖₂ ≤ ‖E‖_F ≤ (ε/2)‖X‖_F,
    and centring (a projection) does not enlarge it: by Weyl's inequality no singular value of the centred data
    moves by more, so one below ε‖X‖_F (a factor 2 to spare) may be the rounding's own. The uncentred norm counts
    an offset, whose rounding is noise in the centred data too (float32 data at 1e4 ± 1 keep ~10 bits of spread).
    """
    return torch.finfo(precision).eps * (sum_sq.double() + n * mean.double().square().sum()).sqrt()


def rank_tolerance(floor: torch.Tensor, sigma_max: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The singular value below which a direction of a centred (n, p) matrix counts as zero: the input's rounding
    floor (`rounding_floor`, the precision the numbers came in) plus the float64 decomposition's own error,
    max(n, p)·ε₆₄·σ_max (the convention of LAPACK's rank decisions, numpy's matrix_rank and MATLAB's rank).

    Rank decisions are made in float64 whatever the compute dtype (`orthonormal_basis`), so float32 and float64
    computations of the same data decide alike; a float32 computation's coarser errors are the input's then.
    """
    return floor + max(shape) * torch.finfo(torch.float64).eps * sigma_max.double()


def frobenius(A: torch.Tensor) -> torch.Tensor:
    """||A||_F as √(ΣA²) with torch's cascade summation.

    torch.linalg.vector_norm / matrix_norm and torch.dot accumulate float32 naively on CPU: relative errors of
    1.6e-5 at 4e6 entries (a 2048² Gram) and 1e-3 at 1e8 entries (a 50000×2048 activation), measured here.
    `sum` keeps ~1e-7 at any size.
    """
    return A.square().sum().sqrt()


def feature_gram(Xc: torch.Tensor) -> torch.Tensor:
    """XcᵀXc (p, p) by symmetric column panels: only the upper block triangle is multiplied, then mirrored.

    With k panels the products cost (k+1)/(2k) of a full GEMM (k = 8: 56%), the symmetric rank-k update
    (BLAS syrk) that torch lacks, built from GEMM calls on strided views: no copy of Xc, any device, float32 or
    float64, differentiable. Each panel product equals the matching block of Xc.T @ Xc bit for bit.
    """
    p = Xc.shape[1]
    k = max(1, min(_MAX_PANELS, p // _PANEL))
    if k == 1:
        return Xc.T @ Xc
    edges = [round(i * p / k) for i in range(k + 1)]
    out = Xc.new_empty(p, p)
    for a, b in itertools.pairwise(edges):
        row = Xc[:, a:b].T @ Xc[:, a:]  # panel (b − a, p − a): diagonal block and everything right of it
        out[a:b, a:] = row
        out[b:, a:b] = row[:, b - a:].T
    return out

# Power iterations (on a block of 4 vectors) of `smallest_singular_value`
_POWER_STEPS, _POWER_BLOCK = 8, 4
# An estimated smallest singular value is trusted with the rank only this far above the tolerance.
RANK_MARGIN = 4.0


def smallest_singular_value(L: torch.Tensor) -> torch.Tensor:
    """An estimate (0-d, from above) of the smallest singular value of a nonsingular lower-triangular L.

    Block power iteration on (LLᵀ)⁻¹ = L⁻ᵀL⁻¹ by triangular solves, O(p²) a step, no host sync: its largest
    eigenvalue is σ_min(L)⁻², approached from below, so σ_min is approached from above (a seeded block of 4 start
    vectors, 8 steps: within a few percent for the spectra of activations). Unlike |diag R| of an unpivoted QR,
    which read 3.5e-6 for a direction at 3e-8, this reveals a rank deficiency.
    """
    g = torch.Generator(device=L.device).manual_seed(0)
    V = torch.randn(L.shape[0], _POWER_BLOCK, generator=g, dtype=L.dtype, device=L.device)
    grow = V.new_zeros(())
    for _ in range(_POWER_STEPS):
        V = V / V.norm(dim=0)
        W = torch.linalg.solve_triangular(L, V, upper=False)  # ‖L⁻¹v‖² = vᵀ(LLᵀ)⁻¹v
        grow = W.square().sum(0).max()
        V = torch.linalg.solve_triangular(L.T, W, upper=True)
    return grow.rsqrt()


def orthonormal_basis(Xc: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis (n, r) of the column space of centred Xc, r = numerical rank (`rank_tolerance` with the
    input's rounding `floor`), in Xc's dtype.

    Householder QR when the smallest singular value of R (`smallest_singular_value`, = σ_min of Xc) clears the
    tolerance by `RANK_MARGIN` (full column rank, the common case, cheapest); otherwise (dead ReLU units,
    duplicated features, low-rank data rounded to float32, p ≥ n) the thin SVD in float64, truncated at the
    tolerance, since QR would return spurious directions there. r = 0 when nothing clears it.
    """
    n, p = Xc.shape
    Q, R = torch.linalg.qr(Xc, mode="reduced")
    R0 = R.detach()
    d = R0.diagonal().abs()
    if p < n and bool(d.min() > 0) and bool(
            smallest_singular_value(R0.mT) > RANK_MARGIN * rank_tolerance(floor, d.max(), Xc.shape)):
        return Q
    U, S, _ = torch.linalg.svd(Xc.double(), full_matrices=False)
    return U[:, :int((S.detach() > rank_tolerance(floor, S.detach()[0], Xc.shape)).sum())].to(Xc.dtype)


class CoMoments:
    """Running column means and centred co-moments of (X, Y) over row batches, in float64 accumulators.

    After `update` on batches whose rows stack to X (n, p1) and Y (n, p2): `xx[i]` = X̃ᵢᵀX̃ᵢ for each column block
    i of X (`x_blocks`, default one block of all columns), `yy[j]` likewise, `xy` = X̃ᵀỸ (p1, p2), `mean_x`,
    `mean_y` the column means, with X̃ centred on the mean of all n rows. Each batch is centred on its own mean
    (`center_with_mean`, two passes), so no huge uncentred sums ever cancel, and merged with a rank-one correction:
    M ← M + M_b + (n·m/(n + m))·(μ_b − μ)(μ_b − μ)ᵀ (the pairwise update of Chan, Golub & LeVeque 1979). Batch
    products run in the batch's dtype on its device, no host sync; autograd passes through. `update`'s scales
    (0-d, powers of two) multiply each side's centred batch first: exact, and they keep float32 products in range.
    With `grams=False` only the cross moment and the sums of squares ‖X̃‖²_F, ‖Ỹ‖²_F are kept (`xx`, `yy` hold
    those 0-d traces): all Procrustes needs, at a third of the products.
    """

    def __init__(self, x_blocks: Sequence[int] | None = None, y_blocks: Sequence[int] | None = None,
                 grams: bool = True) -> None:
        self.n = 0
        self.x_blocks = list(x_blocks) if x_blocks is not None else None
        self.y_blocks = list(y_blocks) if y_blocks is not None else None
        self.grams = grams
        self.mean_x = self.mean_y = self.xy = None
        self.xx: list[torch.Tensor] = []
        self.yy: list[torch.Tensor] = []

    def _start(self, p1: int, p2: int, device: torch.device) -> None:
        self.x_slices = block_slices(self.x_blocks or [p1])
        self.y_slices = block_slices(self.y_blocks or [p2])
        f64 = {"dtype": torch.float64, "device": device}
        self.mean_x, self.mean_y = torch.zeros(p1, **f64), torch.zeros(p2, **f64)
        self.xx, self.yy = ([torch.zeros((s.stop - s.start,) * 2 if self.grams else (), **f64) for s in slices]
                            for slices in (self.x_slices, self.y_slices))
        self.xy = torch.zeros(p1, p2, **f64)

    def update(self, X: torch.Tensor, Y: torch.Tensor, scale_x: torch.Tensor | None = None,
               scale_y: torch.Tensor | None = None,
               buffers: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Merge a batch X (m, p1), Y (m, p2) of one dtype and device. `buffers`: scratch of at least m rows for the
        centred copies, reused across batches (not under autograd; their contents are overwritten)."""
        if self.xy is None:
            self._start(X.shape[1], Y.shape[1], X.device)
        m = X.shape[0]
        Xc, mx = center_with_mean(X, scale_x, buffers[0][:m] if buffers else None)
        Yc, my = center_with_mean(Y, scale_y, buffers[1][:m] if buffers else None)
        dx, dy = mx - self.mean_x, my - self.mean_y
        f = self.n * m / (self.n + m)
        # In place: no fresh p×p float64 temporaries per batch (the float32 products are promoted as they are added).
        self.xy.add_(Xc.T @ Yc)
        if self.n:
            self.xy.addr_(dx, dy, alpha=f)
        for acc, A, d, slices in ((self.xx, Xc, dx, self.x_slices), (self.yy, Yc, dy, self.y_slices)):
            for i, s in enumerate(slices):
                if not self.grams:
                    # the buffered copy is the caller's scratch: squared in place once the cross product is taken
                    sq = A[:, s].square_() if buffers else A[:, s].square()
                    acc[i] = acc[i] + sq.sum().double() + f * d[s].square().sum()
                    continue
                acc[i].add_(feature_gram(A[:, s]))
                if self.n:
                    acc[i].addr_(d[s], d[s], alpha=f)
        self.mean_x = self.mean_x + dx * (m / (self.n + m))
        self.mean_y = self.mean_y + dy * (m / (self.n + m))
        self.n += m


def block_slices(sizes: Sequence[int]) -> list[slice]:
    """Consecutive column slices of the given widths."""
    edges = list(itertools.accumulate(sizes, initial=0))
    return [slice(a, b) for a, b in itertools.pairwise(edges)]


@dataclass(frozen=True)
class LayerMoments:
    """The centred co-moments of a list of layers (n, pᵢ) from one product: M (Σp, Σp, float64) holds X̃ᵢᵀX̃ⱼ in its
    (i, j) block (`slices`), each layer scaled by `power_of_two_scale` of itself first (exact, as in `comoments`),
    with each layer's column mean in the same units."""

    M: torch.Tensor
    slices: list[slice]
    means: list[torch.Tensor]

    def block(self, i: int, j: int) -> torch.Tensor:
        return self.M[self.slices[i], self.slices[j]]

    def floor(self, i: int, n: int, precision: torch.dtype) -> torch.Tensor:
        """Layer i's rounding floor (`rounding_floor`) at the precision it came in."""
        return rounding_floor(self.block(i, i).trace(), n, self.means[i], precision)


# Columns of all layers together above which `layer_moments` declines: its Σp×Σp moments (float64, with the
# product in the layers' dtype) stay within 0.5 GiB, where a pair at a time would hold only its own p×p blocks.
LAYER_MOMENTS_MAX_COLUMNS = 6144


def layer_moments(layers: Sequence[torch.Tensor], below: int) -> LayerMoments | None:
    """`LayerMoments` of layers of one dtype, device and row count (a layer map's minibatch), every width below
    `below` and LAYER_MOMENTS_MAX_COLUMNS in all; else None. The products of every pair of layers in one, in that
    dtype as `comoments` forms them; memory a centred copy of all layers (n·Σp) and the Σp×Σp moments."""
    widths = [A.shape[1] for A in layers]
    if (len({(A.dtype, A.device, A.shape[0]) for A in layers}) > 1 or max(widths) >= below
            or sum(widths) > LAYER_MOMENTS_MAX_COLUMNS):
        return None
    Zc, mean = center_with_mean(torch.cat([A * power_of_two_scale(A) for A in layers], dim=1))
    slices = block_slices(widths)
    return LayerMoments(feature_gram(Zc).double(), slices, [mean[s] for s in slices])


# Bytes of one row chunk of an input in `comoments`: big enough for full-speed products, small enough that the
# chunk's centred copy costs little memory.
CHUNK_BYTES = 2**26


def comoments(X: torch.Tensor, Y: torch.Tensor, grams: bool = True, chunk_bytes: int = CHUNK_BYTES) -> CoMoments:
    """`CoMoments` of X and Y (one dtype and device) by row chunks of about `chunk_bytes` per input, each side
    scaled by `power_of_two_scale` of itself (so float32 sums of squares never overflow, at any scale). Memory:
    one chunk's centred copies, reused for every chunk outside autograd, and the float64 moments, O(chunk + p²),
    never a centred copy of the whole input."""
    rows = min(X.shape[0], max(1, chunk_bytes // (max(X.shape[1], Y.shape[1]) * X.element_size())))
    sx, sy = power_of_two_scale(X), power_of_two_scale(Y)
    # one scratch copy per side for every chunk: a fresh allocation per chunk is page-faulted in anew each time
    tracked = torch.is_grad_enabled() and (X.requires_grad or Y.requires_grad)
    buffers = None if tracked else (X.new_empty(rows, X.shape[1]), Y.new_empty(rows, Y.shape[1]))
    mom = CoMoments(grams=grams)
    for i in range(0, X.shape[0], rows):
        mom.update(X[i:i + rows], Y[i:i + rows], sx, sy, buffers)
    return mom


class _Gram(torch.autograd.Function):
    """K = XcXcᵀ, whose gradient (G + Gᵀ)·Xc takes one product where autograd's record of Xc @ Xc.T took two. With
    `centre`, Xc = `centre_rescale(X)` here, and the centring's gradient goes into the n×n factor
    (`centring_gradient`)."""

    @staticmethod
    def forward(ctx: Any, X: torch.Tensor, centre: bool) -> torch.Tensor:
        Xc, _, ctx.scale = centre_rescale(X) if centre else (X, None, None)
        ctx.Xc = Xc  # an input or its centred copy, read only by backward
        return Xc @ Xc.T

    @staticmethod
    @once_differentiable  # backward reads its tensors off ctx: a second derivative would miss them
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        P = grad + grad.mT
        return (P if ctx.scale is None else centring_gradient(P, ctx.scale)) @ ctx.Xc, None


def gram(X: torch.Tensor, centre: bool = False) -> torch.Tensor:
    """Linear Gram matrix Xc·Xcᵀ (n, n) of already centred features Xc = X (so it is already double-centred), or with
    `centre` of Xc = `center_rescaled(X)`, the same numbers, its gradient in one product."""
    return _Gram.apply(X, centre)


def double_center(K: torch.Tensor) -> torch.Tensor:
    """H·K·H by row/column means, O(n²) and no dense centring matrix."""
    row = K.mean(dim=0, keepdim=True)
    col = K.mean(dim=1, keepdim=True)
    return K - row - col + K.mean()


def hsic1(trace_kl: torch.Tensor, sum_k: torch.Tensor, sum_l: torch.Tensor, rowsum_dot: torch.Tensor, n: int,
          ) -> torch.Tensor:
    """Unbiased HSIC₁ from its parts (Song et al. 2012, Feature Selection via Dependence Maximization, JMLR).

    HSIC₁(K, L) = [tr(K̂L̂) + 1ᵀK̂1·1ᵀL̂1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̂L̂1] / (n(n−3)), K̂ = K with zero diagonal,
    with trace_kl = tr(K̂L̂), sum_k = 1ᵀK̂1, sum_l = 1ᵀL̂1, rowsum_dot = 1ᵀK̂L̂1 = (K̂1)ᵀ(L̂1) for n ≥ 4 samples.
    Parts may be tensors of any broadcastable shapes (stacks of kernels); the callers differ only in how they get
    them: from n×n kernels, or from centred features without any n×n matrix.
    """
    return (trace_kl + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * rowsum_dot) / (n * (n - 3))
