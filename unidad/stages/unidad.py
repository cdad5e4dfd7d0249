"""Uni-DAD: single-stage distillation + adaptation of a few-step generator (unidad_method.md).

Networks: G (few-step student), fake (fake score, tracks G's distribution; its encoder also feeds the
discriminator heads), src (frozen source teacher), tgt (optional target teacher: none | online |
frozen). Every iteration updates fake + heads; every `ratio`-th iteration also G (and the online
target teacher).

DMD2 (baselines/dmd2.py) is this stage with one teacher, no target teacher (its config has no
target-teacher options) and the single-head classifier by default, so both methods share one
implementation of every loss and update.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from unidad.discriminator import build_discriminator, critic_logits
from unidad.edm import GRID_SIZE, sample_grid_sigmas, student_sigmas, unroll_generator
from unidad.losses.denoising import denoising_loss
from unidad.losses.dmd import dmd_loss, dual_dmd_loss
from unidad.losses.gan import (
    gradient_penalty,
    mean_head_logits,
    multihead_critic_loss,
    multihead_generator_loss,
    r1_penalty,
)
from unidad.stages.base import Stage, TrainConfig, Update, register_stage
from unidad.stages.options import DMDOptions, FewStepOptions, GANOptions, TargetTeacherOptions


@dataclass(kw_only=True)
class DistillConfig(GANOptions, DMDOptions, FewStepOptions, TrainConfig):
    """Options of a DMD + GAN distillation stage (dmd2 uses it as is) at the paper's scale
    (unidad_method.md: 40k iterations, batch 1, bf16)."""

    iterations: int = 40000
    batch_size: int = 1
    precision: str = "bf16"


@dataclass(kw_only=True)
class UniDADConfig(TargetTeacherOptions, DistillConfig):
    pass


@register_stage("unidad")
class UniDADStage(Stage):
    config_cls = UniDADConfig
    primary = "generator"
    roles = ("init", "source", "target_teacher")
    #: the role whose network is the (main) real-score teacher; the fake score starts from it too
    teacher_role = "source"

    @classmethod
    def sampling_of(cls, config):
        return {"kind": "few_step", "steps": config.gen_steps, "sigma_start": config.sigma_start,
                "sigma_end": config.sigma_end, "noise_correction": False}

    def uses_target_teacher(self) -> str:
        """none | online | frozen (a stage without TargetTeacherOptions overrides this)."""
        return self.config.target_teacher

    # -- modules ---------------------------------------------------------------------------------
    def build(self) -> None:
        cfg = self.config
        teacher = self.add("teacher", self.new_backbone(self.teacher_role), frozen=True)
        self.add("generator", self.new_backbone("init"))
        fake = self.add("fake", copy.deepcopy(teacher))
        fake.requires_grad_(True)
        fake.train()
        self.add("heads", build_discriminator(fake, kind=cfg.discriminator, taps=cfg.head_taps, head_type=cfg.head_type))
        mode = self.uses_target_teacher()
        if mode == "online":
            tgt = self.add("target_teacher", copy.deepcopy(teacher))
            tgt.requires_grad_(True)
            tgt.train()
        elif mode == "frozen":
            self.add("target_teacher", self.new_backbone("target_teacher"), frozen=True)
        if self.ctx.real_images is None and (cfg.gan_weight_g > 0 or cfg.gan_weight_d > 0 or mode == "online"):
            raise ValueError(f"stage {self.stage_id} needs real images for the GAN / online target teacher")
        self._sigmas = student_sigmas(cfg.gen_steps, cfg.sigma_start, cfg.sigma_end)

    # -- pieces ----------------------------------------------------------------------------------
    def _latent_noise(self, batch: int) -> torch.Tensor:
        shape = self.modules["generator"].latent_shape
        return torch.randn(batch, *shape, device=self.ctx.device)

    def _student_samples(self, batch: int) -> torch.Tensor:
        return unroll_generator(self.modules["generator"], self._latent_noise(batch), self._sigmas)

    def _critic_inputs(self, x: torch.Tensor):
        sigma = sample_grid_sigmas(x.shape[0], 0, GRID_SIZE - 1, device=x.device)
        return x + sigma.view(-1, 1, 1, 1) * torch.randn_like(x), sigma

    def _logits(self, x_noisy, sigma):
        return critic_logits(self.modules["fake"], self.modules["heads"], x_noisy, sigma)

    def _dmd_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        sigma = sample_grid_sigmas(x.shape[0], cfg.dmd_index_lo, cfg.dmd_index_hi, device=x.device)
        x_t = x.detach() + sigma.view(-1, 1, 1, 1) * torch.randn_like(x)
        with torch.no_grad():
            x0_fake = self.modules["fake"].denoise(x_t, sigma)
            x0_src = self.modules["teacher"].denoise(x_t, sigma)
            x0_tgt = self.modules["target_teacher"].denoise(x_t, sigma) if "target_teacher" in self.modules else None
        terms = {"dmd_source": dmd_loss(x, x0_src, x0_fake)}
        if x0_tgt is not None:
            terms["dmd_target"] = dmd_loss(x, x0_tgt, x0_fake)
            terms["dmd"] = dual_dmd_loss(terms["dmd_source"], terms["dmd_target"], cfg.dual_weight)
        else:
            terms["dmd"] = terms["dmd_source"]
        return terms

    def _generator_output(self) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """The student's samples for its update, with the terms (and their weighted sum) of any loss on
        the unroll itself; the DMD and GAN terms on the samples are added by `generator_loss`."""
        x = self._student_samples(self.config.batch_size)
        return x, {}, x.new_zeros(())

    def fake_score_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The fake score's denoising loss on detached student samples x."""
        fake = self.modules["fake"]
        sigma = sample_grid_sigmas(x.shape[0], 0, GRID_SIZE - 1, device=x.device)
        x_t = x + sigma.view(-1, 1, 1, 1) * torch.randn_like(x)
        return {"fake_denoise": denoising_loss(fake.denoise(x_t, sigma), x, sigma, sigma_data=fake.sigma_data)}

    # -- losses ----------------------------------------------------------------------------------
    def generator_loss(self, batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        x, terms, loss = self._generator_output()
        if cfg.dmd_weight > 0:
            terms.update(self._dmd_terms(x))
            loss = loss + cfg.dmd_weight * terms["dmd"]
        if cfg.gan_weight_g > 0:
            logits = self._logits(*self._critic_inputs(x))
            terms["gan_g"] = multihead_generator_loss(cfg.gan_loss, logits, cfg.head_reduce)
            loss = loss + cfg.gan_weight_g * terms["gan_g"]
        terms["loss"] = loss
        return terms

    def critic_loss(self, batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        with torch.no_grad():
            x = self._student_samples(cfg.batch_size)
        terms = self.fake_score_terms(x)
        loss = terms["fake_denoise"]
        if cfg.gan_weight_d > 0:
            real = self.modules["fake"].encode(batch["real"])
            real_noisy, sigma_r = self._critic_inputs(real)
            if cfg.r1_gamma > 0:
                real_noisy = real_noisy.detach().requires_grad_(True)
            fake_noisy, sigma_f = self._critic_inputs(x)
            real_logits = self._logits(real_noisy, sigma_r)
            fake_logits = self._logits(fake_noisy, sigma_f)
            d = multihead_critic_loss(cfg.gan_loss, real_logits, fake_logits, cfg.head_reduce)
            if cfg.gan_loss == "wgan-gp":
                # interpolate at the real inputs' noise levels so the critic sees one sigma per sample
                fake_at_r = x + sigma_r.view(-1, 1, 1, 1) * torch.randn_like(x)
                d = d + gradient_penalty(lambda xi: mean_head_logits(self._logits(xi, sigma_r)),
                                         real_noisy.detach(), fake_at_r, weight=cfg.wgan_gp_weight)
            if cfg.r1_gamma > 0:
                d = d + r1_penalty(mean_head_logits(real_logits), real_noisy, cfg.r1_gamma)
            terms["gan_d"] = d
            terms["score_real"] = mean_head_logits(real_logits).mean().detach()
            terms["score_fake"] = mean_head_logits(fake_logits).mean().detach()
            loss = loss + cfg.gan_weight_d * d
        terms["loss"] = loss
        return terms

    def target_teacher_loss(self, batch) -> dict[str, torch.Tensor]:
        tgt = self.modules["target_teacher"]
        real = tgt.encode(batch["real"])
        sigma = sample_grid_sigmas(real.shape[0], 0, GRID_SIZE - 1, device=real.device)
        noisy = real + sigma.view(-1, 1, 1, 1) * torch.randn_like(real)
        return {"loss": denoising_loss(tgt.denoise(noisy, sigma), real, sigma, sigma_data=tgt.sigma_data)}

    def updates(self) -> list[Update]:
        cfg = self.config
        ups = [Update("generator", ["generator"], self.generator_loss, every=cfg.ratio)]
        if self.uses_target_teacher() == "online":
            ups.append(Update("target_teacher", ["target_teacher"], self.target_teacher_loss,
                              every=cfg.target_teacher_every or cfg.ratio, lr=cfg.target_teacher_lr or None))
        ups.append(Update("critic", ["fake", "heads"], self.critic_loss, every=1, lr=cfg.fake_lr or None))
        return ups
