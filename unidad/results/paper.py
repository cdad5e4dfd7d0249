"""The paper's numbers (unidad/data/paper_results.csv) and the table that puts them beside this harness's."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from unidad.results.aggregate import aggregate_normalised
from unidad.results.display import MISSING, cell_text, decimals, fmt, metric_columns, metric_label, nfe_text, seed_note
from unidad.results.methods import MethodCatalogue, catalogue
from unidad.results.schema import normalise_tidy, ordered_datasets
from unidad.results.select import DEFAULT_NFE, select_normalised

PAPER_RESULTS_CSV = Path(__file__).resolve().parent.parent / "data" / "paper_results.csv"
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
                     selection: str = "final", nfe: int = DEFAULT_NFE,
                     methods: MethodCatalogue | None = None) -> pd.DataFrame:
    """The paper's numbers beside this harness's, matched by method id.

    Datasets differ at demo scale, so each dataset gets the paper's column where the paper reports
    it and the harness's where the harness measured it (both, side by side, when the names match).
    """
    methods = catalogue(methods)
    paper = paper_csv.copy() if isinstance(paper_csv, pd.DataFrame) else load_paper_results(paper_csv)
    paper = paper[(paper["table"] == paper_table) & paper["metric"].isin(metrics)]
    if paper.empty:
        raise ValueError(f"the paper results have no rows for table '{paper_table}' and metrics {list(metrics)}")
    frame = normalise_tidy(tidy)
    rows = select_normalised(frame, selection, nfe, methods=methods)
    rows = rows[rows["metric"].isin(metrics) & ~rows["method"].isin(methods.references)]
    labels, protocol_notes = metric_columns(rows, metrics) if not rows.empty else ({}, [])
    stats = None
    if not rows.empty:
        columns_of_rows = [labels[k] for k in zip(rows["metric"], rows["extractor"], rows["variant"])]
        stats = aggregate_normalised(rows.assign(column=columns_of_rows), ["method", "dataset", "metric", "column"])

    full_count = int(stats["count"].max()) if stats is not None and len(stats) else 0
    shown = methods.ordered(list(paper["method"]) + list(rows["method"]))
    row_names = {m: f"{m} (quoted)" if methods.is_quoted(m) else m for m in shown}
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
                    values[(r["method"], column)] = fmt(r["value"], decimals(metric)) + mark
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
                    values[(r["method"], column)] = cell_text(r["mean"], r["std"], int(r["count"]),
                                                              decimals(metric), full_count)
                    records.append({"source": "harness", "method": r["method"], "dataset": dataset, "metric": metric,
                                    "column": column[1], "nfe": "", "mean": r["mean"], "std": r["std"],
                                    "n_seeds": int(r["count"]), "note": ""})
    table = pd.DataFrame(MISSING, index=pd.Index([row_names[m] for m in shown], name="method"),
                         columns=pd.MultiIndex.from_tuples(columns), dtype=object)
    for (method, column), text in values.items():
        table.loc[row_names[method], column] = text
    paper_nfe = paper.groupby("method")["nfe"].agg(lambda s: ", ".join(dict.fromkeys(s.astype(str))))
    table.insert(0, ("", "NFE paper"), [paper_nfe.get(m, MISSING) for m in shown])
    table.insert(1, ("", "NFE harness"), [nfe_text(rows.loc[rows["method"] == m, "nfe"]) for m in shown])
    notes = ["Paper: Uni-DAD (arXiv 2511.18281), transcribed from secondary copies; every paper number is "
             "unverified. † = the copies disagree (see the provenance column of unidad/data/paper_results.csv).",
             "(quoted): a row the paper quotes from other work; this project has no code for it."]
    if full_count:
        notes.append(seed_note(stats["count"]).replace("Mean", "Harness: mean", 1))
    notes += protocol_notes
    notes += ["Protocol differences:"] + [f"- {d}" for d in _protocol_differences(rows, paper, selection)]
    table.attrs = {
        "caption": f"This harness beside the paper ({paper_table}; harness: {selection} checkpoint).",
        "notes": notes,
        "best_cells": [],
        "stats": records,
    }
    return table
