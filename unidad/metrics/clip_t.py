"""CLIP-T prompt fidelity (DreamBench): cosine between the CLIP ViT-B/32 (OpenAI weights) text embedding
of each prompt with the unique token removed (the official evaluation drops it: the text encoder never
learnt it) and the image embedding of each of its samples; mean per prompt, then over the subject's
prompts (metrics.md, SDP). The token removed and the texts encoded are recorded with the number."""
from __future__ import annotations

from typing import Any

import numpy as np

import unidad.metrics.clip_model as clip_model
import unidad.metrics.sdp_common as sdp
from unidad.metrics.inputs import MetricInputs
from unidad.metrics.registry import Metric, Value, register_metric
from unidad.prompts import drop_token


def prompt_fidelity(model, images: np.ndarray, prompts: list[str], token: str, mean=sdp.CLIP_MEAN, std=sdp.CLIP_STD,
                    size: int = sdp.INPUT_SIZE) -> dict[str, Any]:
    """Per prompt: the mean cosine between its text (token dropped) and each of its images; then the
    mean over prompts. `model`: a ClipEmbed (image embedding by call, text embedding by `text`), or the
    demo's text-image embedding with its own input constants."""
    groups = sdp.prompt_groups(prompts, len(images))
    texts = {p: drop_token(p, token) for p in groups}
    text = dict(zip(groups, model.text(list(texts.values()))))
    gen = sdp.embed_images(model, images, mean, std, size=size)
    res = sdp.per_prompt_mean(lambda idx: float((gen[idx] @ text[prompts[idx[0]]]).mean()), groups)
    return {**res, "texts": texts}


def _clip_t_metric(inputs: MetricInputs, nfe: int, images: np.ndarray) -> dict[str, Any]:
    prompts = sdp.sample_prompts(inputs, "clip_t")
    if not inputs.unique_token:
        raise ValueError("metric 'clip_t' needs the run's unique token to drop it from the prompts, but the "
                         "evaluation job was given none; set the config key unique_token")
    model = clip_model.staged_clip()
    res = prompt_fidelity(model, images, prompts, inputs.unique_token)
    return {"variant": f"text without the unique token '{inputs.unique_token}'; mean per prompt, then over prompts",
            "extractor": model.provenance["id"], "extractor_sha256": model.provenance["weights_sha256"],
            "values": {"clip_t": res["value"]},
            "params": {"unique_token_removed": inputs.unique_token, "texts": res["texts"],
                       "per_prompt": res["per_prompt"], "preparation": sdp.PREPARATION}}


def _protocol(inputs: MetricInputs) -> dict[str, Any]:
    return {"unique_token": inputs.unique_token, "preparation": sdp.PREPARATION}


register_metric(Metric(
    "clip_t", "CLIP ViT-B/32 (OpenAI) cosine between each prompt's text (unique token removed) and its samples: "
    "mean per prompt, mean over prompts (one subject per run; the tables average subjects)",
    (Value("clip_t", "CLIP-T", True, 3),), _clip_t_metric, frozenset(), _protocol,
    weights=(clip_model.WEIGHTS,),
))
