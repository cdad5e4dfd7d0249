"""Mean, sample std and seed count of the tidy table's values over seeds."""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from unidad.results.schema import TIDY_COLUMNS, normalise_tidy

DEFAULT_GROUP = (
    "benchmark", "dataset", "shots", "method", "selection", "nfe", "metric", "variant", "extractor",
    "ablation",
)


def _explain_duplicates(frame: pd.DataFrame, key: list[str]) -> str:
    dup = frame[frame.duplicated(key, keep=False)]
    group = dup.iloc[0][key]
    same = dup
    for col in key:
        same = same[(same[col] == group[col]) | (same[col].isna() & pd.isna(group[col]))]
    varying = [c for c in TIDY_COLUMNS if c in same.columns and c not in key and c != "value"
               and same[c].astype(str).nunique() > 1]
    where = ", ".join(f"{c}={group[c]!r}" for c in key)
    return (f"several values per seed for ({where}); they differ in {varying or 'nothing (exact duplicate rows)'}: "
            "add the column(s) that tell them apart to `by`, or filter the table first")


def aggregate(tidy: pd.DataFrame, by: Sequence[str] = DEFAULT_GROUP) -> pd.DataFrame:
    """Mean, sample std (ddof=1) and count of `value` over seeds for each group of `by`.

    Raises if a group holds two values for one seed: those are different measurements (another
    checkpoint, NFE, extractor...) and averaging them would mix them.
    """
    return aggregate_normalised(normalise_tidy(tidy), by)


def aggregate_normalised(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """`aggregate` of a table normalise_tidy has already checked."""
    by = list(by)
    unknown = [c for c in by if c not in frame.columns]
    if unknown:
        raise ValueError(f"aggregate: unknown column(s) {unknown} in `by`; tidy columns are {list(frame.columns)}")
    if "seed" in by:
        raise ValueError("aggregate: `by` must not contain 'seed' (the statistics are taken over seeds)")
    key = by + ["seed"]
    if frame.duplicated(key).any():
        raise ValueError("aggregate: " + _explain_duplicates(frame, key))
    if frame.empty:
        return pd.DataFrame(columns=by + ["mean", "std", "count"])
    grouped = frame.groupby(by, dropna=False, sort=False)["value"]
    return grouped.agg(mean="mean", std="std", count="count").reset_index()
