"""The paper's tables, built from the tidy results table.

Every table is a pivot of the tidy table: rows = methods (or method x ablation value), columns =
(dataset, metric), cells = mean ± std over seeds. Numbers measured with different feature
extractors or protocol variants never share a column: when one metric was measured in several
ways, each way gets its own column, labelled with the extractor id and variant.

A table is a DataFrame of display strings; its `attrs` carry what the writers need: "caption",
"notes" (footnotes), "best_cells" ((row label, column label) pairs to print in bold) and "stats"
(one record per cell with mean, std, seed count; what `to_csv` writes). Which methods exist, their
order and which rows are references come from a MethodCatalogue (default: config/methods.yaml).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

import unidad.metrics  # noqa: F401  (registers the built-in metrics)
from unidad.metrics.registry import value_names
from unidad.results.aggregate import aggregate_normalised
from unidad.results.display import (
    MISSING,
    best_rows,
    cell_text,
    decimals,
    evaluation_protocol_note,
    metric_columns,
    metric_direction,
    nfe_text,
    seed_note,
)
from unidad.results.methods import MethodCatalogue, catalogue
from unidad.results.schema import normalise_tidy, ordered_datasets
from unidad.results.select import DEFAULT_NFE, resolve_nfe, select_checkpoints, select_normalised

SELECTION_NOTES = {
    "final": "Checkpoint: the last one of each run.",
    "best_val": "Checkpoint: the best FID against the validation reference (disjoint from the test reference).",
    "best_test": "Checkpoint: the best FID against the test reference itself. Optimistic: chosen on the "
                 "test reference (the official code's rule); shown for comparison only.",
    "all": "Every evaluated checkpoint.",
}
MAIN_GRID_LABEL = "main grid"
COMPUTE_COLUMNS = {  # tidy column -> (header, scale, decimals)
    "iterations": ("iterations", 1.0, 0),
    "images_seen": ("images seen", 1.0, 0),
    "device_hours": ("device-hours", 1.0, 3),
    "wall_seconds": ("wall-clock hours", 1 / 3600, 3),
}


def _stat_table(rows: pd.DataFrame, row_keys: list[str], row_order: list, *, metric_order: Sequence[str],
                datasets: Sequence[str], caption: str, notes: list[str], methods: MethodCatalogue,
                info: Mapping[str, Mapping] | None = None, index_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Pivot rows into (row keys) x (dataset, metric column) cells of mean ± std; mark the best per column."""
    labels, protocol_notes = metric_columns(rows, metric_order)
    rows = rows.assign(column=[labels[k] for k in zip(rows["metric"], rows["extractor"], rows["variant"])])
    stats = aggregate_normalised(rows, row_keys + ["dataset", "metric", "extractor", "variant", "column"])
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
        candidates = means[[r for r in means.index if not methods.is_reference(_row_method(r))]] \
            if len(means) else means
        best = best_rows(candidates, metric_direction(metric))
        for _, r in sub.iterrows():
            row = row_of(r)
            if row not in cells.index:
                continue
            cells.loc[row, (dataset, label)] = cell_text(r["mean"], r["std"], int(r["count"]),
                                                         decimals(metric), full_count)
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
        "notes": [n for n in [seed_note(stats["count"])] + [evaluation_protocol_note(rows)] + protocol_notes + notes if n],
        "best_cells": best_cells,
        "stats": records,
    }
    return cells


def _row_method(row) -> str:
    return row[0] if isinstance(row, tuple) else row


def need_rows(rows: pd.DataFrame, what: str, frame: pd.DataFrame, methods: MethodCatalogue) -> None:
    """Raise a ValueError that says what the table has when the rows a table needs are absent."""
    if rows.empty:
        raise ValueError(f"no rows for {what}; the tidy table has metrics {sorted(set(frame['metric']))}, "
                         f"selections {sorted(set(frame['selection']))}, "
                         f"methods {methods.ordered(frame['method'])}")


def _without_references(rows: pd.DataFrame, methods: MethodCatalogue) -> pd.DataFrame:
    return rows[~rows["method"].isin(methods.references)]


def main_table(tidy: pd.DataFrame, metrics: Sequence[str] = ("fid", "intra_lpips"), selection: str = "final",
               *, nfe: int = DEFAULT_NFE, title: str = "Main results",
               methods: MethodCatalogue | None = None) -> pd.DataFrame:
    """The paper's Table 1 layout: methods x (dataset, metric), NFE and single-stage columns.

    Methods evaluated at several NFEs are shown at `nfe`; a method with one NFE (ft: 25) at its own.
    """
    methods = catalogue(methods)
    frame = normalise_tidy(tidy)
    rows = select_normalised(frame, selection, nfe, methods=methods)
    rows = _without_references(rows[rows["metric"].isin(metrics)], methods)
    need_rows(rows, f"metrics {list(metrics)} with selection '{selection}' in the main grid", frame, methods)
    shown = methods.ordered(rows["method"])
    info = {
        "NFE": {m: nfe_text(rows.loc[rows["method"] == m, "nfe"]) for m in shown},
        "single-stage": {m: methods.single_stage(m) or MISSING for m in shown},
    }
    notes = [SELECTION_NOTES.get(selection, f"Checkpoint rule: {selection}.")]
    notes += [f"{m}: {methods.note(m)}" for m in shown if methods.note(m)]
    optimistic = " Optimistic: chosen on the test reference." if selection == "best_test" else ""
    caption = (f"{title} ({selection} checkpoint).{optimistic} "
               "Mean ± std over seeds; best per column in bold.")
    return _stat_table(rows, ["method"], shown, metric_order=metrics, datasets=ordered_datasets(rows),
                       caption=caption, notes=notes, methods=methods, info=info)


def oracle_table(tidy: pd.DataFrame, selection: str = "final", *, nfe: int = DEFAULT_NFE,
                 methods: MethodCatalogue | None = None) -> pd.DataFrame:
    """The demo's oracle: in-domain rate, mode coverage and TV distance per method and dataset,
    with the few-shot training set itself as a reference row when present."""
    methods = catalogue(methods)
    oracle_metrics = value_names("oracle")
    frame = normalise_tidy(tidy)
    rows = select_normalised(frame, selection, nfe, methods=methods)
    rows = rows[rows["metric"].isin(oracle_metrics)]
    need_rows(rows, f"oracle metrics {list(oracle_metrics)} with selection '{selection}'", frame, methods)
    shown = methods.ordered(rows["method"])
    info = {"NFE": {m: nfe_text(rows.loc[rows["method"] == m, "nfe"]) for m in shown}}
    notes = [SELECTION_NOTES.get(selection, f"Checkpoint rule: {selection}.")]
    if any(methods.is_reference(m) for m in shown):
        notes.append("training_shots: the few-shot training images themselves (reference, not ranked).")
    return _stat_table(rows, ["method"], shown, metric_order=oracle_metrics, datasets=ordered_datasets(rows),
                       caption=f"Oracle evaluation of the demo domains ({selection} checkpoint).",
                       notes=notes, methods=methods, info=info)


def ablation_params(tidy: pd.DataFrame) -> list[str]:
    """The ablation parameters present in the tidy table."""
    frame = normalise_tidy(tidy)
    return sorted(set(frame["ablation_param"]) - {""})


def _value_sort_key(value: str):
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def ablation_table(tidy: pd.DataFrame, param: str, metrics: Sequence[str] = ("fid", "intra_lpips"),
                   selection: str = "final", *, nfe: int = DEFAULT_NFE,
                   methods: MethodCatalogue | None = None) -> pd.DataFrame:
    """Method x ablation value (plus the method's main-grid row) against (dataset, metric)."""
    methods = catalogue(methods)
    frame = normalise_tidy(tidy)
    ablated = frame[frame["ablation_param"] == param]
    if ablated.empty:
        raise ValueError(f"no ablation rows with ablation_param == '{param}'; present: {ablation_params(frame) or 'none'}")
    ablated = select_checkpoints(ablated, selection, methods)
    if "method_nfe" in ablated.columns and ablated["method_nfe"].notna().all():
        # each variant at its own NFE: a student trained for 1 step is shown at 1 step, not at `nfe`
        ablated = ablated[ablated["nfe"] == ablated["method_nfe"]]
    elif nfe is not None and not ablated.empty:
        ablated = resolve_nfe(ablated, nfe, ["method", "ablation"])
    ablated_methods = methods.ordered(ablated["method"])
    main = select_normalised(frame[frame["method"].isin(ablated_methods)], selection, nfe, methods=methods)
    main = main.assign(ablation_value=MAIN_GRID_LABEL)
    rows = pd.concat([main, ablated])
    rows = rows[rows["metric"].isin(metrics)]
    need_rows(rows, f"metrics {list(metrics)} in the '{param}' ablation (selection '{selection}')", frame, methods)
    order = []
    for method in methods.ordered(rows["method"]):
        values = set(rows.loc[rows["method"] == method, "ablation_value"])
        ranked = sorted(values - {MAIN_GRID_LABEL}, key=_value_sort_key)
        order += [(method, v) for v in ([MAIN_GRID_LABEL] if MAIN_GRID_LABEL in values else []) + ranked]
    caption = f"Ablation of {param} ({selection} checkpoint). Mean ± std over seeds; best per column in bold."
    notes = [SELECTION_NOTES.get(selection, f"Checkpoint rule: {selection}."),
             f"'{MAIN_GRID_LABEL}': the method's main-grid run (its default {param}) for reference."]
    return _stat_table(rows, ["method", "ablation_value"], order, metric_order=metrics,
                       datasets=ordered_datasets(rows), caption=caption, notes=notes, methods=methods,
                       index_names=["method", param])


def _mean_std(values: pd.Series) -> tuple[float, float]:
    return (values.mean(), values.std()) if len(values) else (float("nan"), float("nan"))


def compute_table(tidy: pd.DataFrame, selection: str = "final", *, nfe: int = DEFAULT_NFE,
                  methods: MethodCatalogue | None = None) -> pd.DataFrame:
    """Training cost per method (totals over all stages; mean ± std over runs = datasets x seeds), and
    the sampling speed at the table's NFE when measured."""
    methods = catalogue(methods)
    frame = normalise_tidy(tidy)
    rows = _without_references(select_normalised(frame, selection, None, methods=methods), methods)
    need_rows(rows, f"selection '{selection}' in the main grid", frame, methods)
    # One record per run: the totals repeat on every metric row of the run.
    runs = rows.groupby(["method", "dataset", "seed"], sort=False, dropna=False)[list(COMPUTE_COLUMNS)].max()
    runs = runs.reset_index()
    shown = methods.ordered(runs["method"])
    at_nfe = select_normalised(frame, selection, nfe, methods=methods)
    table = pd.DataFrame(index=pd.Index(shown, name="method"))
    table["NFE"] = [nfe_text(at_nfe.loc[at_nfe["method"] == m, "nfe"]) for m in shown]
    table["runs"] = [int((runs["method"] == m).sum()) for m in shown]
    records = []
    for column, (header, scale, digits) in COMPUTE_COLUMNS.items():
        texts = []
        for m in shown:
            values = runs.loc[runs["method"] == m, column].dropna() * scale
            mean, std = _mean_std(values)
            records.append({"method": m, "quantity": header, "mean": mean, "std": std, "n_runs": len(values)})
            if pd.isna(mean):
                texts.append(MISSING)
            elif digits == 0:
                texts.append(f"{mean:,.0f}" + ("" if pd.isna(std) or std == 0 else f" ± {std:,.0f}"))
            else:
                texts.append(cell_text(mean, std, len(values), digits, 0))
        if any(t != MISSING for t in texts):
            table[header] = texts
    speed = at_nfe[at_nfe["metric"] == "speed_s_per_image"]
    if not speed.empty:
        texts = []
        for m in shown:
            values = speed.loc[speed["method"] == m, "value"].dropna()
            mean, std = _mean_std(values)
            records.append({"method": m, "quantity": "sampling s/image", "mean": mean, "std": std,
                            "n_runs": len(values)})
            texts.append(cell_text(mean, std, len(values), decimals("speed_s_per_image"), 0))
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
