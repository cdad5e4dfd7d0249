"""Distribution-matching (DMD) loss and its dual-domain (source + target teacher) mix."""
from __future__ import annotations

import torch
import torch.nn.functional as F

# DMD's per-sample normaliser is a mean absolute value; it must never divide by zero.
_MIN_NORMALISER = 1e-8


def _working_dtype(x: torch.Tensor) -> torch.dtype:
    """At least float32: the normalised gradient is tiny and would underflow in bf16/fp16."""
    return torch.promote_types(x.dtype, torch.float32)


def dmd_gradient(x: torch.Tensor, x0_teacher: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """The DMD update direction g = (p_real - p_fake) / w, no grad.

    p_real = x - x0_teacher, p_fake = x - x0_fake, w = per-sample mean |p_real| (clamped).
    """
    for name, other in (("x0_teacher", x0_teacher), ("x0_fake", x0_fake)):
        if other.shape != x.shape:
            raise ValueError(f"dmd_loss: {name} has shape {tuple(other.shape)} but x has {tuple(x.shape)}; "
                             "pass the denoisers' outputs at the noised student sample")
    dtype = _working_dtype(x)
    with torch.no_grad():
        x_const = x.detach().to(dtype)
        p_real = x_const - x0_teacher.detach().to(dtype)
        p_fake = x_const - x0_fake.detach().to(dtype)
        reduce_dims = tuple(range(1, x.ndim))
        normaliser = p_real.abs().mean(dim=reduce_dims, keepdim=True).clamp(min=_MIN_NORMALISER)
        return torch.nan_to_num((p_real - p_fake) / normaliser)


def dmd_loss(x: torch.Tensor, x0_teacher: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """0.5 * mean((x - stopgrad(x - g))^2): a surrogate whose gradient w.r.t. x is g / x.numel().

    x: the student output (with grad); x0_teacher / x0_fake: the teacher's and the fake-score
    network's x0 predictions at the same noised x (treated as constants).
    """
    g = dmd_gradient(x, x0_teacher, x0_fake)
    x_work = x.to(g.dtype)
    target = (x_work - g).detach()
    return 0.5 * F.mse_loss(x_work, target, reduction="mean")


def dual_dmd_loss(loss_source: torch.Tensor, loss_target: torch.Tensor | None, a: float) -> torch.Tensor:
    """(1 - a) * L_dmd(source) + a * L_dmd(target). Without a target teacher: the source loss as is."""
    a = float(a)
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"dual_dmd_loss: the target weight a must lie in [0, 1], got {a}")
    if loss_target is None:
        return loss_source
    # The end points return one loss untouched so that a NaN/inf in the unused one cannot leak in
    # through 0 * nan and the result equals the single-teacher loss exactly.
    if a == 0.0:
        return loss_source
    if a == 1.0:
        return loss_target
    return (1.0 - a) * loss_source + a * loss_target
