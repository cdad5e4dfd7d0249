"""Kernel Inception Distance: unbiased MMD^2 with a polynomial kernel, averaged over random subsets.

Conventions follow torch-fidelity's KID (and Binkowski et al.'s reference): kernel
k(x, y) = (gamma <x, y> + coef0)^degree with gamma = 1/D by default; per subset the estimator drops the
diagonals of K_XX and K_YY but keeps the full K_XY; the result is the mean and the (population) standard
deviation over subsets. Subsets are drawn without replacement with numpy's RandomState(seed), first from
set 1 then from set 2, as torch-fidelity does.
"""
from __future__ import annotations

import numpy as np


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
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = f1[rng.choice(f1.shape[0], m, replace=False)]
        y = f2[rng.choice(f2.shape[0], m, replace=False)]
        values[i] = unbiased_mmd2(
            _polynomial_kernel(x, x, degree, gamma, coef0),
            _polynomial_kernel(x, y, degree, gamma, coef0),
            _polynomial_kernel(y, y, degree, gamma, coef0),
        )
    return float(values.mean()), float(values.std())
