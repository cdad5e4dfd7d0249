"""The text-conditioned demo's text-image embedding: the stand-in for DINO, CLIP-I and CLIP-T, trained in the DAG.

No published network knows the procedural scenes of the SDP demo, so its subject- and prompt-fidelity
metrics read a small network trained here (unidad.metrics.demo_sdp_train, rule demo_sdp_embedding) on
the captioned source scenes and on patterned objects of random colours, never on a demo subject:

* a CNN image trunk with two heads: the *subject* head (self-supervised: two views of one object in
  different contexts agree; the DINO / CLIP-I stand-in) and the *text-image* head (CLIP-style
  contrastive with the captions; the CLIP-T stand-in's image side);
* a bag-of-words text encoder over the captions' words (the CLIP-T stand-in's text side);
* an LPIPS-style distance on the trunk's conv activations (distance `demo_sdp` of evaluation.lpips;
  NOT LPIPS), for the SDP diversity metric on the demo.

Numbers from it compare runs of the demo with each other only; they are on no published scale.
"""
from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from unidad.metrics.demo_cnn import conv_trunk
from unidad.metrics.demo_extractor import DemoPerceptualDistance
from unidad.metrics.extractors import DAG_TRAINED, DISTANCES
from unidad.metrics.network_file import read_network_summary, write_network
from unidad.weights import file_sha256
from unidad.weights_file import load_weights

EMBED_ID = "demo-sdp-embed-v1"
DISTANCE_ID = "demo-sdp-embed-v1-lpips-style"
FORMAT = "unidad-demo-sdp-embed/1"
MODULE_NAME = "demo_sdp_embed"  # the module name inside the weights file
METADATA_KEY = "demo_sdp_embedding"
# images reach the network in [-1, 1]: sdp_common.normalise with these constants
MEAN = STD = (0.5, 0.5, 0.5)


def caption_vocabulary() -> list[str]:
    """Every word of the source captions, which are also every word of a demo prompt without its
    unique token (the token itself is never a caption word: the metrics drop it, as CLIP-T does)."""
    from unidad.data.sdp_demo import demo_vocabulary

    marker = "\x00"  # demo_vocabulary adds its token; one that is no word keeps it out
    return [w for w in demo_vocabulary(marker) if w != marker]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


# ------------------------------------------------------------------------------------------- network
@dataclass(frozen=True)
class SdpEmbedConfig:
    vocabulary: tuple[str, ...]
    widths: tuple[int, ...] = (16, 32, 64)
    dim: int = 64  # both embedding spaces
    hidden: int = 128
    word_dim: int = 64


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


class SdpEmbedNet(nn.Module):
    """3x3 conv trunk (all but the first stride 2), a subject head on its global mean and max pool, a
    text-image head on a 2x2 pool (it keeps the sky-over-ground layout a context shows), a
    bag-of-words text encoder and CLIP's learnt logit scale."""

    def __init__(self, config: SdpEmbedConfig):
        super().__init__()
        self.config = config
        self.convs, c = conv_trunk(config.widths)
        self.subject_head = _mlp(2 * c, config.hidden, config.dim)
        self.image_head = _mlp(4 * c, config.hidden, config.dim)
        self.word_embedding = nn.EmbeddingBag(len(config.vocabulary), config.word_dim, mode="mean")
        self.text_head = _mlp(config.word_dim, config.hidden, config.dim)
        self.logit_scale = nn.Parameter(torch.tensor(2.659))  # log(1 / 0.07), CLIP's initial temperature
        self.index = {w: i for i, w in enumerate(config.vocabulary)}

    def conv_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Post-ReLU activations of every conv layer; x float NCHW in [-1, 1]."""
        taps = []
        for conv in self.convs:
            x = F.relu(conv(x))
            taps.append(x)
        return taps

    def embed_images(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(subject, text-image) embeddings of x, not normalised."""
        last = self.conv_activations(x)[-1]
        pooled = torch.cat([last.mean((2, 3)), last.amax((2, 3))], 1)
        return self.subject_head(pooled), self.image_head(F.adaptive_avg_pool2d(last, 2).flatten(1))

    def tokens(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """EmbeddingBag input (indices, offsets) of the texts' known words, and the unknown words."""
        indices, offsets, unknown = [], [], []
        for text in texts:
            offsets.append(len(indices))
            known = [self.index[w] for w in words(text) if w in self.index]
            unknown += [w for w in words(text) if w not in self.index]
            if not known:
                raise ValueError(f"text {text!r} has no word of the demo embedding's vocabulary "
                                 f"({' '.join(self.config.vocabulary)}); it reads demo captions and prompts only")
            indices += known
        device = self.logit_scale.device
        return torch.tensor(indices, device=device), torch.tensor(offsets, device=device), sorted(set(unknown))

    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        indices, offsets, _ = self.tokens(texts)
        return self.text_head(self.word_embedding(indices, offsets))


# -------------------------------------------------------------------------------------------- file
def write_embedding(out_path: str | Path, model: SdpEmbedNet, summary: dict) -> Path:
    return write_network(out_path, model, MODULE_NAME, METADATA_KEY, summary)


def read_summary(path: str | Path) -> dict:
    """The training summary stored in the embedding's weights file."""
    return read_network_summary(path, METADATA_KEY, FORMAT, "SDP demo embedding",
                                "retrain it with unidad.metrics.demo_sdp_train.train_sdp_embedding "
                                "(rule demo_sdp_embedding)")


def embedding_protocol(inputs) -> dict:
    """What a demo SDP metric's number depends on besides the samples: the embedding file's sha256."""
    weights = inputs.extractor_file
    return {"embedding_sha256": file_sha256(weights) if weights is not None and weights.exists() else None}


def preparation(size: int) -> str:
    return f"central square, PIL bicubic resize to {size} (the embedding's training size)"


def model_from_summary(summary: dict) -> SdpEmbedNet:
    arch = {k: v for k, v in summary["architecture"].items() if k != "name"}
    arch["vocabulary"], arch["widths"] = tuple(arch["vocabulary"]), tuple(arch["widths"])
    return SdpEmbedNet(SdpEmbedConfig(**arch))


def load_embedding_net(path: str | Path, device: str | torch.device = "cpu") -> tuple[SdpEmbedNet, dict, str]:
    """The trained network (eval mode, no gradients), its training summary and the file's sha256."""
    summary = read_summary(path)
    model = model_from_summary(summary)
    load_weights(path, {MODULE_NAME: model})
    return model.to(device).eval().requires_grad_(False), summary, file_sha256(path)


def architecture(config: SdpEmbedConfig) -> dict[str, Any]:
    return {"name": "SdpEmbedNet", **asdict(config)}


# ------------------------------------------------------------------------------------ the embeddings
class SdpEmbedding:
    """A trained file as the SDP metrics read it: calling it embeds normalised float NCHW images in the
    text-image space (the interface of clip_t.prompt_fidelity, with `text`); `subject` embeds them in
    the subject space (the interface of sdp_common.image_similarity_record)."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model, self.summary, self.weights_sha256 = load_embedding_net(path, self.device)
        self.image_size = int(self.summary["image_size"])
        self.provenance = {"id": EMBED_ID, "weights_sha256": self.weights_sha256}

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed_images(x.to(self.device))[1]

    @torch.no_grad()
    def subject(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed_images(x.to(self.device))[0]

    @torch.no_grad()
    def text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit-norm float64 text embeddings (N, D)."""
        feats = self.model.embed_texts(list(texts)).double().cpu()
        return feats / feats.norm(dim=-1, keepdim=True)

    def unknown_words(self, texts: Sequence[str]) -> list[str]:
        return self.model.tokens(list(texts))[2]


@functools.lru_cache(maxsize=2)
def _cached(path: str, sha256: str) -> SdpEmbedding:
    return SdpEmbedding(path)


def load_embedding(path: str | Path | None, metric: str) -> SdpEmbedding:
    """The embedding a metric job was given (one load per file version and process: both metrics and
    every NFE of a checkpoint share it)."""
    if path is None:
        raise ValueError(f"metric '{metric}' needs the SDP demo embedding, but the evaluation job was given no "
                         "trained file; it is wired for the configs whose evaluation.metrics name it")
    return _cached(str(path), file_sha256(path))


def _demo_sdp_distance(path: Path | None) -> tuple[DemoPerceptualDistance, dict]:
    if path is None:
        raise ValueError("distance 'demo_sdp' needs the SDP demo embedding file (rule demo_sdp_embedding)")
    d = DemoPerceptualDistance(path, load=load_embedding_net, distance_id=DISTANCE_ID)
    return d, {"id": d.id, "weights_sha256": d.weights_sha256}


DISTANCES.add("demo_sdp", _demo_sdp_distance)
DAG_TRAINED["demo_sdp"] = "demo_sdp_embedding"
