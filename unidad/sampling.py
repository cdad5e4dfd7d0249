"""Sampling a trained product (a many-step teacher or a few-step student) with one seed per image."""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch

from unidad.backbones.base import Conditioning, Denoiser
from unidad.edm import (MANY_STEP_SAMPLERS, PerImageNoise, denoiser_sampling_sigmas, denoiser_student_sigmas, nfe_of,
                        unroll_generator)
from unidad.imageio import to_uint8_hwc


def sampling_nfe(sampling: dict[str, Any]) -> int:
    if sampling["kind"] == "few_step":
        return int(sampling["steps"])
    return nfe_of(sampling["sampler"], int(sampling["steps"]), guidance=float(sampling.get("guidance", 1.0)) != 1.0)


def prompt_conditioning(model: Denoiser, prompts: Sequence[str] | None, guidance: float = 1.0) -> Conditioning | None:
    """The conditioning of a batch of prompts at a guidance scale; None for an unconditional model
    (or no prompts), so unconditional backbones run exactly as without text."""
    if prompts is None:
        return None
    cond = model.encode_prompt(list(prompts))
    return None if cond is None else cond.with_guidance(guidance)


@torch.no_grad()
def generate(
    model: Denoiser,
    sampling: dict[str, Any],
    seeds: Sequence[int],
    batch_size: int = 250,
    cond: Conditioning | None = None,
    device: torch.device | str = "cpu",
    log=None,
    prompts: Sequence[str] | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Images (uint8 NHWC) for `seeds`, one RNG per image, plus timing figures.

    sampling: {"kind": "few_step", "steps": K, ...} or {"kind": "many_step", "sampler": s, "steps": n,
    "guidance": w (classifier-free guidance, default 1 = none)}.
    prompts: one prompt per seed (text-conditioned backbones); image i depends only on seeds[i],
    prompts[i] and the weights, never on batch_size. `cond` is the alternative for conditioning
    computed by the caller (one row per seed, or one row shared by all).
    """
    seeds = list(seeds)
    if prompts is not None:
        if cond is not None:
            raise ValueError("give generate either prompts or cond, not both")
        if isinstance(prompts, str) or len(prompts) != len(seeds):
            raise ValueError(f"generate needs one prompt per seed: {len(seeds)} seeds, "
                             f"{1 if isinstance(prompts, str) else len(prompts)} prompts")
    model = model.to(device).eval()
    guidance = float(sampling.get("guidance", 1.0))
    out: list[np.ndarray] = []
    t0 = time.perf_counter()
    for start in range(0, len(seeds), batch_size):
        chunk = seeds[start : start + batch_size]
        noise = PerImageNoise(chunk, device=device)
        z = noise.randn(model.latent_shape)
        if prompts is not None:
            sub_cond = prompt_conditioning(model, prompts[start : start + len(chunk)], guidance)
        elif cond is not None and cond.context is not None and cond.context.shape[0] == len(seeds):
            sub_cond = cond.select(slice(start, start + len(chunk)))
        elif cond is None:
            # no text given: a text-conditioned model samples its unconditional (empty-prompt)
            # distribution; an unconditional backbone gets None, as before
            sub_cond = prompt_conditioning(model, [""] * len(chunk), guidance)
        else:
            sub_cond = cond
        if sampling["kind"] == "few_step":
            sig = denoiser_student_sigmas(model, int(sampling["steps"]), sampling.get("sigma_start", 80.0),
                                          sampling.get("sigma_end", 0.5))
            x = unroll_generator(model.denoise, z, sig, sub_cond, noise=noise,
                                 noise_correction=bool(sampling.get("noise_correction", False)))
        else:
            sig = denoiser_sampling_sigmas(model, int(sampling["steps"]))
            sampler = MANY_STEP_SAMPLERS[sampling["sampler"]]
            x = sampler(model.denoise, z * float(sig[0]), sig, sub_cond)
        out.append(to_uint8_hwc(model.decode(x).float().cpu()))
        if log is not None:
            done = start + len(chunk)
            rate = done / max(time.perf_counter() - t0, 1e-9)
            log(f"[sample] {done}/{len(seeds)} images, {rate:.1f} img/s, ETA {(len(seeds) - done) / rate:.0f}s")
    seconds = time.perf_counter() - t0
    timing = {
        "seconds": seconds,
        "images_per_second": len(seeds) / max(seconds, 1e-9),
        "seconds_per_image": seconds / max(len(seeds), 1),
        "nfe": sampling_nfe(sampling),
        "batch_size": batch_size,
        "device": str(device),
    }
    return np.concatenate(out) if out else np.zeros((0, *model.image_shape[1:], 3), np.uint8), timing
