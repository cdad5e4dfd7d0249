"""Feature extractors for distribution metrics (FID, KID, PRDC) and the image -> features path.

Image convention: uint8 arrays/tensors are NHWC with values 0..255 (what PNG files decode to);
float arrays/tensors are NCHW in [0, 1] and are quantised to uint8 first, because the metrics are
defined on 8-bit images (generated samples are saved as PNG).
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Callable, Iterable, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from unidad.registry import Registry

RESIZE_PROTOCOLS = ("torch-fidelity", "pytorch-fid")


@runtime_checkable
class FeatureExtractor(Protocol):
    id: str
    weights_sha256: str
    resize_protocol: str

    def __call__(self, images) -> np.ndarray: ...


# name (config evaluation.extractor) -> factory(demo extractor file or None) -> FeatureExtractor
EXTRACTORS: Registry = Registry("feature extractor")
# name (config evaluation.lpips) -> factory(demo extractor file or None) -> (distance function, provenance)
DISTANCES: Registry = Registry("distance")
# extractor or distance name -> the unidad.paths.PATHS entry of the weights the DAG trains for it (the
# rules wire that file as the metric jobs' input); names not listed load real weights via the manifest
DAG_TRAINED: dict[str, str] = {}


def to_uint8_nchw(images) -> torch.Tensor:
    """uint8 NHWC (0..255) or float NCHW ([0, 1]) -> uint8 NCHW tensor with 3 channels."""
    t = images if torch.is_tensor(images) else torch.from_numpy(np.ascontiguousarray(images))
    if t.ndim != 4:
        raise ValueError(f"images must be a 4-D batch, got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        if t.shape[-1] != 3:
            raise ValueError(f"uint8 images must be NHWC with 3 channels, got shape {tuple(t.shape)}")
        return t.permute(0, 3, 1, 2).contiguous()
    if not t.is_floating_point():
        raise ValueError(f"images must be uint8 (NHWC, 0..255) or float (NCHW, [0, 1]), got dtype {t.dtype}")
    if t.shape[1] != 3:
        raise ValueError(f"float images must be NCHW with 3 channels in [0, 1], got shape {tuple(t.shape)}")
    lo, hi = float(t.min()), float(t.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"float images have values in [{lo:.3g}, {hi:.3g}]; pass [0, 1] ((x + 1) / 2 for [-1, 1])")
    return (t.clamp(0, 1) * 255).round().to(torch.uint8)


def load_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """One image file -> uint8 HWC RGB; `size` resizes to size x size with PIL bilinear (reference protocol)."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


def extract_features(extractor: FeatureExtractor, image_paths: Iterable[str | Path], batch_size: int = 50,
                     size: int | None = None) -> np.ndarray:
    """Features (N, D) of the image files in the given order, in batches; the project's image -> features path."""
    paths = list(image_paths)
    if not paths:
        raise ValueError("no image files given")
    chunks = []
    for start in range(0, len(paths), batch_size):
        batch = np.stack([load_image(p, size) for p in paths[start:start + batch_size]])
        chunks.append(np.asarray(extractor(batch), dtype=np.float64))
    return np.concatenate(chunks, axis=0)


@contextlib.contextmanager
def forced_weights_only_load():
    """Make torch.load use weights_only=True inside the block.

    torch-fidelity loads its weights file with weights_only=False (arbitrary unpickling); within this
    block it gets the safe loader instead, which accepts plain state_dicts only.
    """
    original = torch.load

    @functools.wraps(original)
    def safe_load(*args, **kwargs):
        kwargs["weights_only"] = True
        kwargs.setdefault("map_location", "cpu")
        return original(*args, **kwargs)

    torch.load = safe_load
    try:
        yield
    finally:
        torch.load = original


def pytorch_fid_input(x_uint8: torch.Tensor, size: int = 299) -> torch.Tensor:
    """The network input of the `pytorch-fid` protocol: uint8 NCHW -> [0, 1] (what its ToTensor loader
    gives), F.interpolate bilinear with align_corners=False to size x size, then 2x - 1, as
    pytorch_fid.inception.InceptionV3.forward does (tests check it against the package itself)."""
    x = x_uint8.to(torch.float32) / 255.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return 2.0 * x - 1.0


class InceptionV3Extractor:
    """Inception-v3 (TF 2015-12-05 FID weights) pool3 features, 2048-d, via torch-fidelity's network.

    protocol "torch-fidelity": uint8 input, TF1-compatible bilinear resize to 299, (x - 128) / 128
    (torch-fidelity's own forward; matches TF FID). protocol "pytorch-fid": x / 255, F.interpolate
    bilinear (align_corners=False) to 299, then 2x - 1, as pytorch-fid does; same network and weights.
    Never mix features of the two protocols in one comparison.
    """

    INPUT_SIZE = 299

    def __init__(self, weights_path: str | Path, protocol: str = "torch-fidelity", batch_size: int = 64,
                 device: str | torch.device | None = None):
        if protocol not in RESIZE_PROTOCOLS:
            raise ValueError(f"unknown resize protocol '{protocol}'; use one of {RESIZE_PROTOCOLS}")
        weights_path = Path(weights_path)
        if not weights_path.is_file():
            raise FileNotFoundError(f"Inception weights not found at {weights_path}; see: unidad weights path inception_v3_tf")
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        from unidad import standins
        from unidad.weights import file_sha256

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        with forced_weights_only_load():
            self.network = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights_path)
            )
        self.network.to(self.device).eval()
        self.batch_size = batch_size
        self.resize_protocol = protocol
        self.id = f"inception_v3_tf/pool3/{protocol}"
        self.weights_sha256 = file_sha256(weights_path)
        self.standin = standins.check(weights_path, self.weights_sha256, "inception_v3_tf")
        self.dim = 2048

    def _pool3_pytorch_fid(self, x_uint8: torch.Tensor) -> torch.Tensor:
        net = self.network
        x = pytorch_fid_input(x_uint8, self.INPUT_SIZE)
        for block in (net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, net.MaxPool_1,
                      net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, net.MaxPool_2,
                      net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c,
                      net.Mixed_6d, net.Mixed_6e, net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, net.AvgPool):
            x = block(x)
        return torch.flatten(x, 1)

    def __call__(self, images) -> np.ndarray:
        batch = to_uint8_nchw(images)
        outputs = []
        with torch.no_grad():
            for start in range(0, batch.shape[0], self.batch_size):
                x = batch[start:start + self.batch_size].to(self.device)
                if self.resize_protocol == "torch-fidelity":
                    (features,) = self.network(x)
                else:
                    features = self._pool3_pytorch_fid(x)
                outputs.append(features.double().cpu().numpy())
        return np.concatenate(outputs, axis=0)


def _inception(extractor_file: Path | None = None, protocol: str = "torch-fidelity") -> InceptionV3Extractor:
    from unidad.weights import resolve

    return InceptionV3Extractor(resolve("inception_v3_tf"), protocol=protocol)


EXTRACTORS.add("inception", _inception)
# The official Uni-DAD code's FID (pytorch-fid's resize): its own name, so that its reference statistics
# are files of their own and never mix with torch-fidelity's.
EXTRACTORS.add("inception_pytorch_fid", functools.partial(_inception, protocol="pytorch-fid"))


def load_extractor(name: str, extractor_file: str | Path | None = None) -> FeatureExtractor:
    """The feature extractor a config names (evaluation.extractor); `extractor_file` is the demo
    extractor's weights, trained in the DAG (real extractors resolve their weights through the manifest)."""
    return EXTRACTORS.get(name)(None if extractor_file is None else Path(extractor_file))


def load_distance(name: str, extractor_file: str | Path | None = None) -> tuple[Callable, dict]:
    """The LPIPS-style distance a config names (evaluation.lpips) and its provenance (id, weights hash)."""
    return DISTANCES.get(name)(None if extractor_file is None else Path(extractor_file))
