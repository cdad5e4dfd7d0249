"""`imagine_flash` (Imagine Flash, Kohler et al., arXiv 2405.05224; no public code): a 1-3 step student
distilled by

* backward distillation: the training input at step j is the student's OWN no-grad rollout from pure
  noise down to sigma_j (unidad.edm.rollout_state), not forward-noised data; the student's x0 there
  regresses onto the teacher's x0 after `teacher_steps` Euler steps from the same state;
* the shifted reconstruction loss: the student's x0 is re-noised to gamma(sigma_j) = recon_shift *
  sigma_j (unidad.losses.anchor.shifted_sigma), the teacher denoises it in `teacher_steps` steps, and
  the student's x0 regresses onto that;
* optionally the project's discriminator heads on a fake-score copy of the teacher, trained as Uni-DAD's
  critic is (the paper's "w/o discriminator" ablation is gan_weight_g = 0).

`distill_input: forward` trains on the stage's images noised to sigma_j instead (forward
distillation: the comparison the paper's backward distillation is claimed to beat). Noise correction
is a sampler option, evaluated for every few-step student (config evaluation.noise_correction).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from unidad.discriminator import build_discriminator
from unidad.edm import rollout_state, sample_euler, sampling_sigmas
from unidad.losses.anchor import regression_loss, shifted_sigma
from unidad.losses.gan import multihead_generator_loss
from unidad.stages.base import TrainConfig, Update, register_stage
from unidad.stages.options import (
    BackwardDistillOptions, CriticScheduleOptions, FewStepOptions, GANOptions, SpeedOptions, TextOptions,
)
from unidad.stages.unidad import UniDADStage


@dataclass(kw_only=True)
class ImagineFlashConfig(SpeedOptions, TextOptions, BackwardDistillOptions, GANOptions, CriticScheduleOptions,
                         FewStepOptions, TrainConfig):
    iterations: int = 40000
    batch_size: int = 1
    precision: str = "bf16"
    ratio: int = 1  # no fake score to keep ahead of the student: the critic and student alternate


def teacher_x0(teacher, x: torch.Tensor, sigma: float, steps: int, cond=None) -> torch.Tensor:
    """The teacher's x0 after `steps` Euler steps from x at sigma down to 0 (no grad), conditioned (with
    its guidance) on `cond` where the backbone reads text."""
    grid = sampling_sigmas(steps, sigma_min=min(teacher.sigma_min, sigma), sigma_max=sigma)
    return sample_euler(teacher.denoise, x, grid, cond)


@register_stage("imagine_flash")
class ImagineFlashStage(UniDADStage):
    config_cls = ImagineFlashConfig
    roles = ("init", "teacher")
    teacher_role = "teacher"

    def uses_target_teacher(self) -> str:
        return "none"

    def uses_gan(self) -> bool:
        """gan_weight_g = 0 is the paper's "w/o discriminator": no critic is built or trained."""
        return self.config.gan_weight_g > 0

    def build(self) -> None:
        cfg = self.config
        teacher = self.add("teacher", self.new_backbone(self.teacher_role), frozen=True)
        self.add("generator", self.new_backbone("init"))
        if self.uses_gan():
            fake = self.add("fake", copy.deepcopy(teacher))
            fake.requires_grad_(True)
            fake.train()
            self.add("heads", build_discriminator(fake, kind=cfg.discriminator, taps=cfg.head_taps,
                                                  head_type=cfg.head_type))
        if self.ctx.real_images is None and (self.uses_gan() or cfg.distill_input == "forward"):
            raise ValueError(f"stage {self.stage_id} needs real images for the discriminator or forward distillation")
        self._setup_schedule()

    def training_state(self, batch, z: torch.Tensor, step: int, cond=None) -> torch.Tensor:
        """The generator's input at student step `step`: its own rollout from z (backward) or the
        stage's images noised to that sigma (forward)."""
        if self.config.distill_input == "backward":
            return rollout_state(self.modules["generator"], z, self._sigmas, step, cond)
        real = self.modules["teacher"].encode(batch["real"])
        return real + float(self._sigmas[step]) * torch.randn_like(real)

    def generator_loss(self, batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        teacher = self.modules["teacher"]
        # the batch's prompts: G reads them as they are, the teacher as TextOptions say (None: no text)
        cond, teacher_cond = self._cond(batch), self._teacher_cond(batch)
        z = self._latent_noise(cfg.batch_size)
        step = int(torch.randint(0, len(self._sigmas), ()))
        sigma = float(self._sigmas[step])
        x = self.training_state(batch, z, step, cond)
        x0 = self.modules["generator"].denoise(x, x.new_full((x.shape[0],), sigma), cond)
        terms, loss = {}, x0.new_zeros(())
        if cfg.backward_weight > 0:
            terms["backward"] = regression_loss(x0, teacher_x0(teacher, x, sigma, cfg.teacher_steps, teacher_cond))
            loss = loss + cfg.backward_weight * terms["backward"]
        if cfg.recon_weight > 0:
            shifted = float(shifted_sigma(torch.tensor(sigma), cfg.recon_shift, teacher.sigma_min, float(self._sigmas[0])))
            renoised = x0.detach() + shifted * torch.randn_like(x0)
            terms["recon"] = regression_loss(x0, teacher_x0(teacher, renoised, shifted, cfg.teacher_steps, teacher_cond))
            loss = loss + cfg.recon_weight * terms["recon"]
        if cfg.gan_weight_g > 0:
            terms["gan_g"] = multihead_generator_loss(cfg.gan_loss, self._logits(*self._critic_inputs(x0), cond),
                                                      cfg.head_reduce)
            loss = loss + cfg.gan_weight_g * terms["gan_g"]
        terms["loss"] = loss
        return terms

    def updates(self) -> list[Update]:
        cfg = self.config
        ups = [Update("generator", ["generator"], self.generator_loss, every=cfg.ratio)]
        if self.uses_gan():
            ups.append(Update("critic", ["fake", "heads"], self.critic_loss, every=1, lr=cfg.fake_lr or None))
        return ups
