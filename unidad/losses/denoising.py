"""The EDM-weighted x0 regression used by the fake-score network and the online target teacher."""
from __future__ import annotations

import torch

from unidad.backbones.base import SIGMA_DATA
from unidad.edm import edm_loss_weight


def denoising_loss(
    x0_pred: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor, sigma_data: float = SIGMA_DATA
) -> torch.Tensor:
    """mean(lambda(sigma) * (x0_pred - x0)^2), lambda = sigma^-2 + sigma_data^-2.

    sigma: one noise level per sample, shape [B] (or a scalar for the whole batch). x0 is the
    regression target (the caller passes detached samples or real images).
    """
    if x0_pred.shape != x0.shape:
        raise ValueError(f"denoising_loss: prediction {tuple(x0_pred.shape)} and target {tuple(x0.shape)} "
                         "differ in shape")
    dtype = torch.promote_types(x0_pred.dtype, torch.float32)
    sigma = torch.as_tensor(sigma, device=x0_pred.device, dtype=dtype)
    if sigma.ndim == 0:
        sigma = sigma.expand(x0_pred.shape[0])
    sigma = sigma.reshape(-1)
    if sigma.shape[0] != x0_pred.shape[0]:
        raise ValueError(f"denoising_loss: {sigma.shape[0]} sigmas for a batch of {x0_pred.shape[0]}; "
                         "pass one sigma per sample")
    weight = edm_loss_weight(sigma, sigma_data).reshape(-1, *([1] * (x0_pred.ndim - 1)))
    squared_error = (x0_pred.to(dtype) - x0.to(dtype)).pow(2)
    return (weight * squared_error).mean()
