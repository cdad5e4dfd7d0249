"""`dpdmd` (DP-DMD, Diversity-Preserved DMD; arXiv 2602.03139): role-separated distillation.

The student's first step regresses onto the teacher anchor, the later steps get the DMD loss on the
final output (unidad.stages.anchored); a fake score, started from the teacher, tracks the student
(`ratio` fake-score updates per student update, official 5). No discriminator, no perceptual network,
no real images: the config has no GAN options and the stage reads no images.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

from unidad.stages.anchored import AnchoredFirstStep
from unidad.stages.base import TrainConfig, Update, register_stage
from unidad.stages.options import AnchorOptions, DMDOptions, FewStepOptions, SpeedOptions, TextOptions
from unidad.stages.unidad import UniDADStage


@dataclass(kw_only=True)
class DPDMDConfig(SpeedOptions, TextOptions, AnchorOptions, DMDOptions, FewStepOptions, TrainConfig):
    iterations: int = 40000
    batch_size: int = 1
    precision: str = "bf16"


@register_stage("dpdmd")
class DPDMDStage(AnchoredFirstStep, UniDADStage):
    config_cls = DPDMDConfig
    roles = ("init", "teacher")
    teacher_role = "teacher"
    anchor_module = "teacher"

    def uses_target_teacher(self) -> str:
        return "none"

    def build(self) -> None:
        teacher = self.add("teacher", self.new_backbone(self.teacher_role), frozen=True)
        self.add("generator", self.new_backbone("init"))
        fake = self.add("fake", copy.deepcopy(teacher))
        fake.requires_grad_(True)
        fake.train()
        self._setup_schedule()
        self.check_anchor()

    def gan_weights(self) -> tuple[float, float]:
        return 0.0, 0.0  # no discriminator: Uni-DAD's losses reduce to DMD + the anchor and the fake score

    def updates(self) -> list[Update]:
        cfg = self.config
        return [Update("generator", ["generator"], self.generator_loss, every=cfg.ratio),
                Update("critic", ["fake"], self.critic_loss, every=1, lr=cfg.fake_lr or None)]
