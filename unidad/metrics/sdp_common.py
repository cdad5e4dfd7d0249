"""What the subject-driven (SDP) metrics share: the official evaluation's image preparation, the
grouping of a checkpoint's samples by prompt, and its aggregation order.

One checkpoint of an SDP run holds one subject's samples (one model per subject, as in the paper), the
prompt of every image stored beside it. A fidelity metric is computed per (subject, prompt), then
averaged over the subject's prompts: the subject's value, one tidy-table row per subject (the `dataset`
column); the mean over subjects is the tables' mean over datasets. Images reach the networks as the
official code prepares them (yaramohamadi/uni-DAD 2_SDP/evaluation): the central square, bicubic resize
to 224, then the network's mean/std.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from unidad.metrics.inputs import MetricInputs

INPUT_SIZE = 224
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
PREPARATION = "central square, PIL bicubic resize to 224"

Embed = Callable[[torch.Tensor], torch.Tensor]  # normalised float NCHW -> (N, D) embeddings


def center_square(images: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """uint8 NHWC (any H, W) -> uint8 N x size x size x 3: the central square, PIL bicubic resize."""
    from unidad.data.dreambench import _center_fit

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 NHWC RGB, got {images.dtype} {tuple(images.shape)}")
    return np.stack([_center_fit(Image.fromarray(img), size) for img in images])


def normalise(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW: x / 255, then (x - mean) / std per channel."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@torch.no_grad()
def embed_images(embed: Embed, images: np.ndarray, mean, std, batch_size: int = 64,
                 size: int = INPUT_SIZE) -> torch.Tensor:
    """Unit-norm float64 embeddings (N, D) of uint8 NHWC images, prepared as the official evaluation
    (`embed` moves a batch to its network's device; `size`: the network's input, 224 but for the
    demo's embedding)."""
    prepared = center_square(images, size)
    out = []
    for start in range(0, len(prepared), batch_size):
        x = normalise(prepared[start:start + batch_size], mean, std)
        out.append(embed(x).double().cpu())
    feats = torch.cat(out)
    return feats / feats.norm(dim=-1, keepdim=True)


def prompt_groups(prompts: Sequence[str], n_images: int) -> dict[str, np.ndarray]:
    """prompt -> indices of its images, prompts in order of first appearance."""
    if len(prompts) != n_images:
        raise ValueError(f"{len(prompts)} prompts stored for {n_images} images; resample the checkpoint "
                         "(the sampling job stores one prompt per image)")
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(str(p), []).append(i)
    return {p: np.asarray(idx) for p, idx in groups.items()}


def sample_prompts(inputs: MetricInputs, metric: str) -> list[str]:
    """The prompt of every image of the checkpoint; a one-line error for an unprompted sample set."""
    prompts = inputs.prompts
    if prompts is None:
        raise ValueError(f"metric '{metric}' needs prompts stored with the samples ({inputs.samples} has none); "
                         "it measures text-conditioned (SDP) runs only: drop it from evaluation.metrics")
    return prompts


def per_prompt_mean(values: Callable[[np.ndarray], float], groups: dict[str, np.ndarray]) -> dict[str, Any]:
    """The official aggregation inside one subject: a value per prompt group, then their plain mean
    (each prompt weighs the same whatever its number of images)."""
    per_prompt = {p: float(values(idx)) for p, idx in groups.items()}
    return {"value": float(np.mean(list(per_prompt.values()))), "per_prompt": per_prompt}


def pair_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean cosine over all (row of a, row of b) pairs of unit-norm embeddings."""
    return float((a @ b.T).mean())


def subject_similarity(real: torch.Tensor, generated: torch.Tensor, groups: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per prompt: the mean cosine over all (real, generated-of-that-prompt) pairs; then the mean over prompts."""
    return per_prompt_mean(lambda idx: pair_cosine(real, generated[torch.from_numpy(idx)]), groups)


def image_similarity_record(embed: Embed, provenance: dict, mean, std, real_images: np.ndarray, images: np.ndarray,
                            prompts: list[str], value: str, size: int = INPUT_SIZE) -> dict[str, Any]:
    """The record of a (real, generated) image-similarity metric (DINO, CLIP-I) for one sample set."""
    groups = prompt_groups(prompts, len(images))
    real = embed_images(embed, real_images, mean, std, size=size)
    gen = embed_images(embed, images, mean, std, size=size)
    res = subject_similarity(real, gen, groups)
    return {"variant": "mean cosine over (real, generated) pairs per prompt, then mean over prompts",
            "extractor": provenance["id"], "extractor_sha256": provenance["weights_sha256"],
            "n_reference": int(len(real_images)), "values": {value: res["value"]},
            "params": {"per_prompt": res["per_prompt"], "preparation": PREPARATION,
                       "mean": list(mean), "std": list(std)}}


def reference_images(inputs: MetricInputs, size: int = INPUT_SIZE) -> np.ndarray:
    """The subject's real images (its training shots: the official evaluation's references are the
    subject's first images), each read from its file and brought to the networks' input on its own,
    since real photos differ in size."""
    from unidad.data.folders import _read_rgb, folder_files

    if inputs.shots_dir is None:
        raise ValueError("this metric needs the subject's real images, but the evaluation job was given no shots")
    files = folder_files(inputs.shots_dir, inputs.shots)
    return np.stack([center_square(np.asarray(_read_rgb(f), dtype=np.uint8)[None], size)[0] for f in files])


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
