"""Intra-cluster LPIPS (diversity of few-shot generators; Ojha et al. 2021, "CDC").

Every generated image joins the cluster of its nearest training image (by the injected distance);
the score of a cluster is the mean distance over its member pairs i < j, and the metric is the mean
over clusters. Two explicitly parameterised variants:

* ``cdc``: up to M = 50 members drawn at random (seeded) per cluster; clusters with < 2 members are
  excluded from the mean.
* ``unidad_compat``: the first M = 100 members in generation order; clusters with < 2 members count
  as 0; and the generated images reach the distance in [0, 1] instead of [-1, 1] (a defect of the
  official Uni-DAD evaluation code, reproduced only to compare with the paper's tables).

Inputs are float tensors (N, C, H, W) in [-1, 1]. `distance_fn(a, b)` takes two equally shaped
batches and returns one distance per pair (shape (B,)), so real LPIPS or any LPIPS-like learned
distance can be injected.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from unidad.metrics.extractors import DISTANCES
from unidad.metrics.inputs import MetricInputs
from unidad.metrics.registry import Metric, Value, register_metric

DistanceFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

VARIANTS = {
    "cdc": {"members": 50, "selection": "random", "small_clusters": "excluded", "generated_range": "[-1,1]"},
    "unidad_compat": {"members": 100, "selection": "first", "small_clusters": "zero",
                      "generated_range": "[0,1] (official-code defect)"},
}


def _check_images(x, what: str) -> torch.Tensor:
    if not torch.is_tensor(x) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise ValueError(f"{what} must be a float tensor (N, C, H, W) in [-1, 1], got {shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{what} is empty")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} contains NaN or Inf")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.001 or hi > 1.001:
        raise ValueError(f"{what} has values in [{lo:.3g}, {hi:.3g}]; scale images to [-1, 1] (2 * x - 1 for [0, 1])")
    return x


def _distances(distance_fn: DistanceFn, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    d = torch.as_tensor(distance_fn(a, b)).reshape(-1)
    if d.shape[0] != a.shape[0]:
        raise ValueError(f"distance_fn returned {d.shape[0]} values for {a.shape[0]} pairs; it must return one per pair")
    return d.double().cpu()


#: embeddings kept for the whole metric up to this size; beyond it, an image's features are
#: recomputed where it is needed again (at paper scale a VGG embedding of a 256 px image is ~31 MB)
EMBED_CACHE_BYTES = 2 * 2**30


class _PairDistances:
    """Distances between rows of one image pool, by index.

    A distance that factorises into per-image features (`embed(images)` -> list of per-layer
    tensors, `compare(features_a, features_b)` -> one distance per pair; LPIPS does) embeds each
    image once instead of once per pair it appears in: kept for the whole metric while the
    embeddings fit `cache_bytes`, and at least for the batch of work announced by `hold`.
    """

    def __init__(self, distance_fn: DistanceFn, pool: torch.Tensor, batch_size: int,
                 cache_bytes: int | None = None):
        self.distance_fn, self.pool, self.batch_size = distance_fn, pool, batch_size
        self.factorised = hasattr(distance_fn, "embed") and hasattr(distance_fn, "compare")
        self.cache_bytes = EMBED_CACHE_BYTES if cache_bytes is None else cache_bytes
        self.used_bytes = 0
        self.kept: dict[int, list[torch.Tensor]] = {}
        self.held: dict[int, list[torch.Tensor]] = {}

    def _embed(self, rows: list[int]) -> dict[int, list[torch.Tensor]]:
        out = {}
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            layers = self.distance_fn.embed(self.pool[torch.tensor(chunk)])
            for k, row in enumerate(chunk):
                feats = [layer[k:k + 1].clone() for layer in layers]
                out[row] = feats
                size = sum(f.numel() * f.element_size() for f in feats)
                if self.used_bytes + size <= self.cache_bytes:
                    self.kept[row] = feats
                    self.used_bytes += size
        return out

    def hold(self, rows: torch.Tensor) -> None:
        """Embed `rows` (those not kept already) and keep them until the next `hold`."""
        if self.factorised:
            wanted = [r for r in dict.fromkeys(rows.tolist()) if r not in self.kept]
            self.held = self._embed(wanted)

    def _features(self, rows: torch.Tensor) -> list[torch.Tensor]:
        rows_list = rows.tolist()
        missing = [r for r in dict.fromkeys(rows_list) if r not in self.kept and r not in self.held]
        extra = self._embed(missing)
        per_row = [self.kept.get(r) or self.held.get(r) or extra[r] for r in rows_list]
        return [torch.cat(layer) for layer in zip(*per_row)]

    def __call__(self, ia: torch.Tensor, ib: torch.Tensor) -> torch.Tensor:
        out = []
        for start in range(0, ia.numel(), self.batch_size):
            a, b = ia[start:start + self.batch_size], ib[start:start + self.batch_size]
            if self.factorised:
                d = torch.as_tensor(self.distance_fn.compare(self._features(a), self._features(b)))
                out.append(d.reshape(-1).double().cpu())
            else:
                out.append(_distances(self.distance_fn, self.pool[a], self.pool[b]))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _assign(pairs: _PairDistances, gen_idx: torch.Tensor, train_idx: torch.Tensor) -> np.ndarray:
    nearest = []
    for start in range(0, gen_idx.numel(), pairs.batch_size):
        batch = gen_idx[start:start + pairs.batch_size]
        pairs.hold(torch.cat([train_idx, batch]))  # the shots first: they are kept before any sample
        dist = torch.stack([pairs(batch, t.expand_as(batch)) for t in train_idx], dim=1)
        nearest.append(dist.argmin(dim=1))
    return torch.cat(nearest).numpy()


def _mean_pairwise(pairs: _PairDistances, idx: torch.Tensor) -> float:
    i_idx, j_idx = torch.triu_indices(idx.numel(), idx.numel(), offset=1)
    if i_idx.numel() == 0:
        raise ValueError("mean pairwise distance needs at least 2 images")
    pairs.hold(idx)
    return float(pairs(idx[i_idx], idx[j_idx]).sum()) / i_idx.numel()


def assign_to_nearest(generated: torch.Tensor, train_images: torch.Tensor, distance_fn: DistanceFn,
                      batch_size: int = 64) -> np.ndarray:
    """Index of the nearest training image for every generated image (ties go to the lower index)."""
    pairs = _PairDistances(distance_fn, torch.cat([generated, train_images]), batch_size)
    n = generated.shape[0]
    return _assign(pairs, torch.arange(n), torch.arange(n, n + train_images.shape[0]))


def mean_pairwise_distance(images: torch.Tensor, distance_fn: DistanceFn, batch_size: int = 64) -> float:
    """Mean distance over all pairs i < j of `images` (needs at least 2 images)."""
    return _mean_pairwise(_PairDistances(distance_fn, images, batch_size), torch.arange(images.shape[0]))


def intra_lpips(generated: torch.Tensor, train_images: torch.Tensor, distance_fn: DistanceFn,
                variant: str = "cdc", members: int | None = None, seed: int = 0,
                batch_size: int = 64) -> dict:
    """Intra-cluster LPIPS of `generated` (N, C, H, W) around `train_images` (k, C, H, W), both in [-1, 1].

    members: cap per cluster (default 50 for cdc, 100 for unidad_compat); seed: member draw (cdc only).
    Returns value, the variant's parameters, cluster sizes before the cap and the clusters used.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown intra-LPIPS variant '{variant}'; use one of {sorted(VARIANTS)}")
    spec = VARIANTS[variant]
    members = spec["members"] if members is None else int(members)
    if members < 2:
        raise ValueError(f"members must be >= 2 (pairs are needed), got {members}")
    generated = _check_images(generated, "generated images")
    train_images = _check_images(train_images, "training images")
    if generated.shape[1:] != train_images.shape[1:]:
        raise ValueError(f"generated {tuple(generated.shape[1:])} and training {tuple(train_images.shape[1:])} "
                         "images differ in shape; resize them to one resolution first")
    if variant == "unidad_compat":
        generated = (generated + 1.0) / 2.0  # reproduces the official code's un-normalised [0,1] input

    with torch.no_grad():
        n = generated.shape[0]
        pairs = _PairDistances(distance_fn, torch.cat([generated, train_images]), batch_size)
        assignment = _assign(pairs, torch.arange(n), torch.arange(n, n + train_images.shape[0]))
        rng = np.random.default_rng(seed)
        cluster_sizes = [int((assignment == c).sum()) for c in range(train_images.shape[0])]
        cluster_scores: list[float | None] = []
        for c in range(train_images.shape[0]):
            idx = np.flatnonzero(assignment == c)  # generation order
            if spec["selection"] == "random" and idx.size > members:
                idx = np.sort(rng.choice(idx, size=members, replace=False))
            else:
                idx = idx[:members]
            cluster_scores.append(_mean_pairwise(pairs, torch.from_numpy(idx)) if idx.size >= 2 else None)

    used = [s for s in cluster_scores if s is not None]
    if spec["small_clusters"] == "excluded":
        if not used:
            raise ValueError("no cluster has 2 or more generated images; generate more images "
                             f"(cluster sizes {cluster_sizes})")
        value = float(np.mean(used))
    else:
        value = float(np.mean([0.0 if s is None else s for s in cluster_scores]))
    return {
        "value": value,
        "variant": variant,
        "n_clusters_used": len(used),
        "n_clusters": train_images.shape[0],
        "cluster_sizes": cluster_sizes,
        "cluster_scores": cluster_scores,
        "members": members,
        "member_selection": spec["selection"],
        "small_clusters": spec["small_clusters"],
        "generated_range": spec["generated_range"],
        "n_generated": generated.shape[0],
        "seed": seed,
    }


# ------------------------------------------------------------------------------------ LPIPS (VGG, v0.1)

LPIPS_VGG_ID = "lpips-vgg-v0.1"
_LIN_WEIGHTS = "lpips_vgg_lin_v01"
_VGG_WEIGHTS = "lpips_vgg16"
# torchvision vgg16().features indices of the conv layers, grouped by LPIPS' five slices
_VGG_SLICES = {1: (0, 2), 2: (5, 7), 3: (10, 12, 14), 4: (17, 19, 21), 5: (24, 26, 28)}


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def build_lpips_vgg(vgg_weights_path: str | Path | None = None, weights_dir: str | Path | None = None,
                    device: str | torch.device = "cpu"):
    """lpips.LPIPS(net="vgg", version="0.1") assembled from local files only.

    The lpips constructor would download torchvision's VGG16, so the trunk is built random
    (pnet_rand=True) and both the trunk (torchvision vgg16-397923af.pth) and the linear layers
    (shipped in the lpips package, checked against the pinned sha256) are loaded here.
    Returns (model, provenance dict with the two files' sha256).
    """
    import warnings

    import lpips

    from unidad import standins, weights

    vgg_path = Path(vgg_weights_path) if vgg_weights_path is not None else weights.resolve(_VGG_WEIGHTS, weights_dir)
    if not vgg_path.is_file():
        raise weights.WeightsError(f"LPIPS VGG16 trunk not found at {vgg_path}; pass an existing file or None "
                                   "to use the staged one (unidad weights path lpips_vgg16)")
    vgg_sha256 = weights.file_sha256(vgg_path)
    standin = standins.check(vgg_path, vgg_sha256, _VGG_WEIGHTS)
    if not standin:  # a stand-in (rehearsal) cannot match the published prefix
        weights.check_local_file(weights.get_entry(_VGG_WEIGHTS), vgg_path, vgg_sha256)  # prefix + first-verification record
    lin_report = weights.verify(_LIN_WEIGHTS)
    with warnings.catch_warnings():  # torchvision's deprecation notice for the random-trunk constructor
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="vgg", version="0.1", pretrained=False, pnet_rand=True, verbose=False)

    vgg_state = _load_state_dict(vgg_path)
    trunk = {}
    for slice_no, layers in _VGG_SLICES.items():
        for layer in layers:
            for param in ("weight", "bias"):
                key = f"features.{layer}.{param}"
                if key not in vgg_state:
                    raise ValueError(f"{vgg_path} lacks '{key}'; it is not a torchvision VGG16 state_dict")
                trunk[f"slice{slice_no}.{layer}.{param}"] = vgg_state[key]
    model.net.load_state_dict(trunk, strict=True)

    lin_state = _load_state_dict(lin_report.path)
    for i, lin in enumerate(model.lins):
        lin.load_state_dict({"model.1.weight": lin_state[f"lin{i}.model.1.weight"]}, strict=True)
    model = model.to(device).eval().requires_grad_(False)
    provenance = {
        "id": LPIPS_VGG_ID,
        "weights_sha256": vgg_sha256,  # the file the metric's record names (its extractor_sha256)
        "vgg_weights_sha256": vgg_sha256,
        "lin_weights_sha256": lin_report.sha256,
        **({"standin": True} if standin else {}),
    }
    return model, provenance


class LPIPSDistance:
    """An lpips.LPIPS model (v0.1, not spatial) as a batched distance for inputs in [-1, 1], split
    into `embed` (scaling, trunk, unit-normalised activations: one network pass per image) and
    `compare` (the linear layers on squared differences, spatially averaged), which is what the
    model's forward computes for a pair; intra_lpips then embeds each image once."""

    def __init__(self, model, device: str | torch.device = "cpu", provenance: dict | None = None):
        self.model, self.device, self.provenance = model, torch.device(device), provenance or {}

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> list[torch.Tensor]:
        import lpips

        outs = self.model.net.forward(self.model.scaling_layer(images.to(self.device, torch.float32)))
        return [lpips.normalize_tensor(out) for out in outs]

    @torch.no_grad()
    def compare(self, features_a: list[torch.Tensor], features_b: list[torch.Tensor]) -> torch.Tensor:
        return sum(lin((fa - fb) ** 2).mean((2, 3)) for lin, fa, fb in zip(self.model.lins, features_a, features_b)).reshape(-1)

    @torch.no_grad()
    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.model(a.to(self.device, torch.float32), b.to(self.device, torch.float32)).reshape(-1)


def lpips_vgg_distance(weights_path_or_none: str | Path | None = None, weights_dir: str | Path | None = None,
                       device: str | torch.device = "cpu") -> LPIPSDistance:
    """A batched LPIPS (VGG, v0.1) distance for inputs in [-1, 1]; raises WeightsError if the VGG file is absent.

    The returned distance carries `.provenance` (ids and weights sha256) for the result record.
    """
    model, provenance = build_lpips_vgg(weights_path_or_none, weights_dir, device)
    return LPIPSDistance(model, device, provenance)


# ------------------------------------------------------------------------------------ registration
def _vgg_distance(extractor_file: Path | None = None) -> tuple[DistanceFn, dict]:
    fn = lpips_vgg_distance()
    return fn, {"id": LPIPS_VGG_ID, **fn.provenance}


DISTANCES.add("vgg", _vgg_distance)


def _intra_lpips_metric(inputs: MetricInputs, nfe: int, images: np.ndarray) -> dict:
    from unidad.imageio import to_float_nchw

    distance, provenance = inputs.distance
    shots = inputs.shot_images
    res = intra_lpips(torch.from_numpy(to_float_nchw(images)), torch.from_numpy(to_float_nchw(shots)), distance,
                      variant=inputs.intra_lpips_variant)
    return {"variant": inputs.intra_lpips_variant, "extractor": provenance["id"],
            "extractor_sha256": provenance.get("weights_sha256", ""), "n_reference": int(len(shots)),
            "values": {"intra_lpips": float(res["value"])}, "params": {k: v for k, v in res.items() if k != "value"}}


def _intra_lpips_protocol(inputs: MetricInputs) -> dict:
    return {"lpips": inputs.lpips, "variant": inputs.intra_lpips_variant, "shots": inputs.shots}


register_metric(Metric(
    "intra_lpips", "Intra-cluster LPIPS: samples assigned to their nearest shot, mean pairwise distance per cluster "
    "(variant cdc or unidad_compat: metrics.md)",
    (Value("intra_lpips", "Intra-LPIPS", True, 3),), _intra_lpips_metric, frozenset({"shots", "distance"}),
    _intra_lpips_protocol,
))
