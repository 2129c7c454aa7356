"""Nearest-neighbour alignment: do both representations give each sample the same neighbours?"""

from __future__ import annotations

import torch

from simstress.core.inputs import InputError, input_dtypes
from simstress.core.metric import register

_BLOCK_ELEMENTS = 1 << 24  # similarity entries per row block: memory stays at 16M entries, not n²


def cosine_knn(A: torch.Tensor, k: int, which: str, precision: torch.dtype) -> torch.Tensor:
    """(n, k) indices of each row's k nearest other rows by cosine similarity (self excluded), found in float64.

    Neighbour sets are discrete, so the similarities are computed in float64 whatever A's dtype: with a common
    offset of 1e4, uncentred rows are nearly parallel and float32 rounding reordered the neighbours (mutual_knn
    read 0.004 in float32 for 0.18 in float64 on the same numbers). Rows are scaled by a power of two (exact: no
    overflow or underflow of the squares at any scale), then L2-normalised; a zero row has no direction and is
    refused. Similarities are formed one block of rows at a time, so memory stays O(block·n) for large n.

    Refused too: rows that all lie on one line through the origin to within the rounding of their input
    `precision` (angle ≤ 4·ε·√p), i.e. rank-1 data. Every similarity is then ±1 up to rounding, so the
    neighbours were decided by rounding and changed under a plain rescaling.
    """
    n = A.shape[0]
    A = A.double()
    A = torch.ldexp(A, -torch.frexp(A.abs().amax(dim=1, keepdim=True)).exponent)
    norms = A.square().sum(dim=1, keepdim=True).sqrt()
    n_zero = int((norms == 0).sum())
    if n_zero:
        raise InputError(
            f"mutual_knn: {n_zero} of the {n} rows of {which} are all zeros, so their cosine neighbours are "
            f"undefined; drop those samples (from X and Y alike)"
        )
    Z = A / norms
    off_line = (Z - (Z @ Z[0])[:, None] * Z[0]).square().sum(dim=1).amax().sqrt()
    if bool(off_line <= 4.0 * torch.finfo(precision).eps * A.shape[1] ** 0.5):
        raise InputError(f"mutual_knn: every row of {which} lies on one line through the origin (rank-1 data, to "
                         f"within the rounding of {precision}), so every cosine similarity is ±1 and the nearest "
                         f"neighbours would be decided by rounding; use data with at least two directions")
    block = max(1, _BLOCK_ELEMENTS // n)
    found = []
    for start in range(0, n, block):
        S = Z[start:start + block] @ Z.T
        rows = torch.arange(S.shape[0], device=A.device)
        S[rows, rows + start] = -torch.inf
        found.append(S.topk(k, dim=1).indices)
    return torch.cat(found)


def _check_k(params: dict) -> None:
    if not params["k"] >= 1:
        raise ValueError(f"mutual_knn needs k >= 1 neighbours; got k={params['k']}")


@register(
    invariances=("isotropic_scaling", "orthogonal", "permutation"),
    min_samples=2,
    cost="O(n²·p)",
    reference="Huh, Cheung, Wang & Isola 2024, The Platonic Representation Hypothesis (ICML)",
    version=3,  # 2: similarities in float64 (float32 input: 0.07 → 0.72 under a 2e4 offset); 3: rank-1 data refused
    check_params=_check_k,
)
def mutual_knn(X: torch.Tensor, Y: torch.Tensor, *, k: int = 10) -> torch.Tensor:
    """Mutual k-NN alignment: (1/n)·Σᵢ |N_X(i) ∩ N_Y(i)| / k, N(i) = i's k nearest rows by cosine similarity.

    Huh et al. 2024: rows are L2-normalised (not centred, as in the paper, so a translation of all rows changes
    the value), the sample itself is excluded; exact ties in similarity are broken by torch.topk. Needs n > k.
    Similarities are computed in float64 (`cosine_knn`): float32 input gives the float64 value of its numbers.
    Rank-1 data (all rows on one line through the origin) are refused: their neighbours are ties.
    """
    n = X.shape[0]
    if n <= k:
        raise InputError(f"mutual_knn[k={k}] needs more than k samples to find k neighbours; got n = {n}. "
                         f"Use a smaller k or more samples")
    px, py = input_dtypes(X, Y)
    both = torch.cat([cosine_knn(X, k, "X", px), cosine_knn(Y, k, "Y", py)], dim=1).sort(dim=1).values
    # each set holds k distinct indices, so a repeated index in the merged sorted row is one shared neighbour
    shared = (both[:, 1:] == both[:, :-1]).sum(dim=1)
    return (shared.to(X.dtype) / k).mean()
