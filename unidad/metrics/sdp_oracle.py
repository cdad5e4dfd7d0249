"""The text-conditioned demo's exact judge as a metric: for each sample of a demo subject, is the subject
there (unidad.data.sdp_demo.SubjectOracle: shape, both pattern colours, pattern orientation) and does the
background show the context its prompt names; and both at once. The ground truth the learned SDP metrics
are checked against. Runs on another subject (a real DreamBench folder) are skipped with a note."""
from __future__ import annotations

from typing import Any

import numpy as np

from unidad.metrics.inputs import MetricInputs
from unidad.metrics.registry import Metric, Value, register_metric


def _sdp_oracle(inputs: MetricInputs, nfe: int, images: np.ndarray) -> dict[str, Any]:
    from unidad.data.sdp_demo import SubjectOracle

    if inputs.subject is None:
        return {"params": {"skipped": "the target is not a demo subject: no oracle"}}
    prompts = inputs.prompts
    if prompts is None or len(prompts) != len(images):
        raise ValueError(f"metric 'sdp_oracle' needs one prompt per sample; samples.npz of {inputs.samples} has "
                         f"{'none' if prompts is None else len(prompts)} for {len(images)} images (resample it)")
    oracle = SubjectOracle(inputs.subject)
    rules = oracle.checks(images)
    present = np.logical_and.reduce(list(rules.values()))
    follows = oracle.context_follows(images, prompts)
    rows = {p: [i for i, q in enumerate(prompts) if q == p] for p in dict.fromkeys(prompts)}
    return {"variant": "rule-based", "extractor": f"oracle:{inputs.subject}",
            "values": {"oracle_subject": float(present.mean()), "oracle_context": float(follows.mean()),
                       "oracle_subject_context": float((present & follows).mean())},
            "params": {"rule_pass_rates": {rule: float(ok.mean()) for rule, ok in rules.items()},
                       "subject_present_per_prompt": {p: float(present[i].mean()) for p, i in rows.items()}}}


register_metric(Metric(
    "sdp_oracle", "Demo subject oracle: share of samples showing the subject, share whose background follows the "
    "prompt's context, share with both",
    (Value("oracle_subject", "Subject present", True, 3, bounded=True),
     Value("oracle_context", "Context follows prompt", True, 3, bounded=True),
     Value("oracle_subject_context", "Subject and context", True, 3, bounded=True)),
    _sdp_oracle, frozenset({"oracle"}), group="oracle",
))
