"""CLIP ViT-B/32 with OpenAI's weights for the SDP metrics CLIP-I and CLIP-T, from a local file only.

open_clip builds the architecture without the network (`ViT-B-32-quickgelu`: OpenAI's weights were
trained with QuickGELU; plain `ViT-B-32` builds GELU and only warns), its bundled BPE vocabulary is the
tokenizer, and the weights are the manifest's safetensors file (clip_vit_b32_openai), loaded strictly.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Sequence

import torch

import unidad.metrics.sdp_common as sdp

WEIGHTS = "clip_vit_b32_openai"
ARCH = "ViT-B-32-quickgelu"


class ClipEmbed:
    """An open_clip CLIP as the image embedding of `sdp.embed_images` (`__call__`) and a text embedding."""

    def __init__(self, model, tokenizer, provenance: dict[str, Any], device="cpu"):
        self.model = model.to(device).eval().requires_grad_(False)
        self.tokenizer, self.provenance, self.device = tokenizer, provenance, torch.device(device)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x.to(self.device))

    @torch.no_grad()
    def text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm float64 text embeddings (N, D)."""
        feats = self.model.encode_text(self.tokenizer(list(texts)).to(self.device)).double().cpu()
        return feats / feats.norm(dim=-1, keepdim=True)


def load_clip(path: str | Path, device="cpu") -> ClipEmbed:
    """OpenAI CLIP ViT-B/32 from open_clip's safetensors file; every parameter must be in the file."""
    import open_clip
    from safetensors.torch import load_file

    from unidad import standins
    from unidad.weights import file_sha256

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path} is not a .safetensors file; stage it with: unidad weights fetch {WEIGHTS}")
    sha256 = file_sha256(path)
    standins.check(path, sha256, WEIGHTS)
    # open_clip logs "initialized randomly" for a model built without its downloader; the weights are
    # loaded just below, so the warning would only mislead the job's log
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        model = open_clip.create_model(ARCH, pretrained=None)
    finally:
        logging.disable(previous)
    state, expected = load_file(str(path)), model.state_dict()
    wrong = ([f"missing {k}" for k in expected if k not in state] + [f"unexpected {k}" for k in state if k not in expected]
             + [f"{k} {tuple(v.shape)}" for k, v in state.items() if k in expected and v.shape != expected[k].shape])
    if wrong:
        raise ValueError(f"{path} does not fit open_clip {ARCH} ({', '.join(wrong[:3])}); "
                         f"stage it with: unidad weights fetch {WEIGHTS}")
    model.load_state_dict(state, strict=True)
    provenance = {"id": f"clip_vit_b32_openai/{ARCH}", "weights_sha256": sha256}
    return ClipEmbed(model, open_clip.get_tokenizer(ARCH), provenance, device)


@functools.lru_cache(maxsize=1)
def staged_clip() -> ClipEmbed:
    """The manifest's CLIP (one per process: every NFE and both CLIP metrics of a checkpoint reuse it)."""
    from unidad import weights

    path = weights.resolve(WEIGHTS)
    clip = load_clip(path, device=sdp.device())
    # unpinned in the manifest: compared with the sha256 recorded at the file's first verification
    weights.check_local_file(weights.get_entry(WEIGHTS), path, clip.provenance["weights_sha256"])
    return clip
