"""FID, KID and PRDC: distribution metrics on features of the generated images and a reference split.

Each is measured against the test reference (the target's full set) and, where the workflow made one,
the validation split (checkpoint selection); both numbers carry the extractor's id and weights hash.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from unidad.metrics.frechet import feature_statistics, frechet_distance
from unidad.metrics.inputs import MetricInputs
from unidad.metrics.kid import kid_from_features
from unidad.metrics.prdc import prdc
from unidad.metrics.registry import Metric, Value, register_metric

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
PRDC_K = 5


def _fid(ref: dict[str, Any], gen: np.ndarray) -> dict[str, float]:
    mu, sigma = feature_statistics(gen)
    return {"fid": frechet_distance(ref["mu"], ref["sigma"], mu, sigma)}


def kid_subset_size(n_reference: int, n_generated: int) -> int:
    """KID's subset size: 1000, shrunk to the smaller set when either has fewer images (recorded)."""
    return min(KID_SUBSET_SIZE, n_generated, n_reference)


def _kid(ref: dict[str, Any], gen: np.ndarray) -> dict[str, float]:
    size = kid_subset_size(len(ref["features"]), len(gen))
    mean, std = kid_from_features(ref["features"], gen, subsets=KID_SUBSETS, subset_size=size)
    return {"kid": float(mean), "kid_std": float(std)}


def prdc_set_size(n_reference: int, n_generated: int) -> int:
    """PRDC compares equal numbers of real and generated images (k-NN radii depend on the set size):
    the first n of each, n = the smaller count (recorded)."""
    return min(n_reference, n_generated)


def _prdc(ref: dict[str, Any], gen: np.ndarray) -> dict[str, float]:
    n = prdc_set_size(len(ref["features"]), len(gen))
    return {f"prdc_{k}": float(v) for k, v in prdc(ref["features"][:n], gen[:n], k=PRDC_K).items()}


def _protocol_params(metric: str, n_reference: int, n_generated: int) -> dict[str, Any]:
    """The sizes a metric actually used, recorded with its number."""
    if metric == "kid":
        return {"kid_subsets": KID_SUBSETS, "kid_subset_size": kid_subset_size(n_reference, n_generated)}
    if metric == "prdc":
        return {"prdc_k": PRDC_K, "prdc_n_per_set": prdc_set_size(n_reference, n_generated)}
    return {}


def _protocol(inputs: MetricInputs) -> dict[str, Any]:
    ref = inputs.references.get("full")
    return {"extractor": inputs.extractor, "reference": str(ref),
            "reference_mtime": ref.stat().st_mtime if ref is not None and ref.exists() else None}


def _computer(metric: str, values_of: Callable[[dict[str, Any], np.ndarray], dict[str, float]]):
    def compute(inputs: MetricInputs, nfe: int, images: np.ndarray) -> dict[str, Any]:
        extractor = inputs.feature_extractor
        gen = inputs.generated_features(nfe)
        test = inputs.reference("full")
        if test is None:
            raise FileNotFoundError(f"no test reference statistics at {inputs.references.get('full')}")
        record = {"extractor": extractor.id, "extractor_sha256": extractor.weights_sha256,
                  "variant": str(extractor.resize_protocol), "n_reference": int(test["n"]),
                  "values": values_of(test, gen), "params": _protocol_params(metric, int(test["n"]), len(gen))}
        val = inputs.reference("val")
        if val is not None:
            record["values_val"] = values_of(val, gen)
            record["n_reference_val"] = int(val["n"])
            record["params"]["val"] = _protocol_params(metric, int(val["n"]), len(gen))
        return record

    return compute


register_metric(Metric(
    "fid", "Frechet distance between Gaussians of reference and generated features (eigvals form, float64)",
    (Value("fid", "FID", False, 2),), _computer("fid", _fid), frozenset({"reference"}), _protocol,
))
register_metric(Metric(
    "kid", f"Kernel Inception Distance: unbiased MMD^2, cubic polynomial kernel, mean/std over {KID_SUBSETS} subsets",
    (Value("kid", "KID", False, 4), Value("kid_std", "kid_std", None, 3, shown=False)),
    _computer("kid", _kid), frozenset({"reference"}), _protocol,
))
register_metric(Metric(
    "prdc", f"Precision/recall/density/coverage (Naeem et al. 2020), Euclidean, k={PRDC_K} NN radius, strict <",
    (Value("prdc_precision", "Precision", True, 3, bounded=True), Value("prdc_recall", "Recall", True, 3, bounded=True),
     Value("prdc_density", "Density", True, 3), Value("prdc_coverage", "Coverage", True, 3, bounded=True)),
    _computer("prdc", _prdc), frozenset({"reference"}), _protocol,
))
