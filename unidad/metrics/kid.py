"""Kernel Inception Distance: unbiased MMD^2 with a polynomial kernel, averaged over random subsets.

Conventions follow torch-fidelity's KID (and Binkowski et al.'s reference): kernel
k(x, y) = (gamma <x, y> + coef0)^degree with gamma = 1/D by default; per subset the estimator drops the
diagonals of K_XX and K_YY but keeps the full K_XY; the result is the mean and the (population) standard
deviation over subsets. Subsets are drawn without replacement with numpy's RandomState(seed), first from
set 1 then from set 2, as torch-fidelity does.
"""
from __future__ import annotations

import numpy as np


# float64 entries of the three whole-set kernel matrices (64M = 512 MB); larger sets go subset by subset
_MAX_GRAM_ENTRIES = 64_000_000


def _polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
    return (x @ y.T * gamma + coef0) ** degree


def unbiased_mmd2(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    m = k_xx.shape[0]
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kid_from_features(
    features1,
    features2,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 over `subsets` random subsets; subset_size is clipped to min(N1, N2)."""
    f1 = np.asarray(features1, dtype=np.float64)
    f2 = np.asarray(features2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"KID needs two (N, D) feature matrices of equal D, got {f1.shape} and {f2.shape}")
    if not (np.all(np.isfinite(f1)) and np.all(np.isfinite(f2))):
        raise ValueError("KID features contain NaN or Inf; check the feature extractor")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    m = min(int(subset_size), f1.shape[0], f2.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set (got {f1.shape[0]} and {f2.shape[0]})")
    gamma = 1.0 / f1.shape[1] if gamma is None else float(gamma)
    n1, n2 = f1.shape[0], f2.shape[0]
    rng = np.random.RandomState(seed)
    if n1 * n1 + n1 * n2 + n2 * n2 <= _MAX_GRAM_ENTRIES:
        # Subsets overlap heavily (1000 of 5000, 100 times): build each kernel matrix once and get
        # every subset's block sums as u^T K v with 0/1 membership vectors (same estimator; only the
        # order of floating-point summation differs).
        in1 = np.zeros((subsets, n1))
        in2 = np.zeros((subsets, n2))
        for i in range(subsets):
            in1[i, rng.choice(n1, m, replace=False)] = 1.0
            in2[i, rng.choice(n2, m, replace=False)] = 1.0
        k11 = _polynomial_kernel(f1, f1, degree, gamma, coef0)
        sum_xx = np.einsum("sn,sn->s", in1 @ k11, in1) - in1 @ np.diag(k11)
        del k11
        k22 = _polynomial_kernel(f2, f2, degree, gamma, coef0)
        sum_yy = np.einsum("sn,sn->s", in2 @ k22, in2) - in2 @ np.diag(k22)
        del k22
        sum_xy = np.einsum("sn,sn->s", in1 @ _polynomial_kernel(f1, f2, degree, gamma, coef0), in2)
        values = (sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * sum_xy / (m * m)
        return float(values.mean()), float(values.std())
    values = np.empty(subsets)
    for i in range(subsets):
        x = f1[rng.choice(n1, m, replace=False)]
        y = f2[rng.choice(n2, m, replace=False)]
        values[i] = unbiased_mmd2(
            _polynomial_kernel(x, x, degree, gamma, coef0),
            _polynomial_kernel(x, y, degree, gamma, coef0),
            _polynomial_kernel(y, y, degree, gamma, coef0),
        )
    return float(values.mean()), float(values.std())
