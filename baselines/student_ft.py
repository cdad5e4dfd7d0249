"""`student_ft` (Adapt a distilled student): fine-tune a K-step student with the weighted denoising
loss on the target images, at the student's own sampling sigmas only (inside the backbone's sigma
range). On a text-conditioned backbone the student reads the captions of the target images (the
subject's unique-token caption).

The paper says only that "Adapt is fine-tuning"; training at the K sigmas the student is evaluated
at is this project's reading (baselines.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from unidad.edm import denoiser_student_sigmas
from unidad.losses.denoising import denoising_loss
from unidad.sampling import prompt_conditioning
from unidad.stages.base import Stage, TrainConfig, Update, register_stage
from unidad.stages.options import FewStepOptions


@dataclass(kw_only=True)
class StudentFTConfig(FewStepOptions, TrainConfig):
    iterations: int = 5000


@register_stage("student_ft")
class StudentFTStage(Stage):
    config_cls = StudentFTConfig
    primary = "generator"
    roles = ("init",)

    @classmethod
    def sampling_of(cls, config):
        return {"kind": "few_step", "steps": config.gen_steps, "sigma_start": config.sigma_start,
                "sigma_end": config.sigma_end, "noise_correction": False}

    def build(self) -> None:
        if self.ctx.real_images is None:
            raise ValueError("stage student_ft needs the target images")
        generator = self.add("generator", self.new_backbone("init"))
        cfg = self.config
        self._sigmas = denoiser_student_sigmas(generator, cfg.gen_steps, cfg.sigma_start, cfg.sigma_end).float()

    def _loss(self, batch):
        g = self.modules["generator"]
        real = g.encode(batch["real"])
        pick = torch.randint(0, len(self._sigmas), (real.shape[0],))
        sigma = self._sigmas[pick].to(real.device)
        noisy = real + sigma.view(-1, 1, 1, 1) * torch.randn_like(real)
        cond = prompt_conditioning(g, batch.get("prompts"))
        return {"loss": denoising_loss(g.denoise(noisy, sigma, cond), real, sigma, sigma_data=g.sigma_data)}

    def updates(self):
        return [Update("generator", ["generator"], self._loss)]
