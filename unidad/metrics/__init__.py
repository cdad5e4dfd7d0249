"""Metrics on features and images: FID, KID, PRDC, intra-LPIPS; feature extractors; the torch-fidelity wrapper.

The functions `prdc` and `intra_lpips` live in the submodules of the same name and are not re-exported
here, so `unidad.metrics.prdc` stays the module (use `from unidad.metrics.prdc import prdc`).
"""
from unidad.metrics.extractors import EXTRACTORS, FeatureExtractor, InceptionV3Extractor, extract_features
from unidad.metrics.frechet import feature_statistics, fid_from_features, frechet_distance
from unidad.metrics.intra_lpips import lpips_vgg_distance
from unidad.metrics.kid import kid_from_features
from unidad.metrics.registry import METRICS, MetricSpec, get_metric

__all__ = [
    "EXTRACTORS", "FeatureExtractor", "InceptionV3Extractor", "METRICS", "MetricSpec", "extract_features",
    "feature_statistics", "fid_from_features", "frechet_distance", "get_metric", "kid_from_features",
    "lpips_vgg_distance",
]
