"""Regression targets of the role-separated (DP-DMD) and backward (Imagine Flash) distillation losses.

Both methods regress a student's x0 onto a target the teacher computes without grad; what differs is
the target. These are pure functions of tensors and noise levels (EDM: x = x0 + sigma * eps).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

ANCHOR_FORMS = ("initial_noise", "ddim", "denoised")


def anchor_x0(form: str, z_k: torch.Tensor, x_start: torch.Tensor, sigma_start: float, sigma_k: float,
              sigma_next: float, x0_at_anchor: torch.Tensor | None = None) -> torch.Tensor:
    """The x0 whose first student transition from x_start (at sigma_start) lands on the teacher's
    state z_k (at sigma_k).

    initial_noise: the student re-noises along the initial noise direction eps = x_start / sigma_start
        to its next sigma: x0* = z_k - sigma_next * eps, so x0* + sigma_next * eps == z_k exactly.
    ddim: the deterministic DDIM transition to sigma_k, x_k = x0 + sigma_k (x_start - x0) / sigma_start,
        solved for x0: x0* = (sigma_start z_k - sigma_k x_start) / (sigma_start - sigma_k).
    denoised: the teacher's own x0 at the anchor, T(z_k, sigma_k) (passed as x0_at_anchor).
    """
    if form == "initial_noise":
        return z_k - sigma_next * (x_start / sigma_start)
    if form == "ddim":
        if sigma_start <= sigma_k:
            raise ValueError(f"anchor_x0: the anchor sigma {sigma_k} must lie below the start sigma {sigma_start}")
        return (sigma_start * z_k - sigma_k * x_start) / (sigma_start - sigma_k)
    if form == "denoised":
        if x0_at_anchor is None:
            raise ValueError("anchor_x0: form 'denoised' needs the teacher's x0 at the anchor (x0_at_anchor)")
        return x0_at_anchor
    raise ValueError(f"unknown anchor form {form!r}; choose one of {', '.join(ANCHOR_FORMS)}")


def regression_loss(x0_student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean((x0_student - stopgrad(target))^2) in x0 units, computed in at least float32."""
    if x0_student.shape != target.shape:
        raise ValueError(f"regression_loss: student {tuple(x0_student.shape)} and target {tuple(target.shape)} "
                         "differ in shape")
    dtype = torch.promote_types(x0_student.dtype, torch.float32)
    return F.mse_loss(x0_student.to(dtype), target.detach().to(dtype))


def shifted_sigma(sigma: torch.Tensor, shift: float, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Imagine Flash's shifted teacher time gamma(t) as a noise level: shift * sigma, clamped to
    [sigma_min, sigma_max]. In rectified-flow time t = sigma / (1 + sigma) this is SD3's time shift
    t' = s t / (1 + (s - 1) t); it is monotone, the identity at shift = 1, and keeps high noise high."""
    if shift <= 0:
        raise ValueError(f"shifted_sigma: the shift must be > 0, got {shift}")
    return (sigma * shift).clamp(min=sigma_min, max=sigma_max)
