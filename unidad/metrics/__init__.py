"""Metrics: one registry (unidad.metrics.registry) of what the harness reports; feature extractors and
distances; the functions behind each metric.

Importing this package registers the built-in metrics, in the order tables list them. The functions
`prdc` and `intra_lpips` live in the submodules of the same name and are not re-exported here, so
`unidad.metrics.prdc` stays the module (use `from unidad.metrics.prdc import prdc`).
"""
from unidad.metrics import demo_extractor, feature_metrics, intra_lpips, oracle, speed  # noqa: F401  (registrations)
# the SDP metrics, in the order of the paper's Table 3
from unidad.metrics import dino, clip_i, clip_t, sdp_diversity, sdp_oracle  # noqa: F401,I001  (registrations)
# their demo stand-ins, by the SDP demo embedding trained in the DAG (it also registers distance demo_sdp)
from unidad.metrics import demo_sdp_embed, demo_subject_sim, demo_prompt_sim  # noqa: F401,I001  (registrations)
from unidad.metrics.extractors import EXTRACTORS, FeatureExtractor, InceptionV3Extractor, extract_features
from unidad.metrics.frechet import feature_statistics, fid_from_features, frechet_distance
from unidad.metrics.intra_lpips import lpips_vgg_distance
from unidad.metrics.kid import kid_from_features
from unidad.metrics.registry import METRICS, Metric, Value, get_metric, metric_ids, value_info

__all__ = [
    "EXTRACTORS", "FeatureExtractor", "InceptionV3Extractor", "METRICS", "Metric", "Value", "extract_features",
    "feature_statistics", "fid_from_features", "frechet_distance", "get_metric", "kid_from_features",
    "lpips_vgg_distance", "metric_ids", "value_info",
]
