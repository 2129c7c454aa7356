"""`simstress.core.linalg.comoments`: the centred co-moments the CCA family and Procrustes are built on, over row
chunks (scratch buffers reused from chunk to chunk outside autograd, fresh copies under it), equal to the float64
moments of the whole input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from simstress.core.linalg import comoments


def exact(X: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    Xc, Yc = (A.double() - A.double().mean(0) for A in (X, Y))
    return Xc.T @ Xc, Yc.T @ Yc, Xc.T @ Yc


def scales(X: torch.Tensor, Y: torch.Tensor) -> tuple[float, float]:
    """comoments scales each side by 2^−e, e the binary exponent of max |A|."""
    sx, sy = (2.0 ** -float(torch.frexp(A.abs().max()).exponent) for A in (X, Y))
    return sx, sy


@settings(max_examples=25, deadline=None)
@given(n=st.integers(4, 60), p1=st.integers(1, 7), p2=st.integers(1, 7), rows=st.integers(1, 70),
       offset=st.sampled_from([0.0, 5.0, -300.0]), dtype=st.sampled_from([torch.float32, torch.float64]),
       seed=st.integers(0, 2**31 - 1))
def test_chunked_moments_equal_the_whole_inputs(n, p1, p2, rows, offset, dtype, seed):
    """Any chunking (a ragged last chunk, one row per chunk, one chunk for all) gives the moments of the whole data;
    the buffered path (no autograd) and the fresh-copy path (autograd) agree."""
    g = torch.Generator().manual_seed(seed)
    X = (torch.randn(n, p1, generator=g, dtype=torch.float64) + offset).to(dtype)
    Y = (torch.randn(n, p2, generator=g, dtype=torch.float64) - offset).to(dtype)
    ref = exact(X, Y)
    scale = max(float(r.abs().max()) for r in ref)
    tol = {torch.float32: 1e-4, torch.float64: 1e-11}[dtype] * scale
    chunk_bytes = rows * max(p1, p2) * X.element_size()
    buffered = comoments(X, Y, chunk_bytes=chunk_bytes)
    Xg = X.clone().requires_grad_(True)
    tracked = comoments(Xg, Y, chunk_bytes=chunk_bytes)
    sx, sy = scales(X, Y)
    for mom in (buffered, tracked):
        assert mom.n == n
        for got, want in zip((mom.xx[0] / sx**2, mom.yy[0] / sy**2, mom.xy / (sx * sy)), ref, strict=True):
            torch.testing.assert_close(got.detach(), want, atol=tol, rtol=0)
    traces = comoments(X, Y, grams=False, chunk_bytes=chunk_bytes)
    assert float(traces.xx[0]) / sx**2 == pytest.approx(float(ref[0].trace()), rel=1e-5, abs=tol)
    assert float(traces.yy[0]) / sy**2 == pytest.approx(float(ref[1].trace()), rel=1e-5, abs=tol)
    torch.testing.assert_close(traces.xy / (sx * sy), ref[2], atol=tol, rtol=0)


def test_gradients_pass_through_the_chunked_moments():
    """Under autograd each chunk gets its own centred copy (a reused buffer would be overwritten before backward):
    the gradient of Σ(X̃ᵀỸ) over chunks equals that of the one-chunk computation."""
    g = torch.Generator().manual_seed(3)
    X = torch.randn(23, 4, generator=g, dtype=torch.float64, requires_grad=True)
    Y = torch.randn(23, 3, generator=g, dtype=torch.float64)
    grads = []
    for rows in (5, 23):
        mom = comoments(X, Y, chunk_bytes=rows * 4 * 8)
        (gx,) = torch.autograd.grad(mom.xy.sum() + mom.xx[0].square().sum(), X)
        grads.append(gx)
    torch.testing.assert_close(grads[0], grads[1])
    assert bool(grads[0].abs().sum() > 0)
