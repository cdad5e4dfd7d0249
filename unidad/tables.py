"""Paper tables from the tidy results table.

The tidy table has one row per measured number (columns: TIDY_COLUMNS). Every table here is a pivot
of it: rows = methods (or method x ablation value), columns = (dataset, metric), cells = mean ± std
over seeds. Numbers measured with different feature extractors or protocol variants never share a
column: when one metric was measured in several ways, each way gets its own column, labelled with
the extractor id and variant.

A table is a DataFrame of display strings; its `attrs` carry what the writers need: "caption",
"notes" (footnotes), "best_cells" ((row label, column label) pairs to print in bold) and "stats"
(one record per cell with mean, std, seed count; what `to_csv` writes).
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

PAPER_RESULTS_CSV = Path(__file__).parent / "data" / "paper_results.csv"

REQUIRED_COLUMNS = ("dataset", "method", "seed", "metric", "value")
# Columns a partial table may lack, with the value that means "not recorded".
OPTIONAL_COLUMNS: dict[str, object] = {
    "benchmark": "", "shots": np.nan, "stage": "", "slug": "", "step": np.nan, "nfe": np.nan,
    "final": True, "selection": "final", "variant": "", "extractor": "", "extractor_sha256": "",
    "n_generated": np.nan, "n_reference": np.nan, "iterations": np.nan, "images_seen": np.nan,
    "device_hours": np.nan, "wall_seconds": np.nan, "ablation": "", "ablation_param": "",
    "ablation_value": "",
}
TIDY_COLUMNS = REQUIRED_COLUMNS + tuple(OPTIONAL_COLUMNS)
TEXT_COLUMNS = (
    "benchmark", "dataset", "method", "stage", "slug", "selection", "metric", "variant", "extractor",
    "extractor_sha256", "ablation", "ablation_param", "ablation_value",
)
NUMERIC_COLUMNS = (
    "value", "shots", "step", "nfe", "n_generated", "n_reference", "iterations", "images_seen",
    "device_hours", "wall_seconds",
)
SELECTIONS = ("final", "best_val", "best_test")
DEFAULT_NFE = 3  # the paper's FSIG few-step setting; a method measured at one NFE only keeps its own
DEFAULT_GROUP = (
    "benchmark", "dataset", "shots", "method", "selection", "nfe", "metric", "variant", "extractor",
    "ablation",
)

# Paper order of the seed methods; any other method follows in alphabetical order.
METHOD_ORDER = ("ft", "ft_dmd2", "dmd2_ft", "unidad_src", "unidad", "unidad_pre")
# Rows that describe data rather than a trained method: shown for reference, never "best".
REFERENCE_METHODS = ("training_shots", "source_teacher")
# Rows of the paper's tables that have no code in this project (baselines.md).
QUOTED_METHODS = ("ddpm_pa", "crdi", "turbo_pso")

# metric id -> (display name, higher is better (None = no direction), decimals)
METRIC_INFO: dict[str, tuple[str, bool | None, int]] = {
    "fid": ("FID", False, 2),
    "kid": ("KID", False, 4),
    "prdc_precision": ("Precision", True, 3),
    "prdc_recall": ("Recall", True, 3),
    "prdc_density": ("Density", True, 3),
    "prdc_coverage": ("Coverage", True, 3),
    "intra_lpips": ("Intra-LPIPS", True, 3),
    "oracle_in_domain": ("In-domain rate", True, 3),
    "oracle_mode_coverage": ("Mode coverage", True, 3),
    "oracle_tv": ("Mode TV distance", False, 3),
    "speed_images_per_s": ("Images/s", True, 1),
    "speed_s_per_image": ("s/image", False, 4),
}
ORACLE_METRICS = ("oracle_in_domain", "oracle_mode_coverage", "oracle_tv")
SPEED_METRICS = ("speed_images_per_s", "speed_s_per_image")

SELECTION_NOTES = {
    "final": "Checkpoint: the last one of each run.",
    "best_val": "Checkpoint: the best FID against the validation reference (disjoint from the test reference).",
    "best_test": "Checkpoint: the best FID against the test reference itself. Optimistic: chosen on the "
                 "test reference (the official code's rule); shown for comparison only.",
    "all": "Every evaluated checkpoint.",
}
MISSING = "–"


# ------------------------------------------------------------------------------- tidy table input
def _as_text(column: pd.Series) -> pd.Series:
    """Text view of a column: NaN -> "", 10.0 -> "10" (CSV round trips turn ids into floats)."""
    if pd.api.types.is_float_dtype(column):
        integral = column.notna() & (column % 1 == 0)
        text = column.astype(str)
        text[integral] = column[integral].astype("int64").astype(str)
        text[column.isna()] = ""
        return text.astype(object)
    return column.where(column.notna(), "").astype(str).astype(object)


def _as_bool(v: object) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return False
    return bool(v)


def normalise_tidy(tidy: pd.DataFrame) -> pd.DataFrame:
    """A checked copy of a tidy table with every column of TIDY_COLUMNS present and typed."""
    if not isinstance(tidy, pd.DataFrame):
        raise TypeError(f"expected the tidy results table as a pandas DataFrame, got {type(tidy).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in tidy.columns]
    if missing:
        raise ValueError(f"tidy table lacks column(s) {missing}; it needs at least {list(REQUIRED_COLUMNS)} "
                         "(build it with the workflow's results_tidy step)")
    out = tidy.reset_index(drop=True)  # a fresh frame; concatenated inputs may repeat index labels
    for name, default in OPTIONAL_COLUMNS.items():
        if name not in out.columns:
            out[name] = default
    for name in TEXT_COLUMNS:
        out[name] = _as_text(out[name])
    for name in NUMERIC_COLUMNS:
        converted = pd.to_numeric(out[name], errors="coerce")
        bad = converted.isna() & out[name].notna() & (_as_text(out[name]) != "")
        if bad.any():
            raise ValueError(f"tidy column '{name}' holds non-numbers such as {out.loc[bad, name].iloc[0]!r}; "
                             "write numbers (or leave the cell empty)")
        out[name] = converted.astype(float)
    out["final"] = out["final"].map(_as_bool)
    # An ablation written only as "param=value" gets its param/value columns filled in.
    needs_split = (out["ablation"] != "") & (out["ablation_param"] == "")
    if needs_split.any():
        parts = out.loc[needs_split, "ablation"].str.split("=", n=1, expand=True)
        out.loc[needs_split, "ablation_param"] = parts[0].str.strip()
        out.loc[needs_split, "ablation_value"] = parts[1].fillna("").str.strip() if parts.shape[1] > 1 else ""
    return out


def load_tidy(path: str | Path) -> pd.DataFrame:
    """Read results_tidy.csv or .parquet and normalise it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tidy table {path} does not exist; run the workflow's results_tidy step first")
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return normalise_tidy(frame)


def ordered_methods(methods: Iterable[str]) -> list[str]:
    """Methods in paper order, then other methods alphabetically, reference rows last."""
    present = list(dict.fromkeys(methods))
    known = [m for m in METHOD_ORDER if m in present]
    reference = [m for m in REFERENCE_METHODS if m in present]
    others = sorted(m for m in present if m not in known and m not in reference)
    return known + others + reference


def ordered_datasets(tidy: pd.DataFrame) -> list[str]:
    """Datasets in the order they first appear (the workflow writes them in config order)."""
    return list(dict.fromkeys(tidy["dataset"]))


def pipeline_kind(method: str, final_stages: Iterable[str] = ()) -> str:
    """The "single-stage" column: Uni-DAD variants are single-stage; ft only adapts; the rest are two-stage."""
    if method.startswith("unidad") or "unidad" in set(final_stages):
        return "yes"
    if method == "ft":
        return "adaptation only"
    if method in REFERENCE_METHODS:
        return MISSING
    return "no"


def metric_direction(metric: str) -> bool | None:
    """True if higher is better, False if lower is better, None if unknown."""
    return METRIC_INFO.get(metric, (metric, None, 3))[1]


def metric_label(metric: str) -> str:
    """Display name with an arrow pointing to the better direction."""
    name, higher, _ = METRIC_INFO.get(metric, (metric, None, 3))
    arrow = {True: " ↑", False: " ↓", None: ""}[higher]
    return name + arrow


def _decimals(metric: str) -> int:
    return METRIC_INFO.get(metric, (metric, None, 3))[2]


# ------------------------------------------------------------------------------ statistics
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
    return _aggregate(normalise_tidy(tidy), by)


def _aggregate(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
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


# ------------------------------------------------------------------------------ row selection
def _select_checkpoints(frame: pd.DataFrame, selection: str) -> pd.DataFrame:
    """Rows of one checkpoint-selection rule; per method, "final" falls back to the final "all" rows
    and reference rows (training shots) fall back to whatever they have."""
    by_method = frame["method"]
    chosen = frame["selection"] == selection
    if selection == "final":
        fallback = (frame["selection"] == "all") & frame["final"]
        chosen |= fallback & ~chosen.groupby(by_method).transform("any")
    unmatched_reference = by_method.isin(REFERENCE_METHODS) & ~chosen.groupby(by_method).transform("any")
    reference = frame[unmatched_reference]
    reference = reference.drop_duplicates([c for c in frame.columns if c not in ("selection", "step", "final")])
    return pd.concat([frame[chosen], reference]) if len(reference) else frame[chosen]


def _resolve_nfe(frame: pd.DataFrame, nfe: int, group: Sequence[str]) -> pd.DataFrame:
    """Keep one NFE per group: the group's only NFE, else `nfe`."""
    keys = [frame[g] for g in group]
    several = frame["nfe"].groupby(keys, dropna=False).transform("nunique") > 1
    at_nfe = frame["nfe"] == nfe
    lacking = several & ~at_nfe.groupby(keys, dropna=False).transform("any")
    if lacking.any():
        first = frame[lacking].iloc[0]
        label = "/".join(str(first[g]) for g in group if first[g] != "")
        same_group = lacking & np.logical_and.reduce([frame[g] == first[g] for g in group])
        values = sorted(frame.loc[same_group, "nfe"].dropna().unique())
        raise ValueError(f"'{label}' has results at NFE {[int(v) for v in values]} but not at NFE {nfe}; "
                         f"pass nfe= one of those")
    return frame[~several | at_nfe | frame["nfe"].isna()]


def select_rows(tidy: pd.DataFrame, selection: str = "final", *, nfe: int | None = DEFAULT_NFE,
                ablation: str | None = "") -> pd.DataFrame:
    """Rows of one checkpoint selection, one NFE per method, and one ablation ("" = main grid, None = all)."""
    return _select(normalise_tidy(tidy), selection, nfe, ablation)


def _select(frame: pd.DataFrame, selection: str, nfe: int | None, ablation: str | None = "") -> pd.DataFrame:
    if ablation is not None:
        frame = frame[frame["ablation"] == ablation]
    frame = _select_checkpoints(frame, selection)
    if nfe is not None and not frame.empty:
        frame = _resolve_nfe(frame, nfe, ["method", "ablation"])
    return _label_shots(frame)


def _label_shots(frame: pd.DataFrame) -> pd.DataFrame:
    """A dataset run with several shot counts becomes one dataset per count ("near@5shot", the
    paper's naming), so that different shot counts are never averaged together. Whether a dataset
    has several is read from the main grid (the config's `shots`): a shots ablation's rows keep
    their dataset's name, since their ablation value already says the count."""
    shot_counts = frame[frame["ablation"] == ""].groupby("dataset")["shots"].nunique()
    mixed = frame["dataset"].isin(shot_counts[shot_counts > 1].index) & frame["shots"].notna()
    if not mixed.any():
        return frame
    frame = frame.copy()
    frame.loc[mixed, "dataset"] = (frame.loc[mixed, "dataset"] + "@"
                                   + frame.loc[mixed, "shots"].astype(int).astype(str) + "shot")
    return frame


# ------------------------------------------------------------------------------ metric columns
def protocol_text(extractor: str, variant: str) -> str:
    return ", ".join(p for p in (extractor, variant) if p)


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
            name = METRIC_INFO.get(metric, (metric,))[0]
            if name not in names:
                names.append(name)
    return labels, [f"{', '.join(names)}: {text}." for text, names in notes.items()]


# ------------------------------------------------------------------------------ table assembly
def _fmt(value: float, decimals: int) -> str:
    return MISSING if pd.isna(value) else f"{value:.{decimals}f}"


def _cell_text(mean: float, std: float, count: int, decimals: int, full_count: int) -> str:
    if pd.isna(mean):
        return MISSING
    text = _fmt(mean, decimals) if pd.isna(std) else f"{_fmt(mean, decimals)} ± {_fmt(std, decimals)}"
    return text + (f" (n={count})" if count < full_count else "")


def _best_rows(means: pd.Series, higher: bool | None) -> list:
    finite = means.dropna()
    if higher is None or finite.empty:
        return []
    best = finite.max() if higher else finite.min()
    tolerance = 1e-12 * max(1.0, abs(best))
    return list(finite.index[(finite - best).abs() <= tolerance])


def _seed_note(counts: Iterable[int]) -> str:
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


def _stat_table(rows: pd.DataFrame, row_keys: list[str], row_order: list, *, metric_order: Sequence[str],
                datasets: Sequence[str], caption: str, notes: list[str],
                info: Mapping[str, Mapping] | None = None, index_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Pivot rows into (row keys) x (dataset, metric column) cells of mean ± std; mark the best per column."""
    labels, protocol_notes = metric_columns(rows, metric_order)
    rows = rows.assign(column=[labels[k] for k in zip(rows["metric"], rows["extractor"], rows["variant"])])
    stats = _aggregate(rows, row_keys + ["dataset", "metric", "extractor", "variant", "column"])
    columns = [(d, label) for d in datasets for label in dict.fromkeys(labels.values())
               if ((stats["dataset"] == d) & (stats["column"] == label)).any()]
    multi_row = len(row_keys) > 1
    index = pd.MultiIndex.from_tuples(row_order, names=index_names or row_keys) if multi_row \
        else pd.Index(row_order, name=(index_names or row_keys)[0])
    full_count = int(stats["count"].max()) if len(stats) else 0

    cells = pd.DataFrame(MISSING, index=index, columns=pd.MultiIndex.from_tuples(columns), dtype=object)
    records, best_cells = [], []
    for (dataset, label) in columns:
        sub = stats[(stats["dataset"] == dataset) & (stats["column"] == label)]
        metric = sub["metric"].iloc[0]
        row_of = (lambda r: tuple(r[k] for k in row_keys)) if multi_row else (lambda r: r[row_keys[0]])
        means = pd.Series({row_of(r): r["mean"] for _, r in sub.iterrows()}, dtype=float)
        candidates = means[[r for r in means.index if _row_method(r) not in REFERENCE_METHODS]] \
            if len(means) else means
        best = _best_rows(candidates, metric_direction(metric))
        for _, r in sub.iterrows():
            row = row_of(r)
            if row not in cells.index:
                continue
            cells.loc[row, (dataset, label)] = _cell_text(r["mean"], r["std"], int(r["count"]),
                                                          _decimals(metric), full_count)
            is_best = row in best
            if is_best:
                best_cells.append((row, (dataset, label)))
            records.append({**{k: r[k] for k in row_keys}, "dataset": dataset, "metric": metric,
                            "extractor": r["extractor"], "variant": r["variant"], "column": label,
                            "mean": r["mean"], "std": r["std"], "n_seeds": int(r["count"]), "best": is_best})
    if info:
        for position, (name, values) in enumerate(info.items()):
            cells.insert(position, ("", name), [values.get(r, MISSING) for r in cells.index])
    cells.attrs = {
        "caption": caption,
        "notes": [n for n in [_seed_note(stats["count"])] + protocol_notes + notes if n],
        "best_cells": best_cells,
        "stats": records,
    }
    return cells


def _row_method(row) -> str:
    return row[0] if isinstance(row, tuple) else row


def _nfe_text(values: Iterable[float]) -> str:
    found = sorted({int(v) for v in values if not pd.isna(v)})
    return ", ".join(str(v) for v in found) if found else MISSING


def _need_rows(rows: pd.DataFrame, what: str, frame: pd.DataFrame) -> None:
    if rows.empty:
        raise ValueError(f"no rows for {what}; the tidy table has metrics {sorted(set(frame['metric']))}, "
                         f"selections {sorted(set(frame['selection']))}, methods {ordered_methods(frame['method'])}")


def main_table(tidy: pd.DataFrame, metrics: Sequence[str] = ("fid", "intra_lpips"), selection: str = "final",
               *, nfe: int = DEFAULT_NFE, title: str = "Main results") -> pd.DataFrame:
    """The paper's Table 1 layout: methods x (dataset, metric), NFE and single-stage columns.

    Methods evaluated at several NFEs are shown at `nfe`; a method with one NFE (ft: 25) at its own.
    """
    frame = normalise_tidy(tidy)
    rows = _select(frame, selection, nfe)
    rows = rows[rows["metric"].isin(metrics) & ~rows["method"].isin(REFERENCE_METHODS)]
    _need_rows(rows, f"metrics {list(metrics)} with selection '{selection}' in the main grid", frame)
    methods = ordered_methods(rows["method"])
    info = {
        "NFE": {m: _nfe_text(rows.loc[rows["method"] == m, "nfe"]) for m in methods},
        "single-stage": {m: pipeline_kind(m, rows.loc[rows["method"] == m, "stage"]) for m in methods},
    }
    notes = [SELECTION_NOTES.get(selection, f"Checkpoint rule: {selection}.")]
    if "unidad_pre" in methods:
        notes.append("unidad_pre: single-stage Uni-DAD started from available checkpoints (a distilled student and "
                     "an adapted, frozen target teacher; paper Table 6).")
    optimistic = " Optimistic: chosen on the test reference." if selection == "best_test" else ""
    caption = (f"{title} ({selection} checkpoint).{optimistic} "
               "Mean ± std over seeds; best per column in bold.")
    return _stat_table(rows, ["method"], methods, metric_order=metrics, datasets=ordered_datasets(rows),
                       caption=caption, notes=notes, info=info)


def oracle_table(tidy: pd.DataFrame, selection: str = "final", *, nfe: int = DEFAULT_NFE) -> pd.DataFrame:
    """The demo's oracle: in-domain rate, mode coverage and TV distance per method and dataset,
    with the few-shot training set itself as a reference row when present."""
    frame = normalise_tidy(tidy)
    rows = _select(frame, selection, nfe)
    rows = rows[rows["metric"].isin(ORACLE_METRICS)]
    _need_rows(rows, f"oracle metrics {list(ORACLE_METRICS)} with selection '{selection}'", frame)
    methods = ordered_methods(rows["method"])
    info = {"NFE": {m: _nfe_text(rows.loc[rows["method"] == m, "nfe"]) for m in methods}}
    notes = [SELECTION_NOTES.get(selection, f"Checkpoint rule: {selection}.")]
    if set(REFERENCE_METHODS) & set(methods):
        notes.append("training_shots: the few-shot training images themselves (reference, not ranked).")
    return _stat_table(rows, ["method"], methods, metric_order=ORACLE_METRICS, datasets=ordered_datasets(rows),
                       caption=f"Oracle evaluation of the demo domains ({selection} checkpoint).",
                       notes=notes, info=info)


def ablation_params(tidy: pd.DataFrame) -> list[str]:
    """The ablation parameters present in the tidy table."""
    frame = normalise_tidy(tidy)
    return sorted(set(frame["ablation_param"]) - {""})


def _value_sort_key(value: str):
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


MAIN_GRID_LABEL = "main grid"


def ablation_table(tidy: pd.DataFrame, param: str, metrics: Sequence[str] = ("fid", "intra_lpips"),
                   selection: str = "final", *, nfe: int = DEFAULT_NFE) -> pd.DataFrame:
    """Method x ablation value (plus the method's main-grid row) against (dataset, metric)."""
    frame = normalise_tidy(tidy)
    ablated = frame[frame["ablation_param"] == param]
    if ablated.empty:
        raise ValueError(f"no ablation rows with ablation_param == '{param}'; present: {ablation_params(frame) or 'none'}")
    ablated = _select_checkpoints(ablated, selection)
    if "method_nfe" in ablated.columns and ablated["method_nfe"].notna().all():
        # each variant at its own NFE: a student trained for 1 step is shown at 1 step, not at `nfe`
        ablated = ablated[ablated["nfe"] == ablated["method_nfe"]]
    elif nfe is not None and not ablated.empty:
        ablated = _resolve_nfe(ablated, nfe, ["method", "ablation"])
    methods = ordered_methods(ablated["method"])
    main = _select(frame[frame["method"].isin(methods)], selection, nfe)
    main = main.assign(ablation_value=MAIN_GRID_LABEL)
    rows = pd.concat([main, ablated])
    rows = rows[rows["metric"].isin(metrics)]
    _need_rows(rows, f"metrics {list(metrics)} in the '{param}' ablation (selection '{selection}')", frame)
    order = []
    for method in ordered_methods(rows["method"]):
        values = set(rows.loc[rows["method"] == method, "ablation_value"])
        ranked = sorted(values - {MAIN_GRID_LABEL}, key=_value_sort_key)
        order += [(method, v) for v in ([MAIN_GRID_LABEL] if MAIN_GRID_LABEL in values else []) + ranked]
    caption = f"Ablation of {param} ({selection} checkpoint). Mean ± std over seeds; best per column in bold."
    notes = [SELECTION_NOTES.get(selection, f"Checkpoint rule: {selection}."),
             f"'{MAIN_GRID_LABEL}': the method's main-grid run (its default {param}) for reference."]
    return _stat_table(rows, ["method", "ablation_value"], order, metric_order=metrics,
                       datasets=ordered_datasets(rows), caption=caption, notes=notes,
                       index_names=["method", param])


COMPUTE_COLUMNS = {  # tidy column -> (header, scale, decimals)
    "iterations": ("iterations", 1.0, 0),
    "images_seen": ("images seen", 1.0, 0),
    "device_hours": ("device-hours", 1.0, 3),
    "wall_seconds": ("wall-clock hours", 1 / 3600, 3),
}


def compute_table(tidy: pd.DataFrame, selection: str = "final", *, nfe: int = DEFAULT_NFE) -> pd.DataFrame:
    """Training cost per method (totals over all stages; mean ± std over runs = datasets x seeds), and
    the sampling speed at the table's NFE when measured."""
    frame = normalise_tidy(tidy)
    rows = _select(frame, selection, None)
    rows = rows[~rows["method"].isin(REFERENCE_METHODS)]
    _need_rows(rows, f"selection '{selection}' in the main grid", frame)
    # One record per run: the totals repeat on every metric row of the run.
    runs = rows.groupby(["method", "dataset", "seed"], sort=False, dropna=False)[list(COMPUTE_COLUMNS)].max()
    runs = runs.reset_index()
    methods = ordered_methods(runs["method"])
    at_nfe = _select(frame, selection, nfe)
    table = pd.DataFrame(index=pd.Index(methods, name="method"))
    table["NFE"] = [_nfe_text(at_nfe.loc[at_nfe["method"] == m, "nfe"]) for m in methods]
    table["runs"] = [int((runs["method"] == m).sum()) for m in methods]
    records = []
    for column, (header, scale, decimals) in COMPUTE_COLUMNS.items():
        texts = []
        for m in methods:
            values = runs.loc[runs["method"] == m, column].dropna() * scale
            mean, std = (values.mean(), values.std()) if len(values) else (float("nan"), float("nan"))
            records.append({"method": m, "quantity": header, "mean": mean, "std": std, "n_runs": len(values)})
            if pd.isna(mean):
                texts.append(MISSING)
            elif decimals == 0:
                texts.append(f"{mean:,.0f}" + ("" if pd.isna(std) or std == 0 else f" ± {std:,.0f}"))
            else:
                texts.append(_cell_text(mean, std, len(values), decimals, 0))
        if any(t != MISSING for t in texts):
            table[header] = texts
    speed = at_nfe[at_nfe["metric"] == "speed_s_per_image"]
    if not speed.empty:
        texts = []
        for m in methods:
            values = speed.loc[speed["method"] == m, "value"].dropna()
            mean, std = (values.mean(), values.std()) if len(values) else (float("nan"), float("nan"))
            records.append({"method": m, "quantity": "sampling s/image", "mean": mean, "std": std,
                            "n_runs": len(values)})
            texts.append(_cell_text(mean, std, len(values), _decimals("speed_s_per_image"), 0))
        table["sampling s/image"] = texts
    table.attrs = {
        "caption": f"Compute per method ({selection} checkpoint): totals over all stages of a method.",
        "notes": ["Mean ± std over runs (datasets x seeds); 'runs' counts them.",
                  "iterations / images seen / device-hours include every earlier stage of two-stage methods.",
                  f"Sampling speed at the table's NFE (few-step methods at NFE {nfe})."],
        "best_cells": [],
        "stats": records,
    }
    return table


# ------------------------------------------------------------------------------ paper comparison
_DISPUTED = re.compile(r"disagree|one copy says", re.IGNORECASE)


def load_paper_results(path: str | Path | None = None) -> pd.DataFrame:
    """The paper's numbers (every row unverified; see data/PAPER_RESULTS.md)."""
    path = Path(path) if path is not None else PAPER_RESULTS_CSV
    if not path.exists():
        raise FileNotFoundError(f"paper results {path} not found; pass the path of paper_results.csv")
    paper = pd.read_csv(path, dtype={"nfe": str})
    missing = [c for c in ("table", "method", "nfe", "dataset", "metric", "value", "provenance") if c not in paper.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing}; expected the layout of unidad/data/paper_results.csv")
    return paper


def _protocol_differences(rows: pd.DataFrame, paper: pd.DataFrame, selection: str) -> list[str]:
    harness_sets = ordered_datasets(rows)
    paper_sets = list(dict.fromkeys(paper["dataset"]))
    diffs = []
    if set(harness_sets) != set(paper_sets):
        diffs.append(f"Datasets: this harness {', '.join(harness_sets)}; the paper {', '.join(paper_sets)}. "
                     "Where they differ, compare rankings, not values.")
    benchmarks = sorted(set(rows["benchmark"]) - {""})
    if benchmarks:
        diffs.append(f"Benchmark / backbone: {', '.join(benchmarks)} here; the paper uses the FFHQ-256 ADM UNet "
                     "(FSIG) and Stable Diffusion 1.5 (SDP).")
    extractors = sorted(set(rows.loc[rows["metric"] == "fid", "extractor"]) - {""})
    if extractors:
        diffs.append(f"FID features: {', '.join(extractors)} here; the paper reports Inception-v3 FID "
                     "(its exact implementation is not verified).")
    variants = sorted(set(rows.loc[rows["metric"] == "intra_lpips", "variant"]) - {""})
    if variants:
        diffs.append(f"Intra-LPIPS protocol: {', '.join(variants)} here; the official code fed generated images "
                     "in [0, 1] but real ones in [-1, 1] (unidad_method.md).")
    for column, what in (("n_generated", "generated images per evaluation"), ("n_reference", "reference images")):
        values = sorted({int(v) for v in rows[column].dropna()})
        if values:
            diffs.append(f"{what.capitalize()}: {', '.join(map(str, values))} here (the paper's count is not verified).")
    iterations = rows.groupby("method")["iterations"].max().dropna()
    if not iterations.empty:
        diffs.append(f"Training length: {int(iterations.min()):,}-{int(iterations.max()):,} iterations per method "
                     "here; the paper trains 40k iterations at batch 1 (FSIG) and 5k (SDP).")
    seeds = rows.groupby(["method", "dataset", "metric"])["seed"].nunique()
    if not seeds.empty:
        counts = f"{int(seeds.min())}" if seeds.min() == seeds.max() else f"{int(seeds.min())}-{int(seeds.max())}"
        diffs.append(f"Seeds: {counts} per cell here (mean ± std); the paper gives "
                     "single numbers without a spread.")
    diffs.append(f"Checkpoint: '{selection}' here; the official code picks the best FID on the test reference "
                 "(optimistic).")
    return diffs


def paper_comparison(tidy: pd.DataFrame, paper_csv: str | Path | pd.DataFrame | None = None, *,
                     paper_table: str = "T1_fsig", metrics: Sequence[str] = ("fid", "intra_lpips"),
                     selection: str = "final", nfe: int = DEFAULT_NFE) -> pd.DataFrame:
    """The paper's numbers beside this harness's, matched by method id.

    Datasets differ at demo scale, so each dataset gets the paper's column where the paper reports
    it and the harness's where the harness measured it (both, side by side, when the names match).
    """
    paper = paper_csv.copy() if isinstance(paper_csv, pd.DataFrame) else load_paper_results(paper_csv)
    paper = paper[(paper["table"] == paper_table) & paper["metric"].isin(metrics)]
    if paper.empty:
        raise ValueError(f"the paper results have no rows for table '{paper_table}' and metrics {list(metrics)}")
    frame = normalise_tidy(tidy)
    rows = _select(frame, selection, nfe)
    rows = rows[rows["metric"].isin(metrics) & ~rows["method"].isin(REFERENCE_METHODS)]
    labels, protocol_notes = metric_columns(rows, metrics) if not rows.empty else ({}, [])
    stats = _aggregate(rows.assign(column=[labels[k] for k in zip(rows["metric"], rows["extractor"], rows["variant"])]),
                      ["method", "dataset", "metric", "column"]) if not rows.empty else None

    full_count = int(stats["count"].max()) if stats is not None and len(stats) else 0
    methods = ordered_methods(list(paper["method"]) + list(rows["method"]))
    row_names = {m: f"{m} (quoted)" if m in QUOTED_METHODS else m for m in methods}
    columns: list[tuple[str, str]] = []
    values: dict[tuple[str, tuple[str, str]], str] = {}
    records = []
    harness_sets = ordered_datasets(rows) if not rows.empty else []
    for dataset in list(dict.fromkeys(list(paper["dataset"]) + harness_sets)):
        for metric in metrics:
            in_paper = paper[(paper["dataset"] == dataset) & (paper["metric"] == metric)]
            if not in_paper.empty:
                column = (dataset, f"{metric_label(metric)} paper")
                columns.append(column)
                for _, r in in_paper.iterrows():
                    mark = " †" if _DISPUTED.search(str(r["provenance"])) else ""
                    values[(r["method"], column)] = _fmt(r["value"], _decimals(metric)) + mark
                    records.append({"source": "paper", "method": r["method"], "dataset": dataset, "metric": metric,
                                    "column": column[1], "nfe": r["nfe"], "mean": r["value"], "std": np.nan,
                                    "n_seeds": np.nan, "note": r["provenance"]})
            if stats is None:
                continue
            for label in dict.fromkeys(stats.loc[(stats["dataset"] == dataset) & (stats["metric"] == metric), "column"]):
                column = (dataset, f"{label} harness")
                columns.append(column)
                sub = stats[(stats["dataset"] == dataset) & (stats["column"] == label)]
                for _, r in sub.iterrows():
                    values[(r["method"], column)] = _cell_text(r["mean"], r["std"], int(r["count"]),
                                                               _decimals(metric), full_count)
                    records.append({"source": "harness", "method": r["method"], "dataset": dataset, "metric": metric,
                                    "column": column[1], "nfe": "", "mean": r["mean"], "std": r["std"],
                                    "n_seeds": int(r["count"]), "note": ""})
    table = pd.DataFrame(MISSING, index=pd.Index([row_names[m] for m in methods], name="method"),
                         columns=pd.MultiIndex.from_tuples(columns), dtype=object)
    for (method, column), text in values.items():
        table.loc[row_names[method], column] = text
    paper_nfe = paper.groupby("method")["nfe"].agg(lambda s: ", ".join(dict.fromkeys(s.astype(str))))
    table.insert(0, ("", "NFE paper"), [paper_nfe.get(m, MISSING) for m in methods])
    table.insert(1, ("", "NFE harness"), [_nfe_text(rows.loc[rows["method"] == m, "nfe"]) for m in methods])
    notes = ["Paper: Uni-DAD (arXiv 2511.18281), transcribed from secondary copies; every paper number is "
             "unverified. † = the copies disagree (see the provenance column of unidad/data/paper_results.csv).",
             "(quoted): a row the paper quotes from other work; this project has no code for it."]
    if full_count:
        notes.append(_seed_note(stats["count"]).replace("Mean", "Harness: mean", 1))
    notes += protocol_notes
    notes += ["Protocol differences:"] + [f"- {d}" for d in _protocol_differences(rows, paper, selection)]
    table.attrs = {
        "caption": f"This harness beside the paper ({paper_table}; harness: {selection} checkpoint).",
        "notes": notes,
        "best_cells": [],
        "stats": records,
    }
    return table


# ------------------------------------------------------------------------------ writers
def _flat(column) -> str:
    parts = column if isinstance(column, tuple) else (column,)
    return " ".join(str(p) for p in parts if str(p) != "")


def _grid(df: pd.DataFrame) -> tuple[list[str], list[tuple], list[list[str]], list[list[bool]]]:
    """Index header names, column tuples, body cells (index cells first) and the bold mask."""
    index_names = [str(n) if n is not None else "" for n in df.index.names]
    columns = [c if isinstance(c, tuple) else (c,) for c in df.columns]
    best = {(r, c if isinstance(c, tuple) else (c,)) for r, c in df.attrs.get("best_cells", [])}
    body, bold = [], []
    for label, values in zip(df.index, df.itertuples(index=False, name=None)):
        index_cells = [str(v) for v in (label if isinstance(label, tuple) else (label,))]
        body.append(index_cells + ["" if pd.isna(v) else str(v) for v in values])
        bold.append([False] * len(index_cells) + [(label, c) in best for c in columns])
    return index_names, columns, body, bold


def _notes(df: pd.DataFrame) -> list[str]:
    return [str(n) for n in df.attrs.get("notes", [])]


def to_markdown(df: pd.DataFrame, caption: str | None = None) -> str:
    """A pipe table with the caption above, best cells in bold and the footnotes below."""
    caption = caption if caption is not None else df.attrs.get("caption", "")
    index_names, columns, body, bold = _grid(df)
    header = index_names + [_flat(c) for c in columns]

    def cell(text: str, strong: bool) -> str:
        text = text.replace("|", "\\|")
        return f"**{text}**" if strong and text else text

    lines = [f"**{caption}**", ""] if caption else []
    lines.append("| " + " | ".join(cell(h, False) for h in header) + " |")
    aligns = [":---" if i < len(index_names) or not _numeric_column(body, i) else "---:" for i in range(len(header))]
    lines.append("|" + "|".join(aligns) + "|")
    for cells, strong in zip(body, bold):
        lines.append("| " + " | ".join(cell(t, s) for t, s in zip(cells, strong)) + " |")
    notes = _notes(df)
    if notes:
        lines.append("")
        # nested items ("- ...") belong to the note before them (e.g. "Protocol differences:")
        lines += [f"  {n}" if n.startswith("- ") else f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


_LATEX_MAP = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "±": r"$\pm$", "↓": r"$\downarrow$", "↑": r"$\uparrow$", "†": r"\textsuperscript{\dag}", "–": "--", "—": "---",
    "Δ": r"$\Delta$", "−": "$-$", "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$", "…": r"\dots{}",
    "→": r"$\rightarrow$", "·": r"$\cdot$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials in one pass (so replacements are never escaped again); non-ASCII
    characters without a LaTeX form become '?'."""
    out = []
    for ch in str(text):
        if ch in _LATEX_MAP:
            out.append(_LATEX_MAP[ch])
        elif ord(ch) < 128:
            out.append(ch)
        else:
            out.append("?")
    return "".join(out)


def _numeric_column(body: list[list[str]], i: int) -> bool:
    return all(re.match(r"^[-+0-9.,–]", row[i] or MISSING) for row in body)


def _column_spec(body: list[list[str]], n_index: int) -> str:
    widths = [max((len(row[i]) for row in body), default=0) for i in range(len(body[0]))] if body else []
    long_columns = [i for i, w in enumerate(widths) if w > 40]
    total = sum(widths[i] for i in long_columns) or 1
    spec = []
    for i, width in enumerate(widths):
        if i in long_columns:  # paragraph columns share 60% of the line, none narrower than 15%
            share = max(0.15, 0.6 * width / total)
            spec.append(f"p{{{share:.2f}\\linewidth}}")
        elif i < n_index:
            spec.append("l")
        else:
            spec.append("r" if _numeric_column(body, i) else "l")
    return "".join(spec)


def _font_size(n_columns: int) -> str:
    return r"\small" if n_columns <= 7 else r"\footnotesize" if n_columns <= 10 else r"\scriptsize"


def to_latex(df: pd.DataFrame, caption: str | None = None, label: str | None = None) -> str:
    """A booktabs table float (caption, label, tabular, footnotes) that compiles with pdflatex.

    A tabular wider than the text is scaled down to the line width when the document loads graphicx
    (and left as it is otherwise, so the table compiles with booktabs alone).
    """
    caption = caption if caption is not None else df.attrs.get("caption", "")
    index_names, columns, body, bold = _grid(df)
    n_index = len(index_names)
    lines = [r"\begin{table}[htbp]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines.append(r"\setlength{\tabcolsep}{4pt}" + _font_size(n_index + len(columns)))
    lines.append(r"\sbox0{\begin{tabular}{" + (_column_spec(body, n_index) or "l") + "}")
    lines.append(r"\toprule")
    if any(len(c) > 1 for c in columns):
        groups: list[tuple[str, int, int]] = []  # (group, first column, last column), 1-based
        for position, column in enumerate(columns, start=n_index + 1):
            name = column[0] if len(column) > 1 else ""
            if groups and groups[-1][0] == name:
                groups[-1] = (name, groups[-1][1], position)
            else:
                groups.append((name, position, position))
        top = [""] * n_index
        rules = []
        for name, first, last in groups:
            if not name:
                top += [""] * (last - first + 1)
                continue
            top.append(rf"\multicolumn{{{last - first + 1}}}{{c}}{{{latex_escape(name)}}}")
            rules.append(rf"\cmidrule(lr){{{first}-{last}}}")
        lines.append(" & ".join(top) + r" \\")
        lines.append("".join(rules))
        second = [latex_escape(h) for h in index_names] + [latex_escape(c[-1]) for c in columns]
    else:
        second = [latex_escape(h) for h in index_names] + [latex_escape(_flat(c)) for c in columns]
    lines.append(" & ".join(second) + r" \\")
    lines.append(r"\midrule")
    for cells, strong in zip(body, bold):
        rendered = [rf"\textbf{{{latex_escape(t)}}}" if s and t else latex_escape(t) for t, s in zip(cells, strong)]
        lines.append(" & ".join(rendered) + r" \\")
    lines.append(r"\bottomrule")
    lines.append(r"\end{tabular}}%")
    lines.append(r"\ifdim\wd0>\linewidth\ifdefined\resizebox\resizebox{\linewidth}{!}{\usebox0}"
                 r"\else\usebox0\fi\else\usebox0\fi")
    notes = _notes(df)
    if notes:
        lines.append(r"\par\smallskip")
        lines.append(r"\begin{minipage}{\linewidth}\footnotesize")
        lines.append(" \\\\\n".join(latex_escape(n) for n in notes))
        lines.append(r"\end{minipage}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Machine-readable CSV: one row per cell (mean, std, seed count, best) when the table carries
    statistics, else the displayed table with flattened column names."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if df.attrs.get("stats"):
        pd.DataFrame(df.attrs["stats"]).to_csv(path, index=False)
    else:
        flat = df.copy()
        flat.attrs = {}
        flat.columns = [_flat(c) for c in flat.columns]
        flat.to_csv(path, index=flat.index.name is not None or isinstance(flat.index, pd.MultiIndex))
    return path


# ------------------------------------------------------------------------------ everything
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "table"


def _write_table(df: pd.DataFrame, out_dir: Path, name: str) -> list[Path]:
    label = f"tab:{name}"
    paths = [out_dir / f"{name}.md", out_dir / f"{name}.tex", out_dir / f"{name}.csv"]
    paths[0].write_text(to_markdown(df), encoding="utf-8")
    paths[1].write_text(to_latex(df, label=label), encoding="utf-8")
    to_csv(df, paths[2])
    return paths


def write_all_tables(tidy: pd.DataFrame, out_dir: str | Path, *, far_datasets: Sequence[str] = (),
                     paper_csv: str | Path | None = None, nfe: int = DEFAULT_NFE) -> list[Path]:
    """Every table the data allows, each as .md, .tex and .csv, plus all_tables.md (all of them in
    reading order). Tables whose data is absent are skipped with a log message."""
    from unidad.claims import evaluate_claims  # claims builds on this module

    frame = normalise_tidy(tidy)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables: list[tuple[str, pd.DataFrame]] = []

    def attempt(name: str, build) -> None:
        try:
            tables.append((name, build()))
        except ValueError as err:
            log.info("table %s skipped: %s", name, err)

    present = set(frame["selection"])
    selections = [s for s in SELECTIONS if s in present] or ["final"]
    quality = [m for m in METRIC_INFO if m not in ORACLE_METRICS + SPEED_METRICS and m in set(frame["metric"])]
    extra = [m for m in sorted(set(frame["metric"])) if m not in METRIC_INFO]
    for selection in selections:
        attempt(f"main_{selection}", lambda s=selection: main_table(frame, selection=s, nfe=nfe))
    attempt("all_metrics_final", lambda: main_table(frame, metrics=quality + extra, nfe=nfe,
                                                            title="All quality metrics"))
    attempt("oracle_final", lambda: oracle_table(frame, nfe=nfe))
    attempt("compute_final", lambda: compute_table(frame, nfe=nfe))
    for param in ablation_params(frame):
        metrics = ("fid", "intra_lpips") + tuple(m for m in ("oracle_mode_coverage",) if m in set(frame["metric"]))
        attempt(f"ablation_{_slug(param)}", lambda p=param, ms=metrics: ablation_table(frame, p, ms, nfe=nfe))
    attempt("paper_comparison", lambda: paper_comparison(frame, paper_csv, nfe=nfe))
    attempt("claims", lambda: claims_as_table(evaluate_claims(frame, far_datasets=far_datasets, nfe=nfe)))

    paths: list[Path] = []
    combined = []
    for name, table in tables:
        paths += _write_table(table, out_dir, name)
        combined.append(f"## {name}\n\n" + to_markdown(table))
    index = out_dir / "all_tables.md"
    index.write_text("# Results tables\n\n" + "\n".join(combined), encoding="utf-8")
    return paths + [index]


def claims_as_table(claims: pd.DataFrame) -> pd.DataFrame:
    """The claims frame indexed by claim number, ready for the writers."""
    table = claims.set_index("claim_id")
    table.index.name = "#"
    table.attrs = {
        "caption": "The paper's claims checked on this harness's numbers (comparison of means).",
        "notes": ["held / not held compares means; 'beyond_pooled_std' says whether every difference exceeds "
                  "one pooled std of the two groups compared.", *claims.attrs.get("notes", [])],
        "best_cells": [],
        "stats": [],
    }
    return table
