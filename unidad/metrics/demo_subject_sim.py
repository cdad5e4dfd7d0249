"""Subject fidelity on the text-conditioned demo, the DINO / CLIP-I stand-in: the cosine between the
subject embeddings (unidad.metrics.demo_sdp_embed, trained in the DAG, never on a demo subject) of the
subject's real shots and of each sample; the mean over all (real, generated) pairs of each prompt, then
the mean over the subject's prompts, as DINO and CLIP-I (unidad.metrics.sdp_common). A demo metric: its
numbers compare demo runs with each other only."""
from __future__ import annotations

from typing import Any

import numpy as np

import unidad.metrics.sdp_common as sdp
from unidad.metrics.demo_sdp_embed import MEAN, STD, embedding_protocol, load_embedding, preparation
from unidad.metrics.inputs import MetricInputs
from unidad.metrics.registry import Metric, Value, register_metric


def _subject_sim(inputs: MetricInputs, nfe: int, images: np.ndarray) -> dict[str, Any]:
    prompts = sdp.sample_prompts(inputs, "demo_subject_sim")
    embedding = load_embedding(inputs.extractor_file, "demo_subject_sim")
    size = embedding.image_size
    rec = sdp.image_similarity_record(embedding.subject, embedding.provenance, MEAN, STD,
                                      sdp.reference_images(inputs, size), images, prompts, "demo_subject_sim", size)
    rec["params"]["preparation"] = preparation(size)
    return rec


def _protocol(inputs: MetricInputs) -> dict[str, Any]:
    return {"shots_dir": str(inputs.shots_dir), "shots": inputs.shots} | embedding_protocol(inputs)


register_metric(Metric(
    "demo_subject_sim", "Demo only (DINO / CLIP-I stand-in): cosine between the subject embeddings of the demo "
    "subject's shots and the samples, by the SDP demo embedding trained in the DAG; mean over (real, generated) "
    "pairs per prompt, mean over prompts",
    (Value("demo_subject_sim", "Subject sim. (demo; DINO/CLIP-I stand-in)", True, 3),),
    _subject_sim, frozenset({"shots", "sdp_embedding"}), _protocol,
))
