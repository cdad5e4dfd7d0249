"""`dmd2` (Distill): DMD against ONE teacher + fake score + GAN on the stage's real images.

It is the Uni-DAD stage with the target teacher switched off, the teacher read from the `teacher`
role (the source teacher for Distill-then-Adapt, the fine-tuned teacher for Adapt-then-Distill)
and DMD2's single-head bottleneck classifier by default.
"""
from __future__ import annotations

from dataclasses import dataclass

from unidad.stages.base import register_stage
from unidad.stages.unidad import UniDADConfig, UniDADStage


@dataclass
class DMD2Config(UniDADConfig):
    target_teacher: str = "none"
    discriminator: str = "single"

    def validate(self, where: str = "") -> None:
        super().validate(where)
        if self.target_teacher != "none":
            raise ValueError(f"{where}dmd2 distils from one teacher: target_teacher must be 'none' (use stage unidad for two)")


@register_stage("dmd2")
class DMD2Stage(UniDADStage):
    config_cls = DMD2Config
    roles = ("init", "teacher")
    teacher_role = "teacher"
