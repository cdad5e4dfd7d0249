"""The demo domains' rule-based oracle as a metric: in-domain rate, mode coverage and the TV distance of
the mode histogram to the domain's true one. Real datasets have no oracle: the record says so."""
from __future__ import annotations

from typing import Any

import numpy as np

from unidad.metrics.inputs import MetricInputs
from unidad.metrics.registry import Metric, Value, register_metric


def _oracle(inputs: MetricInputs, nfe: int, images: np.ndarray) -> dict[str, Any]:
    from unidad.data.domains import oracle_report

    if inputs.domain is None:
        return {"params": {"skipped": "the target has no oracle (not a demo domain)"}}
    rep = oracle_report(images, inputs.domain)
    return {"variant": "rule-based", "extractor": f"oracle:{inputs.domain}",
            "values": {"oracle_in_domain": rep["in_domain_rate"], "oracle_mode_coverage": rep["mode_coverage"],
                       "oracle_tv": rep["tv_distance"]},
            "params": {"mode_histogram": rep["mode_histogram"], "true_histogram": rep["true_histogram"],
                       "modes": rep["modes"], "rule_pass_rates": rep["rule_pass_rates"]}}


register_metric(Metric(
    "oracle", "Demo oracle: share of samples in the target domain, share of its modes covered, mode-histogram TV",
    (Value("oracle_in_domain", "In-domain rate", True, 3, bounded=True),
     Value("oracle_mode_coverage", "Mode coverage", True, 3, bounded=True),
     Value("oracle_tv", "Mode TV distance", False, 3)),
    _oracle, frozenset({"oracle"}), group="oracle",
))
