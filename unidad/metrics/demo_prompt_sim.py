"""Prompt fidelity on the text-conditioned demo, the CLIP-T stand-in: the cosine between the text
embedding of each prompt without its unique token (the embedding's text side never learnt the token,
as CLIP-T's official evaluation drops it) and the text-image embedding of each of its samples, by the
SDP demo embedding trained in the DAG (unidad.metrics.demo_sdp_embed); the mean per prompt, then over
the subject's prompts, as CLIP-T (unidad.metrics.clip_t.prompt_fidelity). A demo metric: its numbers
compare demo runs with each other only."""
from __future__ import annotations

from typing import Any

import numpy as np

import unidad.metrics.sdp_common as sdp
from unidad.metrics.clip_t import prompt_fidelity
from unidad.metrics.demo_sdp_embed import MEAN, STD, embedding_protocol, load_embedding, preparation
from unidad.metrics.inputs import MetricInputs
from unidad.metrics.registry import Metric, Value, register_metric


def _prompt_sim(inputs: MetricInputs, nfe: int, images: np.ndarray) -> dict[str, Any]:
    prompts = sdp.sample_prompts(inputs, "demo_prompt_sim")
    if not inputs.unique_token:
        raise ValueError("metric 'demo_prompt_sim' needs the run's unique token to drop it from the prompts, but "
                         "the evaluation job was given none; set the config key unique_token")
    embedding = load_embedding(inputs.extractor_file, "demo_prompt_sim")
    size = embedding.image_size
    res = prompt_fidelity(embedding, images, prompts, inputs.unique_token, MEAN, STD, size)
    return {"variant": f"text without the unique token '{inputs.unique_token}'; mean per prompt, then over prompts",
            "extractor": embedding.provenance["id"], "extractor_sha256": embedding.provenance["weights_sha256"],
            "values": {"demo_prompt_sim": res["value"]},
            "params": {"unique_token_removed": inputs.unique_token, "texts": res["texts"],
                       "unknown_words": embedding.unknown_words(list(res["texts"].values())),
                       "per_prompt": res["per_prompt"],
                       "preparation": preparation(size)}}


def _protocol(inputs: MetricInputs) -> dict[str, Any]:
    return {"unique_token": inputs.unique_token} | embedding_protocol(inputs)


register_metric(Metric(
    "demo_prompt_sim", "Demo only (CLIP-T stand-in): cosine between each prompt's text (unique token removed) and "
    "its samples in the text-image space of the SDP demo embedding trained in the DAG; mean per prompt, mean over "
    "prompts",
    (Value("demo_prompt_sim", "Prompt sim. (demo; CLIP-T stand-in)", True, 3),),
    _prompt_sim, frozenset({"sdp_embedding"}), _protocol,
))
