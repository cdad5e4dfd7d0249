"""Sampling a trained product (a many-step teacher or a few-step student) with one seed per image."""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch

from unidad.backbones.base import Conditioning, Denoiser
from unidad.edm import MANY_STEP_SAMPLERS, PerImageNoise, nfe_of, sampling_sigmas, student_sigmas, unroll_generator
from unidad.imageio import to_uint8_hwc


def sampling_nfe(sampling: dict[str, Any]) -> int:
    if sampling["kind"] == "few_step":
        return int(sampling["steps"])
    return nfe_of(sampling["sampler"], int(sampling["steps"]))


@torch.no_grad()
def generate(
    model: Denoiser,
    sampling: dict[str, Any],
    seeds: Sequence[int],
    batch_size: int = 250,
    cond: Conditioning | None = None,
    device: torch.device | str = "cpu",
    log=None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Images (uint8 NHWC) for `seeds`, one RNG per image, plus timing figures.

    sampling: {"kind": "few_step", "steps": K, ...} or {"kind": "many_step", "sampler": s, "steps": n}.
    Image i depends only on seeds[i] and the weights, never on batch_size.
    """
    model = model.to(device).eval()
    out: list[np.ndarray] = []
    t0 = time.perf_counter()
    seeds = list(seeds)
    for start in range(0, len(seeds), batch_size):
        chunk = seeds[start : start + batch_size]
        noise = PerImageNoise(chunk, device=device)
        z = noise.randn(model.latent_shape)
        sub_cond = cond.select(slice(start, start + len(chunk))) if cond is not None and cond.context is not None and cond.context.shape[0] == len(seeds) else cond
        if sampling["kind"] == "few_step":
            sig = student_sigmas(int(sampling["steps"]), sampling.get("sigma_start", 80.0), sampling.get("sigma_end", 0.5))
            x = unroll_generator(model.denoise, z, sig, sub_cond, noise=noise,
                                 noise_correction=bool(sampling.get("noise_correction", False)))
        else:
            sig = sampling_sigmas(int(sampling["steps"]))
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
