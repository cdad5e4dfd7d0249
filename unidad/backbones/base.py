"""The one denoiser contract every backbone meets.

Everything in the harness (losses, stages, samplers, the discriminator heads) talks to a model only
through this interface, in the EDM (variance-exploding) parameterisation:

    x = x0 + sigma * eps,      denoise(x, sigma, cond) -> x0_hat

`x` lives in the model's *working space*: pixels in [-1, 1] for pixel models, VAE latents for latent
models (encode/decode move between the two). eps-prediction VP models (ADM, SD1.5) are wrapped by
`VPEpsAdapter`, so they look exactly like an EDM denoiser from the outside.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch import nn

SIGMA_DATA = 0.5
SIGMA_MIN = 0.002
SIGMA_MAX = 80.0


@dataclass(frozen=True)
class Conditioning:
    """What a denoiser is conditioned on. `None` everywhere = unconditional.

    context: text embeddings (B, L, D) for cross-attention models.
    uncond_context: the empty-prompt embeddings; with guidance_scale != 1 the denoiser applies
        classifier-free guidance inside `denoise` (x0-space CFG, identical to eps-space CFG because
        x0 is affine in eps at fixed x and sigma).
    class_labels: integer labels (B,) for class-conditional models.
    """

    context: torch.Tensor | None = None
    uncond_context: torch.Tensor | None = None
    guidance_scale: float = 1.0
    class_labels: torch.Tensor | None = None

    def with_guidance(self, scale: float) -> "Conditioning":
        return replace(self, guidance_scale=float(scale))

    def select(self, index: torch.Tensor | slice) -> "Conditioning":
        """The conditioning of a sub-batch (used when a batch is split into chunks)."""

        def pick(t):
            return None if t is None else t[index]

        return replace(
            self,
            context=pick(self.context),
            uncond_context=pick(self.uncond_context),
            class_labels=pick(self.class_labels),
        )


def as_sigma_batch(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Any sigma (python float, shape [], [B], [B,1], [B,1,1,1]) -> float tensor of shape [B]."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
    if sigma.ndim == 0:
        return sigma.expand(x.shape[0])
    sigma = sigma.reshape(sigma.shape[0])
    if sigma.shape[0] != x.shape[0]:
        raise ValueError(f"sigma has {sigma.shape[0]} entries for a batch of {x.shape[0]}")
    return sigma


def bcast(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, 1, 1, 1] (as many trailing ones as x has)."""
    return sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)


class Denoiser(nn.Module, ABC):
    """Base class of every backbone.

    Subclasses implement `_denoise(x, sigma, cond)` (unguided; sigma is a [B] tensor) and the feature
    taps; the base class handles sigma shapes and classifier-free guidance.
    """

    #: the noise levels the harness may use with this denoiser: every training draw (DMD, GAN,
    #: grid-sampled denoising), student schedule and sampler grid lies in [sigma_min, sigma_max]
    #: (unidad.edm.denoiser_grid). EDM backbones: 0.002..80; VP adapters: the schedule's own range.
    sigma_min: float = SIGMA_MIN
    sigma_max: float = SIGMA_MAX
    sigma_data: float = SIGMA_DATA
    #: (C, H, W) of an image in pixel space, values in [-1, 1]
    image_shape: tuple[int, int, int]
    #: (C, H, W) of the space the diffusion runs in (== image_shape for pixel models)
    latent_shape: tuple[int, int, int]
    #: registry name, recorded with every run
    backbone_id: str = "abstract"

    # -- the contract ------------------------------------------------------------------------
    def denoise(self, x: torch.Tensor, sigma, cond: Conditioning | None = None) -> torch.Tensor:
        sigma = as_sigma_batch(sigma, x)
        if cond is None or cond.guidance_scale == 1.0 or cond.uncond_context is None:
            return self._denoise(x, sigma, cond)
        both_x = torch.cat([x, x])
        both_sigma = torch.cat([sigma, sigma])
        both_cond = Conditioning(
            context=torch.cat([cond.uncond_context, cond.context]),
            class_labels=None if cond.class_labels is None else torch.cat([cond.class_labels] * 2),
        )
        x0_uncond, x0_cond = self._denoise(both_x, both_sigma, both_cond).chunk(2)
        return x0_uncond + cond.guidance_scale * (x0_cond - x0_uncond)

    def forward(self, x, sigma, cond: Conditioning | None = None):  # nn.Module plumbing
        return self.denoise(x, sigma, cond)

    @abstractmethod
    def _denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning | None) -> torch.Tensor:
        """x0 prediction without guidance; sigma is a float tensor of shape [B]."""

    @abstractmethod
    def feature_taps(self) -> list[str]:
        """Names of the encoder feature maps a discriminator head can read, shallow to deep.
        The last one is the bottleneck (middle block)."""

    @abstractmethod
    def feature_channels(self) -> dict[str, int]:
        """Channel count of every tap."""

    @abstractmethod
    def features(
        self,
        x: torch.Tensor,
        sigma,
        cond: Conditioning | None = None,
        taps: Sequence[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Encoder feature maps {tap: (B, C, h, w)} of the denoiser evaluated at (x, sigma).
        Runs only as much of the network as the deepest requested tap needs."""

    def bottleneck_tap(self) -> str:
        return self.feature_taps()[-1]

    # pixel <-> working space; identity for pixel-space models
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents

    def encode_prompt(self, prompts: Sequence[str]) -> Conditioning | None:
        """Text -> conditioning. Unconditional models return None."""
        return None

    def describe(self) -> dict:
        """What is recorded with a run about this backbone."""
        return {
            "backbone": self.backbone_id,
            "image_shape": list(self.image_shape),
            "latent_shape": list(self.latent_shape),
            "sigma_min": self.sigma_min,
            "sigma_max": self.sigma_max,
            "sigma_data": self.sigma_data,
            "params": sum(p.numel() for p in self.parameters()),
        }


class VPEpsAdapter(Denoiser):
    """An eps-prediction VP (DDPM-style) network seen as an EDM x0 denoiser.

    EDM: x = x0 + sigma eps. VP: x_t = sqrt(abar) x0 + sqrt(1 - abar) eps. They coincide for
    abar(sigma) = 1 / (1 + sigma^2) and x_t = x / sqrt(1 + sigma^2). The discrete step fed to the
    network is the one whose abar is nearest to abar(sigma) (nearest in abar space, as the Uni-DAD
    reference adapter does; it differs from nearest-in-log-sigma by one step at a few sigmas).
    x0 = x - sigma * eps_hat uses the continuous sigma.

    Subclasses set `alphas_cumprod` (float32 buffer, [T]) and implement `_eps(x_t, t, cond)`
    returning eps_hat (only the first `latent_shape[0]` channels are used: learned-variance
    channels are dropped).
    """

    alphas_cumprod: torch.Tensor

    def register_schedule(self, alphas_cumprod: torch.Tensor) -> None:
        self.register_buffer("alphas_cumprod", alphas_cumprod.to(torch.float32), persistent=False)
        self.sigma_min, self.sigma_max = self.schedule_sigma_range()

    def schedule_sigma_range(self) -> tuple[float, float]:
        """(sigma at step 0, sigma at the last step) of the wrapped schedule: the noise levels the
        network was trained on. Above the top every sigma would map to the last step."""
        sig = ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()
        return float(sig[0]), float(sig[-1])

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        abar_target = 1.0 / (1.0 + sigma.to(torch.float32) ** 2)
        return (abar_target[:, None] - self.alphas_cumprod[None, :]).abs().argmin(dim=1)

    def c_in(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return bcast(1.0 / torch.sqrt(1.0 + sigma**2), x)

    @abstractmethod
    def _eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning | None) -> torch.Tensor:
        """The wrapped network's eps prediction at integer steps t (int64, [B])."""

    def _denoise(self, x, sigma, cond):
        eps = self._eps(self.c_in(sigma, x) * x, self.sigma_to_t(sigma), cond)
        eps = eps[:, : x.shape[1]]
        return x - bcast(sigma, x) * eps.to(x.dtype)


def linear_beta_alphas_cumprod(steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """guided-diffusion's 'linear' schedule (float64 product, as upstream)."""
    # on the CPU whatever the default device: a model built on the meta device (sizing it) keeps a
    # real schedule, whose sigma range is read as numbers
    betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64, device="cpu")
    return torch.cumprod(1 - betas, 0)


def scaled_linear_alphas_cumprod(steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> torch.Tensor:
    """Stable Diffusion's 'scaled_linear' schedule."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float64, device="cpu") ** 2
    return torch.cumprod(1 - betas, 0)
