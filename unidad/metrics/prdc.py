"""Precision, recall, density and coverage (Naeem et al. 2020) on feature vectors.

Euclidean distances; the radius of a sample is the distance to its k-th nearest neighbour in its own
set (itself excluded); "inside a ball" is strict (<). This is not torch-fidelity's "prc" (k = 3, <=).

Distances are computed block-wise (rows of `real` against all of `fake`), so memory stays at
O(chunk * N) and the full N x M matrix is never formed. Comparisons use squared distances from
|a|^2 + |b|^2 - 2 a.b after centring both sets on the real mean (distances are translation invariant,
and centring shrinks the norms, hence the cancellation error).
"""
from __future__ import annotations

import numpy as np
import torch


def _as_tensor(x, what: str, dtype: torch.dtype, device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x)
    if t.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (N, D) feature matrix, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} contains NaN or Inf; check the feature extractor")
    return t.to(device=device, dtype=dtype)


def _squared_distances(a: torch.Tensor, a_sq: torch.Tensor, b: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    return (a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)).clamp_min_(0.0)


def _kth_neighbour_sq_radius(x: torch.Tensor, x_sq: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Squared distance from every row to its k-th nearest other row (the (k+1)-th smallest incl. itself)."""
    radii = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], chunk):
        stop = min(start + chunk, x.shape[0])
        block = _squared_distances(x[start:stop], x_sq[start:stop], x, x_sq)
        radii[start:stop] = torch.kthvalue(block, k + 1, dim=1).values
    return radii


def prdc(real, fake, k: int = 5, chunk_size: int = 1024, dtype: torch.dtype = torch.float32,
         device: str | torch.device = "cpu") -> dict[str, float]:
    """Precision, recall, density, coverage of `fake` (M, D) against `real` (N, D) features.

    dtype float32 is the fast default; float64 gives the same answers up to exact-tie cases.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    real_t = _as_tensor(real, "real features", dtype, device)
    fake_t = _as_tensor(fake, "fake features", dtype, device)
    if real_t.shape[1] != fake_t.shape[1]:
        raise ValueError(f"real and fake features differ in dimension ({real_t.shape[1]} vs {fake_t.shape[1]})")
    for name, t in (("real", real_t), ("fake", fake_t)):
        if t.shape[0] <= k:
            raise ValueError(f"{name} set has {t.shape[0]} samples; PRDC with k={k} needs more than k")

    centre = real_t.mean(dim=0, keepdim=True)
    real_t = real_t - centre
    fake_t = fake_t - centre
    real_sq = (real_t * real_t).sum(dim=1)
    fake_sq = (fake_t * fake_t).sum(dim=1)

    real_r2 = _kth_neighbour_sq_radius(real_t, real_sq, k, chunk_size)
    fake_r2 = _kth_neighbour_sq_radius(fake_t, fake_sq, k, chunk_size)

    real_balls_per_fake = torch.zeros(fake_t.shape[0], dtype=torch.int64, device=real_t.device)
    real_recalled = torch.zeros(real_t.shape[0], dtype=torch.bool, device=real_t.device)
    real_covered = torch.zeros(real_t.shape[0], dtype=torch.bool, device=real_t.device)
    for start in range(0, real_t.shape[0], chunk_size):
        stop = min(start + chunk_size, real_t.shape[0])
        d2 = _squared_distances(real_t[start:stop], real_sq[start:stop], fake_t, fake_sq)
        real_balls_per_fake += (d2 < real_r2[start:stop, None]).sum(dim=0)
        real_recalled[start:stop] = (d2 < fake_r2[None, :]).any(dim=1)
        real_covered[start:stop] = d2.min(dim=1).values < real_r2[start:stop]

    n_fake = fake_t.shape[0]
    return {
        "precision": float((real_balls_per_fake > 0).sum().item() / n_fake),
        "recall": float(real_recalled.double().mean().item()),
        "density": float(real_balls_per_fake.sum().item() / (k * n_fake)),
        "coverage": float(real_covered.double().mean().item()),
    }
