"""`dreambooth` (the SDP benchmark's FT row): fine-tune the source model on a subject's images captioned
with the unique token ("a prt dog"), optionally with class-prior preservation.

It is the `ft` stage on captioned images plus the prior term: before training, the source model (the
stage's initial weights) generates `prior_images` class images from the class prompts (the captions
without the unique token) with `prior_steps` sampler steps and CFG `prior_guidance`, one seed per image;
every iteration adds `prior_weight` x the denoising loss on a batch of them, conditioned on their class
prompt. The product is sampled with the many-step sampler and CFG `sample_guidance` (SDP: 50 steps x 2
= 100 NFE). No official DreamBooth recipe exists (sdp_protocol.md section 8): the defaults follow the
DreamBooth paper's form, the values are the config's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from baselines.ft import FTConfig, FTStage
from unidad.imageio import to_float_nchw
from unidad.prompts import drop_tokens
from unidad.sampling import generate, prompt_conditioning
from unidad.stages.base import register_stage
from unidad.stages.denoise import denoising_terms, draw_training_sigmas
from unidad.stages.options import DreamBoothOptions


@dataclass(kw_only=True)
class DreamBoothConfig(DreamBoothOptions, FTConfig):
    iterations: int = 800
    batch_size: int = 1
    lr: float = 5e-6
    sample_steps: int = 50
    sample_guidance: float = 7.5


@register_stage("dreambooth")
class DreamBoothStage(FTStage):
    config_cls = DreamBoothConfig

    @classmethod
    def sampling_of(cls, config):
        return {"kind": "many_step", "sampler": config.sampler, "steps": config.sample_steps,
                "guidance": config.sample_guidance}

    def build(self) -> None:
        super().build()
        cfg = self.config
        if self.ctx.prompts is None:
            raise ValueError("stage dreambooth needs captioned subject images "
                             "(a caption with the unique token per image)")
        self._prior_latents = self._prior_prompts = None
        if cfg.prior_images > 0:
            self._make_prior()

    @torch.no_grad()
    def _make_prior(self) -> None:
        """Class images from the source model (the weights the stage starts from), kept as latents."""
        cfg, model = self.config, self.modules["model"]
        classes = sorted(set(drop_tokens(self.ctx.prompts, cfg.unique_token)))
        prompts = [classes[i % len(classes)] for i in range(cfg.prior_images)]
        seeds = [cfg.prior_seed + i for i in range(cfg.prior_images)]
        sampling = {"kind": "many_step", "sampler": cfg.sampler, "steps": cfg.prior_steps,
                    "guidance": cfg.prior_guidance}
        images, _ = generate(model, sampling, seeds, batch_size=max(cfg.batch_size, 8), device=self.ctx.device,
                             prompts=prompts)
        pixels = torch.from_numpy(to_float_nchw(images)).to(self.ctx.device)
        self._prior_latents = torch.cat([model.encode(chunk) for chunk in pixels.split(8)])
        self._prior_prompts = prompts

    def _loss(self, batch):
        terms = super()._loss(batch)
        cfg = self.config
        if self._prior_latents is None or cfg.prior_weight == 0:
            return terms
        model = self.modules["model"]
        pick = torch.randint(0, len(self._prior_prompts), (batch["real"].shape[0],)).tolist()
        latents = self._prior_latents[pick]
        sigma = draw_training_sigmas(cfg, latents.shape[0], latents.device, model)
        cond = prompt_conditioning(model, [self._prior_prompts[i] for i in pick])
        terms["instance"] = terms["loss"]
        terms["prior"] = denoising_terms(model, latents, sigma, cond)["loss"]
        terms["loss"] = terms["instance"] + cfg.prior_weight * terms["prior"]
        return terms
