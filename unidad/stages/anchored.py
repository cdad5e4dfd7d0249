"""DP-DMD's role separation for the DMD stages, and `unidad_dp`: Uni-DAD with it.

The student's first step is trained only by regression onto a teacher anchor (it keeps the teacher's
diversity); the state after it is detached, so the DMD (and GAN) losses on the final output train the
later steps only (baselines.md, DP-DMD). The anchor: from the student's own starting state, the
anchor teacher's deterministic Euler sampler runs `anchor_step` of its `anchor_teacher_steps` steps,
and the target is the x0 whose first student transition lands on that state
(unidad.losses.anchor.anchor_x0).

`dpdmd` (baselines/dpdmd.py) anchors to the teacher it distils; `unidad_dp` anchors to the target
teacher (online or frozen) while the DMD loss stays dual-domain.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from unidad.edm import sample_euler, sampling_sigmas, unroll_generator
from unidad.losses.anchor import anchor_x0, regression_loss
from unidad.stages.base import StageConfigError, register_stage
from unidad.stages.options import AnchorOptions
from unidad.stages.unidad import UniDADConfig, UniDADStage


def anchor_grid(steps: int, sigma_start: float, sigma_min: float, anchor_step: int, landing_sigma: float) -> torch.Tensor:
    """The teacher's Euler grid from sigma_start, cut after the anchor step: its last sigma is the
    anchor's. anchor_step 0 picks the grid point closest (in log sigma) to `landing_sigma`."""
    grid = sampling_sigmas(steps, sigma_min=sigma_min, sigma_max=sigma_start)[:-1]  # without the final 0
    k = anchor_step
    if k == 0:
        k = 1 + int((grid[1:].log() - torch.tensor(landing_sigma, dtype=grid.dtype).log()).abs().argmin())
    return grid[: k + 1]


class AnchoredFirstStep:
    """Mixin for UniDADStage subclasses whose config has AnchorOptions: replaces the student's unroll
    in the generator update by the role-separated one and adds the anchor term."""

    #: the module whose sampler gives the anchor
    anchor_module = "teacher"

    def check_anchor(self) -> None:
        if self.config.gen_steps < 2:
            raise StageConfigError(f"stage {self.stage_id} separates the first step from the later ones and needs "
                                   f"gen_steps >= 2, got {self.config.gen_steps}; use dmd2 for a 1-step student")
        if self.anchor_module not in self.modules:
            raise StageConfigError(f"stage {self.stage_id} anchors to the {self.anchor_module} but it has none; "
                                   "set target_teacher to online or frozen")

    @torch.no_grad()
    def anchor_target(self, x_start: torch.Tensor, cond=None) -> torch.Tensor:
        """The first step's regression target for the starting states x_start (at the student's first
        sigma: sigma_start inside the backbone's range), the anchor teacher reading `cond`."""
        cfg = self.config
        teacher = self.modules[self.anchor_module]
        start = float(self._sigmas[0])
        grid = anchor_grid(cfg.anchor_teacher_steps, start, teacher.sigma_min, cfg.anchor_step, float(self._sigmas[1]))
        z_k = sample_euler(teacher.denoise, x_start, grid, cond)
        sigma_k = float(grid[-1])
        at_anchor = (teacher.denoise(z_k, z_k.new_full((z_k.shape[0],), sigma_k), cond)
                     if cfg.anchor_form == "denoised" else None)
        return anchor_x0(cfg.anchor_form, z_k, x_start, start, sigma_k, float(self._sigmas[1]), at_anchor)

    def anchor_cond(self, batch, cond):
        """What the anchor teacher reads on a text-conditioned backbone: the source teacher its token-free
        prompts with teacher_guidance, the target teacher the prompts with target_guidance (as in DMD)."""
        if self.anchor_module == "teacher":
            return self._teacher_cond(batch)
        return self._guided(cond, self.config.target_guidance)

    def _generator_output(self, batch, cond):
        cfg = self.config
        z = self._latent_noise(cfg.batch_size)
        x, states = unroll_generator(self.modules["generator"], z, self._sigmas, cond, detach_after_first=True,
                                     return_states=True)
        x_start, _, x0_first = states[0]
        anchor = regression_loss(x0_first, self.anchor_target(x_start, self.anchor_cond(batch, cond)))
        return x, {"anchor": anchor}, cfg.anchor_weight * anchor


@dataclass(kw_only=True)
class UniDADDPConfig(AnchorOptions, UniDADConfig):
    pass


@register_stage("unidad_dp")
class UniDADDPStage(AnchoredFirstStep, UniDADStage):
    """Uni-DAD whose first student step is anchored to the target teacher (DP-DMD style)."""

    config_cls = UniDADDPConfig
    anchor_module = "target_teacher"

    def build(self) -> None:
        super().build()
        self.check_anchor()
