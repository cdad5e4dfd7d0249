"""How numbers are shown: metric labels, directions and decimals (from the metric registry, and
nowhere else), cell text, and the column labels and protocol footnotes of a metric table."""
from __future__ import annotations

from typing import Iterable, Sequence

import pandas as pd

import unidad.metrics  # noqa: F401  (registers the built-in metrics)
from unidad.metrics import registry
from unidad.results.schema import ordered_datasets

MISSING = "–"  # the text of an empty cell
value_info = registry.value_info


def metric_direction(metric: str) -> bool | None:
    """True if higher is better, False if lower is better, None if unknown."""
    return value_info(metric).higher_is_better


def metric_name(metric: str) -> str:
    """The metric's display name ("FID"); an unregistered name is shown as it is."""
    return value_info(metric).label


def metric_label(metric: str) -> str:
    """Display name with an arrow pointing to the better direction."""
    info = value_info(metric)
    arrow = {True: " ↑", False: " ↓", None: ""}[info.higher_is_better]
    return info.label + arrow


def decimals(metric: str) -> int:
    return value_info(metric).decimals


def protocol_text(extractor: str, variant: str) -> str:
    return ", ".join(p for p in (extractor, variant) if p)


# ------------------------------------------------------------------------------ cells
def fmt(value: float, digits: int) -> str:
    return MISSING if pd.isna(value) else f"{value:.{digits}f}"


def cell_text(mean: float, std: float, count: int, digits: int, full_count: int) -> str:
    if pd.isna(mean):
        return MISSING
    text = fmt(mean, digits) if pd.isna(std) else f"{fmt(mean, digits)} ± {fmt(std, digits)}"
    return text + (f" (n={count})" if count < full_count else "")


def best_rows(means: pd.Series, higher: bool | None) -> list:
    finite = means.dropna()
    if higher is None or finite.empty:
        return []
    best = finite.max() if higher else finite.min()
    tolerance = 1e-12 * max(1.0, abs(best))
    return list(finite.index[(finite - best).abs() <= tolerance])


def seed_note(counts: Iterable[int]) -> str:
    counts = [int(c) for c in counts if c > 0]
    if not counts:
        return ""
    full = max(counts)
    if full == 1:
        return "One seed per cell: no spread to show."
    note = f"Mean ± sample std (ddof=1) over {full} seeds"
    if min(counts) < full:
        note += "; (n=k) marks cells with fewer seeds"
    return note + "."


PROTOCOL_TEXT = {
    "corrected": "corrected (torch-fidelity resize, CDC Intra-LPIPS, final / best-val checkpoints)",
    "official_code": "official_code (the official Uni-DAD code's: pytorch-fid resize, unidad_compat "
                     "Intra-LPIPS, best-test checkpoint)",
}


def evaluation_protocol_note(rows: pd.DataFrame) -> str:
    """Which evaluation protocol the table's numbers were measured under (evaluation.protocol)."""
    if "protocol" not in rows:
        return ""
    found = [p for p in dict.fromkeys(rows["protocol"]) if p]
    if not found:
        return ""
    return "Evaluation protocol: " + "; ".join(PROTOCOL_TEXT.get(p, p) for p in found) + "."


def nfe_text(values: Iterable[float]) -> str:
    found = sorted({int(v) for v in values if not pd.isna(v)})
    return ", ".join(str(v) for v in found) if found else MISSING


# ------------------------------------------------------------------------------ metric columns
def metric_columns(rows: pd.DataFrame, metric_order: Sequence[str] = ()) -> tuple[dict, list[str]]:
    """Column label per (metric, extractor, variant) and one footnote per measurement protocol.

    Columns are per dataset, so a metric measured one way in each dataset is labelled by its name
    (a per-domain oracle measures each dataset its own way); where one dataset has it measured in
    several ways, each gets its own column "name [extractor, variant]", so no column mixes extractors
    or variants. Metrics measured the same way share one footnote, which names the datasets when the
    metric's protocol differs between them.
    """
    for extractor, rows_e in rows[rows["extractor"] != ""].groupby("extractor"):
        hashes = sorted(set(rows_e["extractor_sha256"]) - {""})
        if len(hashes) > 1:
            raise ValueError(f"extractor '{extractor}' appears with {len(hashes)} different sha256 "
                             f"({', '.join(h[:12] for h in hashes)}): the numbers come from different weights; "
                             "re-evaluate every run with one extractor file")
    combos = rows[["metric", "extractor", "variant", "extractor_sha256"]].drop_duplicates(["metric", "extractor", "variant"])
    order = {m: i for i, m in enumerate(metric_order)}
    combos = combos.assign(_rank=combos["metric"].map(lambda m: order.get(m, len(order))))
    combos = combos.sort_values(["_rank", "metric", "extractor", "variant"], kind="stable")
    labels: dict[tuple[str, str, str], str] = {}
    notes: dict[str, list[str]] = {}  # protocol text -> metric names, in column order
    for metric, sub in combos.groupby("metric", sort=False):
        measured = rows[rows["metric"] == metric]
        ways_in_one_dataset = int(measured.groupby("dataset")[["extractor", "variant"]]
                                  .apply(lambda g: len(g.drop_duplicates())).max())
        for _, combo in sub.iterrows():
            key = (metric, combo["extractor"], combo["variant"])
            protocol = protocol_text(combo["extractor"], combo["variant"])
            labels[key] = metric_label(metric) + (f" [{protocol}]" if ways_in_one_dataset > 1 and protocol else "")
            if not protocol:
                continue
            sha = f" (sha256 {combo['extractor_sha256'][:12]})" if combo["extractor_sha256"] else ""
            parts = []
            if combo["extractor"]:
                parts.append(f"extractor {combo['extractor']}{sha}")
            if combo["variant"]:
                parts.append(f"variant {combo['variant']}")
            text = ", ".join(parts)
            if len(sub) > 1 and ways_in_one_dataset == 1:
                here = measured[(measured["extractor"] == combo["extractor"]) & (measured["variant"] == combo["variant"])]
                text += f" ({', '.join(ordered_datasets(here))})"
            names = notes.setdefault(text, [])
            name = metric_name(metric)
            if name not in names:
                names.append(name)
    return labels, [f"{', '.join(names)}: {text}." for text, names in notes.items()]
