"""Frechet distance between Gaussians fitted to feature sets (FID when the features are Inception pool3)."""
from __future__ import annotations

import numpy as np


def _as_feature_matrix(features, what: str) -> np.ndarray:
    arr = np.asarray(features, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (N, D) feature matrix, got shape {arr.shape}; stack one row per image")
    if arr.shape[0] < 2:
        raise ValueError(f"{what} has {arr.shape[0]} row(s); a covariance needs at least 2 images")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or Inf; check the feature extractor input range")
    return arr


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64, np.cov with rowvar=False, i.e. N-1 normalisation) of (N, D) features.

    With N <= D the covariance is rank deficient (e.g. MetFaces' 1336 images vs 2048 dims); the distance
    is still defined, but the number of images must be reported next to it.
    """
    arr = _as_feature_matrix(features, "features")
    return arr.mean(axis=0), np.cov(arr, rowvar=False)


def _check_gaussian(mu, sigma, which: int) -> tuple[np.ndarray, np.ndarray]:
    mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    sigma = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
    if mu.ndim != 1:
        raise ValueError(f"mu{which} must be a vector, got shape {mu.shape}")
    if sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"sigma{which} has shape {sigma.shape} but mu{which} has {mu.shape[0]} dims; "
                         "pass the (D, D) covariance that belongs to the (D,) mean")
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise ValueError(f"mu{which}/sigma{which} contain NaN or Inf")
    return mu, sigma


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """|mu1-mu2|^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2)).

    tr(sqrt(S1 S2)) is the sum of square roots of the eigenvalues of S1 S2 (taken as complex, real part).
    S1 S2 is similar to a PSD matrix, so its eigenvalues are real and >= 0 up to round-off; this avoids
    scipy.linalg.sqrtm, which returned large spurious imaginary parts in some SciPy releases.
    """
    mu1, sigma1 = _check_gaussian(mu1, sigma1, 1)
    mu2, sigma2 = _check_gaussian(mu2, sigma2, 2)
    if mu1.shape != mu2.shape:
        raise ValueError(f"the two Gaussians have different dimensions ({mu1.shape[0]} vs {mu2.shape[0]}); "
                         "were the features taken from different layers or extractors?")
    diff = mu1 - mu2
    eigenvalues = np.linalg.eigvals(sigma1 @ sigma2).astype(np.complex128)
    trace_sqrt_product = np.sqrt(eigenvalues).sum().real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product)


def fid_from_features(features1, features2) -> float:
    """Frechet distance between the Gaussians of two (N, D) feature sets (FID on Inception pool3)."""
    f1 = _as_feature_matrix(features1, "features1")
    f2 = _as_feature_matrix(features2, "features2")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature sets differ in dimension ({f1.shape[1]} vs {f2.shape[1]}); use one extractor for both")
    return frechet_distance(*feature_statistics(f1), *feature_statistics(f2))
