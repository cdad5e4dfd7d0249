"""DINO subject fidelity (DreamBench): DINO v1 ViT-S/16 CLS embeddings (after the final norm) of the
subject's real images and of the samples; the mean cosine over all (real, generated) pairs of each
prompt, then the mean over the subject's prompts (metrics.md, SDP).

The network is transformers' ViTModel built from the staged facebook/dino-vits16 folder (weights
manifest entry dino_vits16), never torch.hub. A folder whose architecture is not ViT-S/16 or whose
weights leave a parameter unset is refused: no silent fallback to another DINO.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

import unidad.metrics.sdp_common as sdp
from unidad.metrics.inputs import MetricInputs
from unidad.metrics.registry import Metric, Value, register_metric

WEIGHTS = "dino_vits16"
# DINO v1 ViT-S/16 (facebookresearch/dino vit_small, patch 16): what the staged config must say
VITS16 = {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "intermediate_size": 1536,
          "patch_size": 16, "image_size": 224}
LAYER_NORM_EPS = 1e-6  # facebookresearch/dino vision_transformer.py: LayerNorm(eps=1e-6) throughout


class DinoEmbed:
    """A ViTModel as an embedding: the CLS token of the last hidden state (after the final layer norm)."""

    def __init__(self, model, provenance: dict[str, Any]):
        self.model, self.provenance = model.eval().requires_grad_(False), provenance

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x.to(self.model.device)).last_hidden_state[:, 0]


def check_architecture(config, expected: dict[str, int] = VITS16, where: str = "") -> None:
    wrong = {k: getattr(config, k, None) for k, v in expected.items() if getattr(config, k, None) != v}
    if wrong:
        raise ValueError(f"{where} is not DINO ViT-S/16: {wrong} (expected {expected}); stage facebook/dino-vits16 "
                         f"with: unidad weights fetch {WEIGHTS}")


def load_dino(folder: str | Path, expected: dict[str, int] = VITS16, device="cpu") -> DinoEmbed:
    """The DINO ViT-S/16 of a local transformers folder (config.json + model.safetensors, or
    pytorch_model.bin, which transformers reads with weights_only=True; its loader also maps the
    checkpoint's older key names). Every parameter must come from the file."""
    from transformers import ViTConfig, ViTModel

    from unidad import standins
    from unidad.weights import file_sha256

    folder = Path(folder)
    standins.check(folder, None, WEIGHTS)
    config = ViTConfig.from_pretrained(folder, local_files_only=True)
    check_architecture(config, expected, str(folder))
    # facebook/dino-vits16's config.json says 1e-12 (the converter's default); DINO's own network, the one
    # the official evaluation loads, normalises with 1e-6
    config.layer_norm_eps = LAYER_NORM_EPS
    file = next((folder / f for f in ("model.safetensors", "pytorch_model.bin") if (folder / f).is_file()), None)
    if file is None:
        raise ValueError(f"{folder} has neither model.safetensors nor pytorch_model.bin; stage facebook/dino-vits16 "
                         f"with: unidad weights fetch {WEIGHTS}")
    model, info = ViTModel.from_pretrained(folder, config=config, add_pooling_layer=False, local_files_only=True,
                                           output_loading_info=True)
    unset = list(info.get("missing_keys", [])) + [str(k) for k in info.get("mismatched_keys", [])]
    if unset:
        raise ValueError(f"{file} does not fit DINO ViT-S/16 (parameters not in the file: {sorted(unset)[:3]}); "
                         f"stage facebook/dino-vits16 with: unidad weights fetch {WEIGHTS}")
    sha256 = file_sha256(file)
    standins.check(file, sha256, WEIGHTS)  # a copy of a stand-in's weight file, known by its checksum
    return DinoEmbed(model.float().to(device), {"id": "dino_vits16/cls", "weights_sha256": sha256,
                                                      "layer_norm_eps": LAYER_NORM_EPS})


@functools.lru_cache(maxsize=1)
def staged_dino() -> DinoEmbed:
    """The manifest's DINO (one per process: every NFE of a checkpoint reuses it)."""
    from unidad import weights

    return load_dino(weights.resolve(WEIGHTS), device=sdp.device())


def _dino_metric(inputs: MetricInputs, nfe: int, images: np.ndarray) -> dict[str, Any]:
    prompts = sdp.sample_prompts(inputs, "dino")
    model = staged_dino()
    return sdp.image_similarity_record(model, model.provenance, sdp.IMAGENET_MEAN, sdp.IMAGENET_STD,
                                   sdp.reference_images(inputs), images, prompts, "dino")


def _protocol(inputs: MetricInputs) -> dict[str, Any]:
    return {"shots_dir": str(inputs.shots_dir), "shots": inputs.shots, "preparation": sdp.PREPARATION}


register_metric(Metric(
    "dino", "DINO v1 ViT-S/16 CLS cosine between the subject's real images and the samples: mean over (real, "
    "generated) pairs per prompt, mean over prompts (one subject per run; the tables average subjects)",
    (Value("dino", "DINO", True, 3),), _dino_metric, frozenset({"shots"}), _protocol,
    weights=(WEIGHTS,),
))
