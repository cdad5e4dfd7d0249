"""Uni-DAD's losses as small pure functions of tensors."""
from unidad.losses.denoising import denoising_loss
from unidad.losses.dmd import dmd_gradient, dmd_loss, dual_dmd_loss
from unidad.losses.gan import (
    GAN_LOSSES,
    HEAD_REDUCTIONS,
    critic_loss,
    generator_loss,
    gradient_penalty,
    mean_head_logits,
    multihead_critic_loss,
    multihead_generator_loss,
    per_sample_logits,
    r1_penalty,
)

__all__ = [
    "GAN_LOSSES",
    "HEAD_REDUCTIONS",
    "critic_loss",
    "denoising_loss",
    "dmd_gradient",
    "dmd_loss",
    "dual_dmd_loss",
    "generator_loss",
    "gradient_penalty",
    "mean_head_logits",
    "multihead_critic_loss",
    "multihead_generator_loss",
    "per_sample_logits",
    "r1_penalty",
]
