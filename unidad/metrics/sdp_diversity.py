"""Diversity of a subject-driven model: Intra- and Inter-LPIPS over one subject's samples.

The paper reports both for SDP without defining them; this project defines them (metrics.md, SDP), with
the LPIPS-style distance of evaluation.lpips on images in [-1, 1]:

* intra = per prompt, the mean distance over the pairs i < j of its images (the seeds of one prompt);
  then the mean over the prompts with 2 or more images. Diversity the model keeps for one text.
* inter = per pair of different prompts, the mean distance over all (image of one, image of the other)
  pairs; then the mean over prompt pairs. How much the prompts change the images.

One subject per run: the tables' mean over datasets is the mean over subjects. The definitions are
recorded with every number (its `variant`) and in the metric's description.
"""
from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import torch

import unidad.metrics.sdp_common as sdp
from unidad.metrics.inputs import MetricInputs
from unidad.metrics.intra_lpips import DistanceFn, _check_images, _PairDistances
from unidad.metrics.registry import Metric, Value, register_metric

INTRA = "intra: mean pairwise distance among the images of one prompt, mean over prompts"
INTER = "inter: mean distance between images of two different prompts, mean over prompt pairs"


def prompt_diversity(images: torch.Tensor, prompts: list[str], distance_fn: DistanceFn,
                     batch_size: int = 64) -> dict[str, Any]:
    """Intra- and inter-prompt distances of one subject's images (N, C, H, W) in [-1, 1]."""
    images = _check_images(images, "generated images")
    groups = sdp.prompt_groups(prompts, images.shape[0])
    pairs = _PairDistances(distance_fn, images, batch_size)
    intra: dict[str, float] = {}
    with torch.no_grad():
        for prompt, idx in groups.items():
            if len(idx) < 2:
                continue
            i, j = (torch.from_numpy(idx)[k] for k in torch.triu_indices(len(idx), len(idx), offset=1))
            pairs.hold(torch.from_numpy(idx))
            intra[prompt] = float(pairs(i, j).mean())
        inter = []
        for p, q in combinations(groups, 2):
            a, b = torch.from_numpy(groups[p]), torch.from_numpy(groups[q])
            pairs.hold(torch.cat([a, b]))
            inter.append(float(pairs(a.repeat_interleave(len(b)), b.repeat(len(a))).mean()))
    if not intra:
        raise ValueError("no prompt has 2 or more images: intra-prompt diversity needs evaluation.images_per_prompt >= 2")
    if not inter:
        raise ValueError("the samples have one prompt only: inter-prompt diversity needs 2 or more prompts")
    return {"intra": float(np.mean(list(intra.values()))), "inter": float(np.mean(inter)), "per_prompt_intra": intra,
            "n_prompts": len(groups), "n_prompts_intra": len(intra), "n_prompt_pairs": len(inter)}


def _diversity_metric(inputs: MetricInputs, nfe: int, images: np.ndarray) -> dict[str, Any]:
    from unidad.imageio import to_float_nchw

    prompts = sdp.sample_prompts(inputs, "sdp_diversity")
    distance, provenance = inputs.distance
    res = prompt_diversity(torch.from_numpy(to_float_nchw(images)), prompts, distance)
    return {"variant": f"{INTRA}; {INTER}", "extractor": provenance["id"],
            "extractor_sha256": provenance.get("weights_sha256", provenance.get("vgg_weights_sha256", "")),
            "values": {"sdp_intra_lpips": res["intra"], "sdp_inter_lpips": res["inter"]},
            "params": {k: v for k, v in res.items() if k not in ("intra", "inter")}}


def _protocol(inputs: MetricInputs) -> dict[str, Any]:
    return {"lpips": inputs.lpips, "definition": f"{INTRA}; {INTER}"}


register_metric(Metric(
    "sdp_diversity", f"SDP diversity by the LPIPS-style distance of evaluation.lpips (the paper gives no definition; "
    f"this project's): {INTRA}; {INTER}",
    (Value("sdp_intra_lpips", "Intra-LPIPS", True, 3), Value("sdp_inter_lpips", "Inter-LPIPS", True, 3)),
    _diversity_metric, frozenset({"distance"}), _protocol,
))
