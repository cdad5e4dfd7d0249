"""Option groups that stage configs compose: each group owns the defaults and checks of its options.

A stage config is `TrainConfig` (what the training loop reads) plus the groups its stage uses, so a
stage accepts exactly the options it reads and each default is written once:

    pretrain, ft        DenoiseOptions
    student_ft          FewStepOptions
    dreambooth          DenoiseOptions, DreamBoothOptions
    dmd2                FewStepOptions, DMDOptions, GANOptions, SpeedOptions, TextOptions  (unidad.stages.unidad.DistillConfig)
    unidad              the same and TargetTeacherOptions
    dpdmd               FewStepOptions, DMDOptions, AnchorOptions, SpeedOptions, TextOptions
    unidad_dp           unidad's and AnchorOptions
    imagine_flash       FewStepOptions, CriticScheduleOptions, GANOptions, BackwardDistillOptions, SpeedOptions

Text options only act on a text-conditioned backbone (SD1.5); an unconditional one (tiny, ADM) has no
prompts, so they leave its runs unchanged.

A stage config only overrides a group's default where that stage's default differs.
"""
from __future__ import annotations

from dataclasses import dataclass

from unidad.discriminator import DISCRIMINATOR_KINDS, HEAD_TYPES
from unidad.edm import GRID_SIZE
from unidad.losses.anchor import ANCHOR_FORMS
from unidad.losses.gan import GAN_LOSSES, HEAD_REDUCTIONS
from unidad.stages.base import OptionGroup, StageConfigError

TARGET_TEACHER_MODES = ("none", "online", "frozen")
TEACHER_PROMPTS = ("without_token", "same")
SIGMA_SAMPLINGS = ("lognormal", "grid")
MANY_STEP_SAMPLERS = ("euler", "heun", "ddim")
DISTILL_INPUTS = ("backward", "forward")


def check_choice(where: str, key: str, value, allowed) -> None:
    """The error every option group raises for a value outside its choices."""
    if value not in allowed:
        raise StageConfigError(f"{where}option '{key}' must be one of {list(allowed)}, got {value!r}")


@dataclass(kw_only=True)
class DenoiseOptions(OptionGroup):
    """Denoising training of a many-step model and how its product is sampled."""

    # "lognormal" (EDM training: ln sigma ~ N(p_mean, p_std)) or "grid" (index ~ U{0..999} on the Karras
    # grid, what the Uni-DAD code uses for every denoising loss)
    sigma_sampling: str = "lognormal"
    p_mean: float = -1.2
    p_std: float = 1.2
    ema_decay: float = 0.999  # 0 disables the EMA; the EMA weights are the product when enabled
    sample_steps: int = 25
    sampler: str = "euler"
    # share of captions replaced by the empty prompt (text-conditioned backbones): trains the
    # unconditional model that classifier-free guidance needs (SD: 0.1)
    caption_dropout: float = 0.0

    def validate(self, where: str = "") -> None:
        super().validate(where)
        if not 0.0 <= self.caption_dropout < 1.0:
            raise StageConfigError(f"{where}caption_dropout must be in [0, 1), got {self.caption_dropout}")
        if self.sigma_sampling not in SIGMA_SAMPLINGS:
            raise StageConfigError(f"{where}sigma_sampling must be lognormal or grid, got {self.sigma_sampling!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise StageConfigError(f"{where}ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.sampler not in MANY_STEP_SAMPLERS:
            raise StageConfigError(f"{where}sampler must be euler, heun or ddim, got {self.sampler!r}")


@dataclass(kw_only=True)
class FewStepOptions(OptionGroup):
    """A K-step student generator: its steps and the sigmas it is sampled (and trained) at."""

    gen_steps: int = 3  # K: generator unroll steps = sampling NFE
    sigma_start: float = 80.0
    sigma_end: float = 0.5

    def validate(self, where: str = "") -> None:
        super().validate(where)
        if not 1 <= self.gen_steps <= 8:
            raise StageConfigError(f"{where}option 'gen_steps' (K) must be in 1..8, got {self.gen_steps}")


@dataclass(kw_only=True)
class CriticScheduleOptions(OptionGroup):
    """How often the generator is updated against a trained critic network (fake score, heads)."""

    ratio: int = 5  # generator (and online target teacher) update every `ratio` iterations
    fake_lr: float = 0.0  # fake score + heads learning rate; 0 = lr (official: one lr; TTUR via ratio)
    dmd_weight: float = 1.0  # 0 = the "GAN only" ablation
    dmd_index_lo: int = 20  # DMD noise index ~ U{lo..hi} on the 1000-point Karras grid
    dmd_index_hi: int = 980

    def validate(self, where: str = "") -> None:
        super().validate(where)
        if self.ratio < 1 or self.fake_lr < 0:
            raise StageConfigError(f"{where}options 'ratio' (>= 1) and 'fake_lr' (>= 0) are out of range")


@dataclass(kw_only=True)
class DMDOptions(CriticScheduleOptions):
    """Distribution matching distillation: the generator/fake-score schedule and the DMD loss."""

    dmd_weight: float = 1.0  # 0 = the "GAN only" ablation
    dmd_index_lo: int = 20  # DMD noise index ~ U{lo..hi} on the 1000-point Karras grid
    dmd_index_hi: int = 980

    def validate(self, where: str = "") -> None:
        super().validate(where)
        if not 0 <= self.dmd_index_lo <= self.dmd_index_hi < GRID_SIZE:
            raise StageConfigError(f"{where}options dmd_index_lo/hi must satisfy 0 <= lo <= hi < {GRID_SIZE}")


@dataclass(kw_only=True)
class AnchorOptions(OptionGroup):
    """DP-DMD's first-step anchor: the student's first step regresses onto the x0 that makes its first
    transition land on the teacher's state after `anchor_step` of `anchor_teacher_steps` Euler steps
    from the same noise (baselines.md); the later steps get only the DMD loss."""

    anchor_weight: float = 0.1  # lambda, in x0 units (official 0.05 in velocity units); 0 = plain DMD, detached
    anchor_teacher_steps: int = 30  # the teacher's Euler grid from the student's sigma_start (official 30)
    anchor_step: int = 0  # k; 0 = the grid point closest to the student's second sigma (official 10 of 30 for 4 steps)
    anchor_form: str = "ddim"  # ddim (fresh re-noise, the sampler's default) | initial_noise | denoised (anchor_x0)

    def validate(self, where: str = "") -> None:
        super().validate(where)
        check_choice(where, "anchor_form", self.anchor_form, ANCHOR_FORMS)
        if self.anchor_weight < 0 or self.anchor_teacher_steps < 2:
            raise StageConfigError(f"{where}options 'anchor_weight' (>= 0) and 'anchor_teacher_steps' (>= 2) are out of range")
        if not 0 <= self.anchor_step < self.anchor_teacher_steps:
            raise StageConfigError(f"{where}option 'anchor_step' (k) must be in 0..{self.anchor_teacher_steps - 1} "
                                   "(0 = the step closest to the student's second sigma)")


@dataclass(kw_only=True)
class BackwardDistillOptions(OptionGroup):
    """Imagine Flash's losses: backward distillation from the student's own rollout and the shifted
    reconstruction loss, each against the teacher's x0 after `teacher_steps` Euler steps."""

    distill_input: str = "backward"  # backward (student's own rollout) | forward (the stage's images, noised)
    teacher_steps: int = 4  # k: the teacher's solver steps from the student's state down to sigma = 0
    backward_weight: float = 1.0
    recon_weight: float = 1.0  # shifted reconstruction loss; 0 disables it
    recon_shift: float = 1.0  # gamma(sigma) = recon_shift * sigma (1 = gamma(t) = t, the default the paper leaves open)

    def validate(self, where: str = "") -> None:
        super().validate(where)
        check_choice(where, "distill_input", self.distill_input, DISTILL_INPUTS)
        if self.teacher_steps < 1 or self.recon_shift <= 0 or min(self.backward_weight, self.recon_weight) < 0:
            raise StageConfigError(f"{where}options teacher_steps (>= 1), recon_shift (> 0), backward_weight and "
                                   "recon_weight (>= 0) are out of range")


@dataclass(kw_only=True)
class GANOptions(OptionGroup):
    """The GAN on the fake score's encoder features: loss, weights, penalties and discriminator heads."""

    gan_loss: str = "bce"  # bce | hinge | lsgan | wgan-gp
    gan_weight_g: float = 0.01  # lambda_G (paper 0.01; official FSIG code 0.015)
    gan_weight_d: float = 0.03  # lambda_D (paper 0.03; official FSIG code 0.05)
    wgan_gp_weight: float = 10.0
    r1_gamma: float = 0.0
    discriminator: str = "multi"  # multi | single (DMD2's bottleneck classifier)
    head_type: str = "global"  # global | patch
    head_taps: str = "all"  # all | last_k:N | comma-separated tap names
    head_reduce: str = "mean_logits"  # mean_logits (official code) | sum_losses (paper text)

    def validate(self, where: str = "") -> None:
        super().validate(where)
        check_choice(where, "gan_loss", self.gan_loss, GAN_LOSSES)
        check_choice(where, "discriminator", self.discriminator, DISCRIMINATOR_KINDS)
        check_choice(where, "head_type", self.head_type, HEAD_TYPES)
        check_choice(where, "head_reduce", self.head_reduce, HEAD_REDUCTIONS)


@dataclass(kw_only=True)
class SpeedOptions(OptionGroup):
    """Speed switches of the GPU path, applied by the training loop to the built modules (results
    change only by float rounding)."""

    tf32: bool = False  # TF32 matmuls and convolutions (Ampere and later)
    channels_last: bool = False  # NHWC weights, so convolutions run on tensor cores without transposes
    compile: bool = False  # torch.compile every backbone's network; pays only over a long run
    # recompute each generator step of the unroll in the backward: less memory for larger batches
    checkpoint_unroll: bool = False


@dataclass(kw_only=True)
class TargetTeacherOptions(OptionGroup):
    """Uni-DAD's second teacher on the target domain and the dual-domain DMD weight."""

    target_teacher: str = "online"  # none | online | frozen
    target_teacher_lr: float = 0.0  # online target teacher's learning rate; 0 = lr
    target_teacher_every: int = 0  # online target teacher update interval; 0 = ratio (official FSIG schedule)
    dual_weight: float = 0.5  # a: L_dmd = (1 - a) L_dmd(src) + a L_dmd(tgt)
    target_guidance: float = 7.5  # CFG of the target teacher's DMD prediction (official SDP code: 7.5)

    def validate(self, where: str = "") -> None:
        super().validate(where)
        check_choice(where, "target_teacher", self.target_teacher, TARGET_TEACHER_MODES)
        if not 0.0 <= self.dual_weight <= 1.0:
            raise StageConfigError(f"{where}option 'dual_weight' (a) must be in [0, 1], got {self.dual_weight}")
        if self.target_guidance < 1.0:
            raise StageConfigError(f"{where}option 'target_guidance' must be >= 1 (1 = no guidance), got {self.target_guidance}")
        if self.target_teacher_every < 0 or self.target_teacher_lr < 0:
            raise StageConfigError(f"{where}options 'target_teacher_every' and 'target_teacher_lr' (>= 0) are out of range")


@dataclass(kw_only=True)
class TextOptions(OptionGroup):
    """What each network of a distillation stage reads on a text-conditioned backbone: the prompts of
    the batch (G, fake score, GAN and target teacher read them as they are) and classifier-free
    guidance per role (official SDP code: teacher 7.5, fake score 1; sdp_protocol.md section 3)."""

    unique_token: str = "prt"
    # without_token: the (source) teacher reads the prompts without the unique token (the paper; the
    # official code routes the stripped prompts to an unread variable) | same: it reads them as G does
    teacher_prompt: str = "without_token"
    teacher_guidance: float = 7.5
    fake_guidance: float = 1.0

    def validate(self, where: str = "") -> None:
        super().validate(where)
        check_choice(where, "teacher_prompt", self.teacher_prompt, TEACHER_PROMPTS)
        if not self.unique_token.strip() or len(self.unique_token.split()) != 1:
            raise StageConfigError(f"{where}option 'unique_token' must be one word, got {self.unique_token!r}")
        if min(self.teacher_guidance, self.fake_guidance) < 1.0:
            raise StageConfigError(f"{where}options 'teacher_guidance' and 'fake_guidance' must be >= 1 (1 = no guidance)")


@dataclass(kw_only=True)
class DreamBoothOptions(OptionGroup):
    """DreamBooth on a text-conditioned backbone: class-prior preservation with class images the
    source model generates from the class prompt (the caption without the unique token), and CFG of
    the product's sampler (the paper's FT row: 50 steps x 2 = 100 NFE)."""

    unique_token: str = "prt"
    prior_images: int = 0  # class images generated before training; 0 = no prior preservation
    prior_weight: float = 1.0
    prior_steps: int = 50  # the source model's sampler steps for the class images
    prior_guidance: float = 7.5
    prior_seed: int = 2_000_000  # first per-image seed of the class images (apart from the evaluation seeds)
    sample_guidance: float = 1.0  # CFG of the product's many-step sampler (SDP: 7.5)

    def validate(self, where: str = "") -> None:
        super().validate(where)
        if self.prior_images < 0 or self.prior_steps < 1 or self.prior_weight < 0:
            raise StageConfigError(f"{where}options 'prior_images' (>= 0), 'prior_steps' (>= 1) and 'prior_weight' (>= 0) are out of range")
        if min(self.prior_guidance, self.sample_guidance) < 1.0:
            raise StageConfigError(f"{where}options 'prior_guidance' and 'sample_guidance' must be >= 1 (1 = no guidance)")
