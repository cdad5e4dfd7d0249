"""EDM noise-level utilities and samplers.

Conventions (Karras et al. 2022): x = x0 + sigma * eps; sigma_data = 0.5, rho = 7. The sigma range is
the denoiser's (`Denoiser.sigma_min`/`sigma_max`: EDM's 0.002..80 for the EDM backbones and ADM, the VP
schedule's own range for SD1.5, whose top is ~14.6): every grid and schedule a stage or sampler uses
is built from it by `denoiser_grid`, `denoiser_sampling_sigmas` and `denoiser_student_sigmas`, so no
draw falls where the network cannot represent it. Every sampler here is a pure function of a
denoiser, a noise source and a sigma schedule.

Reproducibility rule: when sampling for evaluation, every image owns its RNG (`PerImageNoise`), so an
image depends only on its seed, never on the batch it was drawn in or on how the work was split into
jobs.
"""
from __future__ import annotations

import math
from typing import Callable, Protocol, Sequence

import torch
import torch.utils.checkpoint

from unidad.backbones.base import SIGMA_MAX, SIGMA_MIN, Conditioning

RHO = 7.0
GRID_SIZE = 1000


def karras_grid(
    n: int = GRID_SIZE, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO
) -> torch.Tensor:
    """The n-point Karras grid, ASCENDING (index 0 = sigma_min), float64."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    inv_max, inv_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    descending = (inv_max + ramp * (inv_min - inv_max)) ** rho
    return descending.flip(0)


def sampling_sigmas(
    steps: int, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO
) -> torch.Tensor:
    """Karras sampling schedule: `steps` sigmas from sigma_max DOWN to sigma_min, then a final 0."""
    if steps < 1:
        raise ValueError(f"a sampler needs at least 1 step, got {steps}")
    if steps == 1:
        return torch.tensor([sigma_max, 0.0], dtype=torch.float64)
    return torch.cat([karras_grid(steps, sigma_min, sigma_max, rho).flip(0), torch.zeros(1, dtype=torch.float64)])


def student_sigmas(steps: int, sigma_start: float = 80.0, sigma_end: float = 0.5) -> torch.Tensor:
    """Geometric schedule of a K-step student: K = 3 -> (80, 6.32, 0.5); K = 1 -> (80,)."""
    if steps < 1:
        raise ValueError(f"a few-step generator needs K >= 1, got {steps}")
    if steps == 1:
        return torch.tensor([sigma_start], dtype=torch.float64)
    frac = torch.arange(steps, dtype=torch.float64) / (steps - 1)
    return torch.exp((1 - frac) * math.log(sigma_start) + frac * math.log(sigma_end))


def denoiser_grid(model, n: int = GRID_SIZE) -> torch.Tensor:
    """The ascending Karras grid over the denoiser's own sigma range (the grid of every DMD, GAN and
    grid-sampled denoising draw)."""
    return karras_grid(n, model.sigma_min, model.sigma_max)


def denoiser_sampling_sigmas(model, steps: int) -> torch.Tensor:
    """`sampling_sigmas` over the denoiser's own sigma range."""
    return sampling_sigmas(steps, model.sigma_min, model.sigma_max)


def denoiser_student_sigmas(model, steps: int, sigma_start: float, sigma_end: float) -> torch.Tensor:
    """A K-step student's schedule inside the denoiser's range. A `sigma_start` above the denoiser's
    sigma_max means "start from pure noise": it becomes sigma_max (80 stays 80 on the EDM backbones;
    on SD1.5 it is the VP schedule's top, where the public one-step DMD2 student starts)."""
    if not model.sigma_min <= sigma_end <= model.sigma_max:
        raise ValueError(f"student sigma_end {sigma_end} is outside the backbone's sigma range "
                         f"[{model.sigma_min:.4g}, {model.sigma_max:.4g}]; set sigma_end inside it")
    return student_sigmas(steps, min(float(sigma_start), float(model.sigma_max)), sigma_end)


def sample_grid_sigmas(
    batch: int,
    lo: int = 0,
    hi: int = GRID_SIZE - 1,
    grid: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """sigma_i with i ~ U{lo..hi} (inclusive) on the ascending Karras grid; float32 [batch]."""
    grid = karras_grid() if grid is None else grid
    idx = torch.randint(lo, hi + 1, (batch,), generator=generator, device="cpu" if generator is None else generator.device)
    return grid[idx.cpu()].to(device=device, dtype=torch.float32)


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2 = sigma^-2 + sigma_data^-2."""
    return sigma.pow(-2) + sigma_data**-2


# ---------------------------------------------------------------------------------------------
# noise sources
class NoiseSource(Protocol):
    def randn_like(self, x: torch.Tensor) -> torch.Tensor: ...


class GlobalNoise:
    """Noise from torch's global RNG (training: resumable through the saved RNG state)."""

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return torch.randn_like(x)


class PerImageNoise:
    """One CPU generator per image, seeded by the image's seed: draws never depend on batching.

    Noise is drawn on the CPU (bitwise the same on every machine) and moved to the working device.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu", dtype=torch.float32):
        self.seeds = [int(s) for s in seeds]
        self.generators = [torch.Generator("cpu").manual_seed(s) for s in self.seeds]
        self.device = torch.device(device)
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self.seeds)

    def randn(self, shape: Sequence[int]) -> torch.Tensor:
        draws = [torch.randn(tuple(shape), generator=g, dtype=torch.float32) for g in self.generators]
        return torch.stack(draws).to(device=self.device, dtype=self.dtype)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != len(self.generators):
            raise ValueError(f"batch of {x.shape[0]} for {len(self.generators)} per-image generators")
        return self.randn(x.shape[1:]).to(device=x.device, dtype=x.dtype)


Denoise = Callable[[torch.Tensor, torch.Tensor, Conditioning | None], torch.Tensor]


def _sig(s: float, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), float(s), device=x.device, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# many-step deterministic samplers (teachers)
@torch.no_grad()
def sample_euler(denoise: Denoise, x_init: torch.Tensor, sigmas: torch.Tensor, cond: Conditioning | None = None) -> torch.Tensor:
    """Euler on the probability-flow ODE; x_init must already be scaled by sigmas[0].
    In the x0 parameterisation this is DDIM with eta = 0."""
    x = x_init
    for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        x0 = denoise(x, _sig(s, x), cond)
        x = x0 + (s_next / s) * (x - x0)
    return x


@torch.no_grad()
def sample_heun(denoise: Denoise, x_init: torch.Tensor, sigmas: torch.Tensor, cond: Conditioning | None = None) -> torch.Tensor:
    """EDM's 2nd-order Heun sampler (Euler on the last step to sigma = 0)."""
    x = x_init
    for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        d = (x - denoise(x, _sig(s, x), cond)) / s
        x_next = x + (s_next - s) * d
        if s_next > 0:
            d_next = (x_next - denoise(x_next, _sig(s_next, x), cond)) / s_next
            x_next = x + (s_next - s) * 0.5 * (d + d_next)
        x = x_next
    return x


@torch.no_grad()
def sample_ddim(
    denoise: Denoise,
    x_init: torch.Tensor,
    sigmas: torch.Tensor,
    cond: Conditioning | None = None,
    eta: float = 0.0,
    noise: NoiseSource | None = None,
) -> torch.Tensor:
    """DDIM in VE form. eta = 0 is deterministic (and equals `sample_euler`); eta > 0 injects
    per-step noise from `noise` (use PerImageNoise for batch-independent results)."""
    x = x_init
    for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        x0 = denoise(x, _sig(s, x), cond)
        eps = (x - x0) / s
        if eta > 0 and s_next > 0:
            c = eta * s_next * math.sqrt(max(0.0, 1 - (s_next / s) ** 2))
            direction = math.sqrt(max(0.0, s_next**2 - c**2))
            x = x0 + direction * eps + c * noise.randn_like(x)
        else:
            x = x0 + s_next * eps
    return x


MANY_STEP_SAMPLERS = {"euler": sample_euler, "heun": sample_heun, "ddim": sample_ddim}


def nfe_of(sampler: str, steps: int, guidance: bool = False) -> int:
    """Network evaluations per image of a many-step sampler (x2 with classifier-free guidance)."""
    per_step = {"euler": steps, "ddim": steps, "heun": 2 * steps - 1}[sampler]
    return per_step * (2 if guidance else 1)


# ---------------------------------------------------------------------------------------------
# few-step generator unroll (training AND sampling)
def unroll_generator(
    generator: Denoise,
    z: torch.Tensor,
    sigmas: torch.Tensor,
    cond: Conditioning | None = None,
    noise: NoiseSource | None = None,
    noise_correction: bool = False,
    detach_after_first: bool = False,
    return_states: bool = False,
    checkpoint: bool = False,
):
    """Run a K-step re-noising generator from unit noise z.

    x_0 = z * sigma_0; x0_k = G(x_k, sigma_k); x_{k+1} = x0_k + sigma_{k+1} * n_k.
    n_k is fresh noise, except with `noise_correction` (Imagine Flash) where the first re-noise
    reuses the initial noise direction z. Gradients flow through the whole unroll unless
    `detach_after_first` (DP-DMD: the first step is trained by its own regression only).
    With `checkpoint`, each step's activations are recomputed in the backward instead of kept.
    Returns the last x0 (and, with return_states, the list of (x_k, sigma_k, x0_k)).
    """
    noise = noise or GlobalNoise()
    if checkpoint and torch.is_grad_enabled():
        plain = generator
        generator = lambda x, s, c: torch.utils.checkpoint.checkpoint(plain, x, s, c, use_reentrant=False)  # noqa: E731
    sig = [float(s) for s in sigmas]
    x = z * sig[0]
    states = []
    x0 = x
    for k, s in enumerate(sig):
        x0 = generator(x, _sig(s, x), cond)
        states.append((x, s, x0))
        if k + 1 < len(sig):
            base = x0.detach() if (detach_after_first and k == 0) else x0
            direction = z if (noise_correction and k == 0) else noise.randn_like(x0)
            x = base + sig[k + 1] * direction
    return (x0, states) if return_states else x0


@torch.no_grad()
def rollout_state(
    generator: Denoise,
    z: torch.Tensor,
    sigmas: torch.Tensor,
    step: int,
    cond: Conditioning | None = None,
    noise: NoiseSource | None = None,
) -> torch.Tensor:
    """The input x_step of step `step` of the K-step unroll from unit noise z, without grad: the state
    `unroll_generator` feeds the generator at sigmas[step] (the same draws from `noise`, in order).
    Imagine Flash's backward distillation trains on these states instead of forward-noised data."""
    if not 0 <= step < len(sigmas):
        raise ValueError(f"rollout_state: step {step} is outside the {len(sigmas)}-step unroll")
    if step == 0:
        return z * float(sigmas[0])
    noise = noise or GlobalNoise()
    x0 = unroll_generator(generator, z, sigmas[:step], cond, noise=noise)
    return x0 + float(sigmas[step]) * noise.randn_like(x0)
