"""`ft` (Adapt): fine-tune the source teacher on the few-shot target images with the weighted
denoising loss; the product is a many-step teacher sampled with 25 deterministic steps."""
from __future__ import annotations

from dataclasses import dataclass

from unidad.stages.base import TrainConfig, register_stage
from unidad.stages.denoise import DenoiseStage
from unidad.stages.options import DenoiseOptions


@dataclass(kw_only=True)
class FTConfig(DenoiseOptions, TrainConfig):
    iterations: int = 5000
    sigma_sampling: str = "grid"  # index ~ U{0..999} on the Karras grid, as the Uni-DAD code
    ema_decay: float = 0.0


@register_stage("ft")
class FTStage(DenoiseStage):
    config_cls = FTConfig
    roles = ("init",)
    init_role = "init"
