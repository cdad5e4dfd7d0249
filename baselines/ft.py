"""`ft` (Adapt): fine-tune the source teacher on the few-shot target images with the weighted
denoising loss; the product is a many-step teacher sampled with 25 deterministic steps."""
from __future__ import annotations

from dataclasses import dataclass

from unidad.stages.base import register_stage
from unidad.stages.denoise import DenoiseConfig, DenoiseStage


@dataclass
class FTConfig(DenoiseConfig):
    iterations: int = 5000
    batch_size: int = 8
    lr: float = 2e-6
    warmup_iters: int = 500
    weight_decay: float = 0.01
    checkpoint_every: int = 500
    sigma_sampling: str = "grid"  # index ~ U{0..999} on the Karras grid, as the Uni-DAD code
    ema_decay: float = 0.0
    sample_steps: int = 25
    sampler: str = "euler"


@register_stage("ft")
class FTStage(DenoiseStage):
    config_cls = FTConfig
    roles = ("init",)
    init_role = "init"
