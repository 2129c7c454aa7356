"""Reference implementations straight from the papers' definitions, shared by tests (slow, numpy, no tricks)."""

import numpy as np


def u_statistic_hsic(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. 2012's unbiased HSIC₁ on raw (uncentred) Gram matrices, term by term from its definition."""
    n = K.shape[0]
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    one = np.ones(n)
    return (np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (one @ K @ L @ one)) / (n * (n - 3))
