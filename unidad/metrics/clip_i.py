"""CLIP-I subject fidelity (DreamBench): CLIP ViT-B/32 (OpenAI weights) image embeddings of the subject's
real images and of the samples, CLIP's own mean/std; the mean cosine over all (real, generated) pairs
of each prompt, then the mean over the subject's prompts (metrics.md, SDP)."""
from __future__ import annotations

from typing import Any

import numpy as np

import unidad.metrics.clip_model as clip_model
import unidad.metrics.sdp_common as sdp
from unidad.metrics.inputs import MetricInputs
from unidad.metrics.registry import Metric, Value, register_metric


def _clip_i_metric(inputs: MetricInputs, nfe: int, images: np.ndarray) -> dict[str, Any]:
    prompts = sdp.sample_prompts(inputs, "clip_i")
    model = clip_model.staged_clip()
    return sdp.image_similarity_record(model, model.provenance, sdp.CLIP_MEAN, sdp.CLIP_STD,
                                       sdp.reference_images(inputs), images, prompts, "clip_i")


def _protocol(inputs: MetricInputs) -> dict[str, Any]:
    return {"shots_dir": str(inputs.shots_dir), "shots": inputs.shots, "preparation": sdp.PREPARATION}


register_metric(Metric(
    "clip_i", "CLIP ViT-B/32 (OpenAI) image cosine between the subject's real images and the samples: mean over "
    "(real, generated) pairs per prompt, mean over prompts (one subject per run; the tables average subjects)",
    (Value("clip_i", "CLIP-I", True, 3),), _clip_i_metric, frozenset({"shots"}), _protocol,
    weights=(clip_model.WEIGHTS,),
))
