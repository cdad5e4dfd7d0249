"""The metric registry: every metric the harness can report, with the inputs it needs.

`needs` names what the caller must provide, so the workflow can wire inputs without knowing the
metric: "features" = (reference features, generated features) from one FeatureExtractor;
"images" = generated images; "train_images" = the few-shot training images; "distance" = an
LPIPS-like batched distance function.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

from unidad.metrics.frechet import fid_from_features
from unidad.metrics.intra_lpips import intra_lpips
from unidad.metrics.kid import kid_from_features
from unidad.metrics.prdc import prdc
from unidad.registry import Registry


@dataclass(frozen=True)
class MetricSpec:
    id: str
    fn: Callable
    needs: tuple[str, ...]
    description: str
    params: dict = field(default_factory=dict)  # fixed protocol parameters, recorded with the number


METRICS: Registry[MetricSpec] = Registry("metric")


def _register(spec: MetricSpec) -> MetricSpec:
    return METRICS.add(spec.id, spec)


_register(MetricSpec(
    "fid", fid_from_features, ("features",),
    "Frechet distance between Gaussians of reference and generated features (eigvals form, float64)",
))
_register(MetricSpec(
    "kid", kid_from_features, ("features",),
    "Kernel Inception Distance: unbiased MMD^2, cubic polynomial kernel, mean/std over subsets",
    {"subsets": 100, "subset_size": 1000, "degree": 3, "coef0": 1},
))
_register(MetricSpec(
    "prdc", prdc, ("features",),
    "Precision/recall/density/coverage (Naeem et al. 2020), Euclidean, k-th NN radius, strict <",
    {"k": 5},
))
for _variant, _text in (
    ("cdc", "CDC protocol: M=50 random members, clusters with <2 members excluded"),
    ("unidad_compat", "Uni-DAD compat: first M=100 members, small clusters count 0, generated in [0,1]"),
):
    _register(MetricSpec(
        f"intra_lpips_{_variant}", functools.partial(intra_lpips, variant=_variant),
        ("images", "train_images", "distance"), f"Intra-cluster LPIPS, {_text}", {"variant": _variant},
    ))


def get_metric(metric_id: str) -> MetricSpec:
    return METRICS.get(metric_id)
