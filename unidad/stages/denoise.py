"""Denoising training of a many-step diffusion model: source-teacher pretraining (`pretrain`).

The fine-tune baseline (`ft`, baselines/ft.py) is this stage with its own config (the same option
groups, other defaults) and weights loaded from the source teacher instead of a random initialisation.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from unidad.backbones.base import SIGMA_MAX, SIGMA_MIN
from unidad.edm import denoiser_grid, sample_grid_sigmas
from unidad.losses.denoising import denoising_loss
from unidad.sampling import prompt_conditioning
from unidad.stages.base import Stage, TrainConfig, Update, register_stage
from unidad.stages.options import DenoiseOptions


@dataclass(kw_only=True)
class PretrainConfig(DenoiseOptions, TrainConfig):
    """`pretrain`: the source teacher trained from scratch (EDM training, EMA product)."""

    iterations: int = 3000
    batch_size: int = 64
    lr: float = 2e-3
    warmup_iters: int = 100
    weight_decay: float = 0.0
    checkpoint_every: int = 1000


def draw_training_sigmas(cfg: DenoiseOptions, batch: int, device, model) -> torch.Tensor:
    """EDM's log-normal draw, or an index ~ U{0..999} on the Karras grid over `model`'s sigma range."""
    if cfg.sigma_sampling == "lognormal":
        return (torch.randn(batch, device=device) * cfg.p_std + cfg.p_mean).exp()
    return sample_grid_sigmas(batch, grid=denoiser_grid(model), device=device)


def denoising_terms(model, real: torch.Tensor, sigma: torch.Tensor, cond=None) -> dict[str, torch.Tensor]:
    """The weighted denoising loss of `model` on clean images `real` at noise levels `sigma`."""
    noisy = real + sigma.view(-1, 1, 1, 1) * torch.randn_like(real)
    loss = denoising_loss(model.denoise(noisy, sigma, cond), real, sigma, sigma_data=model.sigma_data)
    return {"loss": loss}


def drop_captions(prompts, share: float):
    """`prompts` with each replaced by the empty prompt with probability `share` (global torch RNG)."""
    if prompts is None or share <= 0:
        return prompts
    keep = (torch.rand(len(prompts)) >= share).tolist()
    return [p if k else "" for p, k in zip(prompts, keep)]


@register_stage("pretrain")
class DenoiseStage(Stage):
    """Trains a many-step denoiser with the EDM-weighted loss on the stage's images."""

    config_cls = PretrainConfig
    primary = "model"
    #: weights role the model starts from; None = random initialisation
    init_role: str | None = None

    def build(self) -> None:
        model = self.add("model", self.new_backbone(self.init_role))
        if self.config.sigma_sampling == "lognormal" and (model.sigma_min, model.sigma_max) != (SIGMA_MIN, SIGMA_MAX):
            # EDM's log-normal draw assumes EDM's range; a VP schedule ends sooner (SD1.5 at ~14.6)
            raise ValueError(f"stage {self.stage_id}: sigma_sampling lognormal draws outside this backbone's sigma range "
                             f"[{model.sigma_min:.4g}, {model.sigma_max:.4g}]; set sigma_sampling: grid")
        if self.config.ema_decay > 0:
            self.add("ema", copy.deepcopy(model), frozen=True)
        if self.ctx.real_images is None:
            raise ValueError(f"stage {self.stage_id} needs training images")

    @classmethod
    def product_module(cls, config) -> str:
        return "ema" if config.ema_decay > 0 else "model"

    def exported_modules(self):
        out = self.trainable_modules()
        if "ema" in self.modules:
            out["ema"] = self.modules["ema"]
        return out

    @torch.no_grad()
    def _ema_step(self) -> None:
        d = self.config.ema_decay
        for p_ema, p in zip(self.modules["ema"].parameters(), self.modules["model"].parameters()):
            p_ema.lerp_(p.detach(), 1 - d)

    def _loss(self, batch):
        model, real = self.modules["model"], batch["real"]
        sigma = draw_training_sigmas(self.config, real.shape[0], real.device, model)
        # captions (text-conditioned backbones) condition the model on what each image shows
        prompts = drop_captions(batch.get("prompts"), self.config.caption_dropout)
        return denoising_terms(model, model.encode(real), sigma, prompt_conditioning(model, prompts))

    def updates(self):
        after = self._ema_step if self.config.ema_decay > 0 else None
        return [Update("model", ["model"], self._loss, every=1, after_step=after)]

    @classmethod
    def sampling_of(cls, config):
        return {"kind": "many_step", "sampler": config.sampler, "steps": config.sample_steps}
