"""Uni-DAD: single-stage distillation + adaptation of a few-step generator (unidad_method.md).

Networks: G (few-step student), fake (fake score, tracks G's distribution; its encoder also feeds the
discriminator heads), src (frozen source teacher), tgt (optional target teacher: none | online |
frozen). Every iteration updates fake + heads; every `ratio`-th iteration also G (and the online
target teacher).

DMD2 (baselines/dmd2.py) is this stage with one teacher, no target teacher (its config has no
target-teacher options) and the single-head classifier by default, so both methods share one
implementation of every loss and update.

On a text-conditioned backbone every network reads the batch's prompts (`batch["prompts"]`, the
captions of the stage's images): G, the fake score, the GAN (real and fake side) and the target
teacher as they are, the source teacher without the unique token; each role has its own CFG
(TextOptions, TargetTeacherOptions). Every sigma comes from the backbone's range (unidad.edm.denoiser_grid).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from unidad.backbones.base import Conditioning
from unidad.discriminator import build_discriminator, critic_logits
from unidad.edm import GRID_SIZE, denoiser_grid, denoiser_student_sigmas, sample_grid_sigmas, unroll_generator
from unidad.losses.denoising import denoising_loss
from unidad.losses.dmd import dmd_loss, dual_dmd_loss
from unidad.losses.gan import (
    gradient_penalty,
    mean_head_logits,
    multihead_critic_loss,
    multihead_generator_loss,
    r1_penalty,
)
from unidad.prompts import drop_tokens
from unidad.sampling import prompt_conditioning
from unidad.stages.base import Stage, TrainConfig, Update, register_stage
from unidad.stages.options import (
    DMDOptions, FewStepOptions, GANOptions, SpeedOptions, TargetTeacherOptions, TextOptions,
)


@dataclass(kw_only=True)
class DistillConfig(SpeedOptions, TextOptions, GANOptions, DMDOptions, FewStepOptions, TrainConfig):
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
        if self.ctx.real_images is None and (max(self.gan_weights()) > 0 or mode == "online"):
            raise ValueError(f"stage {self.stage_id} needs real images for the GAN / online target teacher")
        self._setup_schedule()

    def _setup_schedule(self) -> None:
        """The student's sigmas and the training grid, from the generator's sigma range, and the store of
        samples the critic update reads; every distillation stage's build ends with it."""
        cfg = self.config
        generator = self.modules["generator"]
        self._sigmas = denoiser_student_sigmas(generator, cfg.gen_steps, cfg.sigma_start, cfg.sigma_end)
        self._grid = denoiser_grid(generator)
        # the generator update's samples (one per micro-batch, detached), which the critic update of
        # the same iteration trains on instead of drawing a fresh unroll (as the official step does)
        self._shared_samples: list[torch.Tensor] = []

    # -- pieces ----------------------------------------------------------------------------------
    def _latent_noise(self, batch: int) -> torch.Tensor:
        shape = self.modules["generator"].latent_shape
        return torch.randn(batch, *shape, device=self.ctx.device)

    def _cond(self, batch) -> Conditioning | None:
        """The batch prompts' conditioning (no guidance): G, the fake score's losses, the GAN and the
        target teacher's training read it. None on an unconditional backbone."""
        return prompt_conditioning(self.modules["generator"], batch.get("prompts"))

    def _teacher_cond(self, batch) -> Conditioning | None:
        cfg = self.config
        prompts = batch.get("prompts")
        if cfg.teacher_prompt == "without_token":
            prompts = drop_tokens(prompts, cfg.unique_token)
        return prompt_conditioning(self.modules["teacher"], prompts, cfg.teacher_guidance)

    def _student_samples(self, batch: int, cond: Conditioning | None = None) -> torch.Tensor:
        return unroll_generator(self.modules["generator"], self._latent_noise(batch), self._sigmas, cond,
                                checkpoint=self.config.checkpoint_unroll)

    def _grid_sigmas(self, batch: int, device, lo: int = 0, hi: int = GRID_SIZE - 1) -> torch.Tensor:
        return sample_grid_sigmas(batch, lo, hi, grid=self._grid, device=device)

    def _critic_inputs(self, x: torch.Tensor):
        sigma = self._grid_sigmas(x.shape[0], x.device)
        return x + sigma.view(-1, 1, 1, 1) * torch.randn_like(x), sigma

    def _logits(self, x_noisy, sigma, cond: Conditioning | None = None):
        return critic_logits(self.modules["fake"], self.modules["heads"], x_noisy, sigma, cond)

    @staticmethod
    def _guided(cond: Conditioning | None, scale: float) -> Conditioning | None:
        return None if cond is None else cond.with_guidance(scale)

    def _dmd_terms(self, x: torch.Tensor, batch, cond: Conditioning | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        sigma = self._grid_sigmas(x.shape[0], x.device, cfg.dmd_index_lo, cfg.dmd_index_hi)
        x_t = x.detach() + sigma.view(-1, 1, 1, 1) * torch.randn_like(x)
        with torch.no_grad():
            x0_fake = self.modules["fake"].denoise(x_t, sigma, self._guided(cond, cfg.fake_guidance))
            x0_src = self.modules["teacher"].denoise(x_t, sigma, self._teacher_cond(batch))
            x0_tgt = (self.modules["target_teacher"].denoise(x_t, sigma, self._guided(cond, cfg.target_guidance))
                      if "target_teacher" in self.modules else None)
        terms = {"dmd_source": dmd_loss(x, x0_src, x0_fake)}
        if x0_tgt is not None:
            terms["dmd_target"] = dmd_loss(x, x0_tgt, x0_fake)
            terms["dmd"] = dual_dmd_loss(terms["dmd_source"], terms["dmd_target"], cfg.dual_weight)
        else:
            terms["dmd"] = terms["dmd_source"]
        return terms

    def _generator_output(self, batch, cond: Conditioning | None):
        """The student's samples for its update, with the terms (and their weighted sum) of any loss on
        the unroll itself; the DMD and GAN terms on the samples are added by `generator_loss`."""
        x = self._student_samples(self.config.batch_size, cond)
        return x, {}, x.new_zeros(())

    def _critic_samples(self, cond: Conditioning | None) -> torch.Tensor:
        """The critic update's student samples: the generator update's of this iteration where there was
        one, else a fresh no-grad unroll."""
        if self._shared_samples:
            return self._shared_samples.pop(0)
        with torch.no_grad():
            return self._student_samples(self.config.batch_size, cond)

    def fake_score_terms(self, x: torch.Tensor, cond: Conditioning | None = None) -> dict[str, torch.Tensor]:
        """The fake score's denoising loss on detached student samples x."""
        fake = self.modules["fake"]
        sigma = self._grid_sigmas(x.shape[0], x.device)
        x_t = x + sigma.view(-1, 1, 1, 1) * torch.randn_like(x)
        return {"fake_denoise": denoising_loss(fake.denoise(x_t, sigma, cond), x, sigma, sigma_data=fake.sigma_data)}

    def gan_weights(self) -> tuple[float, float]:
        """(lambda_G, lambda_D) of the GAN terms; a stage without a discriminator (dpdmd) returns zeros."""
        return self.config.gan_weight_g, self.config.gan_weight_d

    # -- losses ----------------------------------------------------------------------------------
    def generator_loss(self, batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        gan_weight_g, _ = self.gan_weights()
        cond = self._cond(batch)
        x, terms, loss = self._generator_output(batch, cond)
        self._shared_samples.append(x.detach())
        if cfg.dmd_weight > 0:
            terms.update(self._dmd_terms(x, batch, cond))
            loss = loss + cfg.dmd_weight * terms["dmd"]
        if gan_weight_g > 0:
            logits = self._logits(*self._critic_inputs(x), cond)
            terms["gan_g"] = multihead_generator_loss(cfg.gan_loss, logits, cfg.head_reduce)
            loss = loss + gan_weight_g * terms["gan_g"]
        terms["loss"] = loss
        return terms

    def critic_loss(self, batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        _, gan_weight_d = self.gan_weights()
        cond = self._cond(batch)
        x = self._critic_samples(cond)
        terms = self.fake_score_terms(x, cond)
        loss = terms["fake_denoise"]
        if gan_weight_d > 0:
            real = self.modules["fake"].encode(batch["real"])
            real_noisy, sigma_r = self._critic_inputs(real)
            if cfg.r1_gamma > 0:
                real_noisy = real_noisy.detach().requires_grad_(True)
            fake_noisy, sigma_f = self._critic_inputs(x)
            # one encoder pass over real and fake together: the backbones normalise per sample, so this
            # is the two passes' result, at the cost of one larger batch; the real images' captions are
            # the batch prompts G was conditioned on, so both halves read the same conditioning
            n = real_noisy.shape[0]
            both_cond = None if cond is None else cond.select(torch.arange(n, device=x.device).repeat(2))
            both = self._logits(torch.cat([real_noisy, fake_noisy]), torch.cat([sigma_r, sigma_f]), both_cond)
            real_logits = [logit[:n] for logit in both]
            fake_logits = [logit[n:] for logit in both]
            d = multihead_critic_loss(cfg.gan_loss, real_logits, fake_logits, cfg.head_reduce)
            if cfg.gan_loss == "wgan-gp":
                # interpolate at the real inputs' noise levels so the critic sees one sigma per sample
                fake_at_r = x + sigma_r.view(-1, 1, 1, 1) * torch.randn_like(x)
                d = d + gradient_penalty(lambda xi: mean_head_logits(self._logits(xi, sigma_r, cond)),
                                         real_noisy.detach(), fake_at_r, weight=cfg.wgan_gp_weight)
            if cfg.r1_gamma > 0:
                d = d + r1_penalty(mean_head_logits(real_logits), real_noisy, cfg.r1_gamma)
            terms["gan_d"] = d
            terms["score_real"] = mean_head_logits(real_logits).mean().detach()
            terms["score_fake"] = mean_head_logits(fake_logits).mean().detach()
            loss = loss + gan_weight_d * d
        terms["loss"] = loss
        return terms

    def target_teacher_loss(self, batch) -> dict[str, torch.Tensor]:
        tgt = self.modules["target_teacher"]
        real = tgt.encode(batch["real"])
        sigma = self._grid_sigmas(real.shape[0], real.device)
        noisy = real + sigma.view(-1, 1, 1, 1) * torch.randn_like(real)
        cond = prompt_conditioning(tgt, batch.get("prompts"))
        return {"loss": denoising_loss(tgt.denoise(noisy, sigma, cond), real, sigma, sigma_data=tgt.sigma_data)}

    def updates(self) -> list[Update]:
        cfg = self.config
        ups = [Update("generator", ["generator"], self.generator_loss, every=cfg.ratio)]
        if self.uses_target_teacher() == "online":
            ups.append(Update("target_teacher", ["target_teacher"], self.target_teacher_loss,
                              every=cfg.target_teacher_every or cfg.ratio, lr=cfg.target_teacher_lr or None))
        ups.append(Update("critic", ["fake", "heads"], self.critic_loss, every=1, lr=cfg.fake_lr or None))
        return ups
