"""GAN losses on critic logits, their multi-head reductions and gradient regularisers.

Logits are tensors of shape [B] (global heads) or [B, N] (patch heads); every loss averages over
all of their elements. "Real" is the critic's output on real (target) images, "fake" on generator
samples.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

GAN_LOSSES = ("bce", "hinge", "lsgan", "wgan-gp")
HEAD_REDUCTIONS = ("mean_logits", "sum_losses")


def _check_kind(kind: str) -> None:
    if kind not in GAN_LOSSES:
        raise ValueError(f"unknown GAN loss {kind!r}; choose one of {', '.join(GAN_LOSSES)}")


def _check_reduce(reduce: str) -> None:
    if reduce not in HEAD_REDUCTIONS:
        raise ValueError(f"unknown head reduction {reduce!r}; choose one of {', '.join(HEAD_REDUCTIONS)}")


def _as_float(logits: torch.Tensor) -> torch.Tensor:
    # Heads may run under bf16 autocast; losses are taken in (at least) float32.
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def critic_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss (to minimise). For "wgan-gp" add `gradient_penalty` separately."""
    _check_kind(kind)
    real, fake = _as_float(real_logits), _as_float(fake_logits)
    if kind == "bce":
        # == BCE-with-logits against targets 1 (real) and 0 (fake), in a numerically stable form
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    if kind == "lsgan":
        return 0.5 * ((real - 1.0).pow(2).mean() + fake.pow(2).mean())
    return fake.mean() - real.mean()  # wgan-gp


def generator_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's adversarial loss (non-saturating for "bce")."""
    _check_kind(kind)
    fake = _as_float(fake_logits)
    if kind == "bce":
        return F.softplus(-fake).mean()
    if kind == "lsgan":
        return 0.5 * (fake - 1.0).pow(2).mean()
    return -fake.mean()  # hinge and wgan-gp


# ---------------------------------------------------------------------------------------------
# several heads
def per_sample_logits(logits: torch.Tensor) -> torch.Tensor:
    """[B] -> [B]; a patch head's [B, N] (or [B, h, w]) -> its spatial mean, [B]."""
    if logits.ndim == 0:
        raise ValueError("head logits need a batch dimension, got a scalar")
    return logits.reshape(logits.shape[0], -1).mean(dim=1) if logits.ndim > 1 else logits


def mean_head_logits(logits_per_head: Sequence[torch.Tensor]) -> torch.Tensor:
    """One critic score per sample: the average over heads of each head's per-sample logit, [B]."""
    if len(logits_per_head) == 0:
        raise ValueError("no head logits given; the discriminator must have at least one head")
    return torch.stack([_as_float(per_sample_logits(h)) for h in logits_per_head]).mean(dim=0)


def _check_head_lists(real_list: Sequence[torch.Tensor], fake_list: Sequence[torch.Tensor]) -> None:
    if len(real_list) != len(fake_list) or len(real_list) == 0:
        raise ValueError(f"multi-head loss needs the same, non-zero number of real and fake head outputs; "
                         f"got {len(real_list)} real and {len(fake_list)} fake")


def multihead_critic_loss(
    kind: str, real_list: Sequence[torch.Tensor], fake_list: Sequence[torch.Tensor], reduce: str = "mean_logits"
) -> torch.Tensor:
    """Critic loss over several heads.

    mean_logits: the heads' logits are averaged into one per-sample logit, then one loss.
    sum_losses: each head has its own loss; the losses are summed.
    """
    _check_kind(kind)
    _check_reduce(reduce)
    _check_head_lists(real_list, fake_list)
    if reduce == "mean_logits":
        return critic_loss(kind, mean_head_logits(real_list), mean_head_logits(fake_list))
    return torch.stack([critic_loss(kind, r, f) for r, f in zip(real_list, fake_list)]).sum()


def multihead_generator_loss(kind: str, fake_list: Sequence[torch.Tensor], reduce: str = "mean_logits") -> torch.Tensor:
    """Generator loss over several heads; `reduce` as in `multihead_critic_loss`."""
    _check_kind(kind)
    _check_reduce(reduce)
    if len(fake_list) == 0:
        raise ValueError("multi-head loss needs at least one head output")
    if reduce == "mean_logits":
        return generator_loss(kind, mean_head_logits(fake_list))
    return torch.stack([generator_loss(kind, f) for f in fake_list]).sum()


# ---------------------------------------------------------------------------------------------
# gradient regularisers
def _per_sample_grad_sq_norm(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(outputs.sum(), inputs, create_graph=True)
    return grad.reshape(grad.shape[0], -1).pow(2).sum(dim=1)


def gradient_penalty(
    critic_fn: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float = 10.0,
) -> torch.Tensor:
    """WGAN-GP: weight * E[(||grad_x critic(x_hat)|| - 1)^2] at random interpolates x_hat.

    critic_fn maps inputs to per-sample scores ([B], or [B, N] which is averaged per sample; for a
    multi-head critic wrap it with `mean_head_logits`). The interpolation weights come from torch's
    global RNG.
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real {tuple(real.shape)} and fake {tuple(fake.shape)} differ in shape")
    alpha = torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), device=real.device, dtype=real.dtype)
    interpolates = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic_fn(interpolates)
    if isinstance(scores, (list, tuple)):
        raise TypeError("gradient_penalty: critic_fn returned a list of head logits; wrap it with mean_head_logits")
    grad_norm = _per_sample_grad_sq_norm(per_sample_logits(scores), interpolates).add(1e-12).sqrt()
    return weight * (grad_norm - 1.0).pow(2).mean()


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor, gamma: float) -> torch.Tensor:
    """R1: gamma / 2 * E[||grad_x D(x)||^2] on real inputs (which must require grad and produced
    `real_logits`). Patch logits are averaged per sample first."""
    if isinstance(real_logits, (list, tuple)):
        raise TypeError("r1_penalty: got a list of head logits; reduce them first with mean_head_logits")
    if not real_inputs.requires_grad:
        raise ValueError("r1_penalty: real_inputs do not require grad; call real.requires_grad_(True) "
                         "before running the critic on them")
    return 0.5 * gamma * _per_sample_grad_sq_norm(per_sample_logits(real_logits), real_inputs).mean()
