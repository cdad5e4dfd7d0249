"""The metric registry: every metric the harness can report, read by everything that needs the list.

A metric entry says what it needs (so the workflow wires its inputs), how to compute it for one set of
generated images, what its number depends on besides the samples (its protocol key, which invalidates
the metric cache), and how each value it produces is shown (label, direction, decimals, bounded).

Evaluation (`unidad.jobs.evaluate`), config validation, the rules' inputs (`common.smk`), the tables
and the figures all read this registry; adding a metric is one module that calls `register_metric`
plus its import in `unidad/metrics/__init__.py` (or a plugin: docs/adding_a_metric.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from unidad.plugins import load_plugins
from unidad.registry import Registry

if TYPE_CHECKING:  # the inputs object lives with the evaluation job
    from unidad.metrics.inputs import MetricInputs

# What a metric can ask the evaluation job for (each is a declared input of the metrics rule):
#   "reference"  feature statistics of the target's reference splits (extractor from evaluation.extractor)
#   "shots"      the k training images of the run's target
#   "distance"   the LPIPS-style distance of evaluation.lpips
#   "oracle"     the demo domain's rule-based oracle (skipped with a note on real datasets)
#   "timing"     the sampler's timing, recorded with the samples
#   "sdp_embedding"  the SDP demo's text-image embedding, trained in the DAG (rule demo_sdp_embedding)
NEEDS = ("reference", "shots", "distance", "oracle", "timing", "sdp_embedding")
# Table groups: quality metrics make the main tables, oracle metrics the oracle table, speed the compute table.
GROUPS = ("quality", "oracle", "speed")


@dataclass(frozen=True)
class Value:
    """One number a metric produces (a row value of the tidy table's `metric` column)."""

    name: str
    label: str
    higher_is_better: bool | None  # None: no better direction (e.g. a std)
    decimals: int = 3
    bounded: bool = False  # a fraction in [0, 1]: figures keep the axis inside it
    shown: bool = True  # False: recorded in the tidy table, listed after the shown values


@dataclass(frozen=True)
class Metric:
    id: str
    description: str
    values: tuple[Value, ...]
    compute: Callable[["MetricInputs", int, Any], dict[str, Any]]  # (inputs, nfe, uint8 images) -> record
    needs: frozenset[str] = frozenset()
    protocol: Callable[["MetricInputs"], dict[str, Any]] = lambda inputs: {}
    group: str = "quality"
    weights: tuple[str, ...] = ()  # manifest entries its compute loads itself (preflight checks them)

    def __post_init__(self) -> None:
        unknown = set(self.needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"metric '{self.id}' needs {sorted(unknown)}; a metric can need {', '.join(NEEDS)}")
        if self.group not in GROUPS:
            raise ValueError(f"metric '{self.id}' has group {self.group!r}; groups: {', '.join(GROUPS)}")


METRICS: Registry[Metric] = Registry("metric")


def register_metric(metric: Metric) -> Metric:
    taken = {v.name: m for m in METRICS for v in METRICS.get(m).values}
    clash = [v.name for v in metric.values if v.name in taken and taken[v.name] != metric.id]
    if clash:
        raise ValueError(f"metric '{metric.id}' reports {clash}, already reported by {taken[clash[0]]}")
    return METRICS.add(metric.id, metric)


def metric_ids() -> list[str]:
    """Every registered metric id, in registration order (the order tables list them)."""
    load_plugins()
    return list(METRICS.registered())


def get_metric(metric_id: str) -> Metric:
    load_plugins()
    return METRICS.get(metric_id)


def check_metric_names(names) -> None:
    """Config validation: every name in evaluation.metrics is a registered metric."""
    known = metric_ids()
    unknown = [m for m in names if m not in known]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown} in evaluation.metrics; known metrics: {', '.join(known)}")


def values() -> Mapping[str, Value]:
    """Every value any metric reports, by name, in registration order."""
    return {v.name: v for m in metric_ids() for v in METRICS.get(m).values}


def value_info(name: str) -> Value:
    """How a tidy-table metric value is shown; a name no metric reports gets a neutral entry."""
    return values().get(name) or Value(name, name, None, 3, shown=False)


def value_names(group: str | None = None, shown_only: bool = True) -> list[str]:
    """Value names (of one table group), in registration order."""
    out = []
    for m in metric_ids():
        metric = METRICS.get(m)
        if group is None or metric.group == group:
            out += [v.name for v in metric.values if v.shown or not shown_only]
    return out


def metrics_needing(need: str, names) -> list[str]:
    """Which of the configured metrics need an input (`common.smk` wires inputs from this)."""
    return [m for m in names if need in get_metric(m).needs]
