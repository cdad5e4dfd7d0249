"""`dmd2` (Distill): DMD against ONE teacher + fake score + GAN on the stage's real images.

It is the Uni-DAD stage without the target teacher (its config has none of Uni-DAD's target-teacher
options), the teacher read from the `teacher` role (the source teacher for Distill-then-Adapt, the
fine-tuned teacher for Adapt-then-Distill) and DMD2's single-head bottleneck classifier by default.
On a text-conditioned backbone the teacher reads the batch prompts as they are (`teacher_prompt:
same`): a fine-tuned teacher knows the unique token, and source captions carry none.
"""
from __future__ import annotations

from dataclasses import dataclass

from unidad.stages.base import register_stage
from unidad.stages.unidad import DistillConfig, UniDADStage


@dataclass(kw_only=True)
class DMD2Config(DistillConfig):
    discriminator: str = "single"
    # the teacher may be an adapted one that knows the unique token (Adapt-then-Distill)
    teacher_prompt: str = "same"


@register_stage("dmd2")
class DMD2Stage(UniDADStage):
    config_cls = DMD2Config
    roles = ("init", "teacher")
    teacher_role = "teacher"

    def uses_target_teacher(self) -> str:
        return "none"
