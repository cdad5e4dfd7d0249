"""Feature extractor and LPIPS-style distance for the embedded demo, trained on the demo domains.

Both use the small CNN of unidad.metrics.demo_cnn (the network, its training and its weights file).

* DemoFeatureExtractor: the 128-d penultimate layer (before its ReLU), the stand-in for Inception
  pool3 in FID / KID / PRDC.
* DemoPerceptualDistance: an LPIPS-style distance on the same network (channel-normalised conv
  activations, squared difference, spatial mean, uniform layer weights). It is NOT LPIPS; the
  stand-in for it in Intra-LPIPS.

Numbers from these extractors compare runs of the demo with each other only; they are on no
published scale.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from unidad.metrics.demo_cnn import EXTRACTOR_ID, check_positive_int, load_demo_cnn
from unidad.metrics.extractors import DAG_TRAINED, DISTANCES, EXTRACTORS

DISTANCE_ID = "demo-cnn-v1-lpips-style"


def _as_tensor(images: Any) -> torch.Tensor:
    return images if torch.is_tensor(images) else torch.from_numpy(np.ascontiguousarray(images))


def _uint8_nhwc_to_model(t: torch.Tensor, what: str) -> torch.Tensor:
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"{what}: uint8 images must be [N,H,W,3], got shape {tuple(t.shape)}")
    return t.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _check_float_nchw(t: torch.Tensor, what: str, low: float, high: float, hint: str) -> None:
    if not t.is_floating_point() or t.ndim != 4 or t.shape[1] != 3:
        raise ValueError(f"{what}: expected uint8 [N,H,W,3] or float [N,3,H,W], got {t.dtype} {tuple(t.shape)}")
    if t.numel() and not torch.isfinite(t).all():
        raise ValueError(f"{what} contain NaN or Inf")
    if t.numel() and (float(t.min()) < low - 1e-3 or float(t.max()) > high + 1e-3):
        raise ValueError(f"{what} have values in [{float(t.min()):.3g}, {float(t.max()):.3g}]; {hint}")


class DemoFeatureExtractor:
    """The demo CNN's 128-d penultimate features: the demo's stand-in for Inception pool3 (FID, KID, PRDC).

    Input follows the FeatureExtractor convention of unidad.metrics.extractors: uint8 NHWC (0..255)
    or float NCHW in [0, 1], which is quantised to 8 bits first. Images are used at their own
    resolution (the network was trained at `image_size`; adaptive pooling accepts other sizes).
    """

    resize_protocol = "none (native resolution)"

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", batch_size: int = 512):
        self.device = torch.device(device)
        self.model, self.summary, self.weights_sha256 = load_demo_cnn(path, self.device)
        self.path = Path(path)
        self.id = EXTRACTOR_ID
        self.dim = self.model.config.feature_dim
        self.image_size = int(self.summary["image_size"])
        self.batch_size = check_positive_int(batch_size, "batch_size")

    def _model_input(self, images: Any) -> torch.Tensor:
        t = _as_tensor(images)
        if t.dtype == torch.uint8:
            return _uint8_nhwc_to_model(t, "images")
        _check_float_nchw(t, "images", 0.0, 1.0, "pass float images in [0, 1] ((x + 1) / 2 for [-1, 1]) or uint8")
        return torch.round(t.float().clamp(0, 1) * 255) / 127.5 - 1.0

    @torch.no_grad()
    def __call__(self, images: Any) -> np.ndarray:
        x = self._model_input(images)
        chunks = [self.model.features(x[i : i + self.batch_size].to(self.device)).double().cpu()
                  for i in range(0, x.shape[0], self.batch_size)]
        return torch.cat(chunks).numpy() if chunks else np.zeros((0, self.dim))

    def __repr__(self) -> str:
        return f"DemoFeatureExtractor({str(self.path)!r}, sha256={self.weights_sha256[:12]})"


class DemoPerceptualDistance:
    """LPIPS-style distance on the demo CNN, NOT LPIPS: the demo's stand-in for it in Intra-LPIPS.

    d(a, b) = sum over the conv layers of the spatial mean of |n(a) - n(b)|^2, where n() scales each
    position's activation vector to unit length; every layer has weight 1 (nothing is calibrated on
    human judgements). Matches the intra_lpips distance_fn contract: two equally shaped batches,
    float NCHW in [-1, 1] (uint8 NHWC is also accepted), one distance per pair, float64 tensor (B,).
    """

    def __init__(self, path: str | Path, device: str | torch.device = "cpu", batch_size: int = 512,
                 load: Callable = load_demo_cnn, distance_id: str = DISTANCE_ID):
        # `load`: file -> (network with conv_activations, summary, sha256); the SDP demo's embedding
        # gives the same distance on its own trunk (unidad.metrics.demo_sdp_embed)
        self.device = torch.device(device)
        self.model, self.summary, self.weights_sha256 = load(path, self.device)
        self.path = Path(path)
        self.id = distance_id
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.provenance = {"id": self.id, "weights_sha256": self.weights_sha256}

    def _model_input(self, images: Any, what: str) -> torch.Tensor:
        t = _as_tensor(images)
        if t.dtype == torch.uint8:
            return _uint8_nhwc_to_model(t, what)
        # no clamping or quantising: intra_lpips' compat variant deliberately passes [0, 1] here
        _check_float_nchw(t, what, -1.0, 1.0, "scale images to [-1, 1] (2 * x - 1 for [0, 1])")
        return t.float()

    def _normalised_taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [tap / (tap.norm(dim=1, keepdim=True) + 1e-10) for tap in self.model.conv_activations(x.to(self.device))]

    @torch.no_grad()
    def embed(self, images: Any) -> list[torch.Tensor]:
        """Per-layer unit-normalised activations of a batch: distances then need no network pass
        (intra_lpips embeds every image once instead of once per pair)."""
        x = self._model_input(images, "images")
        chunks = [self._normalised_taps(x[i : i + self.batch_size]) for i in range(0, x.shape[0], self.batch_size)]
        return [torch.cat(layer) for layer in zip(*chunks)]

    @staticmethod
    def compare(features_a: list[torch.Tensor], features_b: list[torch.Tensor]) -> torch.Tensor:
        """The distance between paired rows of two `embed` outputs."""
        return sum(((fa - fb) ** 2).sum(1).mean((1, 2)) for fa, fb in zip(features_a, features_b)).double().cpu()

    @torch.no_grad()
    def distance(self, a: Any, b: Any) -> torch.Tensor:
        x, y = self._model_input(a, "first images"), self._model_input(b, "second images")
        if x.shape != y.shape:
            raise ValueError(f"paired batches differ in shape ({tuple(x.shape)} vs {tuple(y.shape)}); "
                             "pass two batches of the same size and resolution")
        out = []
        # both sides go through the network separately with identical shapes, so d(x, x) is exactly 0
        for i in range(0, x.shape[0], self.batch_size):
            taps_x = self._normalised_taps(x[i : i + self.batch_size])
            taps_y = self._normalised_taps(y[i : i + self.batch_size])
            total = sum(((tx - ty) ** 2).sum(1).mean((1, 2)) for tx, ty in zip(taps_x, taps_y))
            out.append(total.double().cpu())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    __call__ = distance

    def __repr__(self) -> str:
        return f"DemoPerceptualDistance({str(self.path)!r}, sha256={self.weights_sha256[:12]})"


def _demo_distance(path: Path) -> tuple[DemoPerceptualDistance, dict]:
    d = DemoPerceptualDistance(path)
    return d, {"id": d.id, "weights_sha256": d.weights_sha256}


EXTRACTORS.add("demo", DemoFeatureExtractor)
DISTANCES.add("demo", _demo_distance)
DAG_TRAINED["demo"] = "demo_extractor"
