"""The text-conditioned (SDP) benchmark's claims and its comparison with the paper's Table 3.

Claims (as the FSIG claims of unidad.results.claims, decided beyond `min_se` standard errors of the
difference of means over seeds, else undecided): Uni-DAD against each two-stage pipeline at 1 NFE on
subject fidelity and on prompt fidelity, and on diversity against Adapt-then-Distill (ft_dmd2). A
seed's number is the mean over subjects (one model per subject), as in Table 3.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from unidad.results.claims import DEFAULT_MIN_SE, TWO_STAGE_METHODS, COLUMNS, Comparison, Group, _not_tested, _row
from unidad.results.display import MISSING, cell_text, decimals, fmt, metric_label, nfe_text, seed_note
from unidad.results.methods import MethodCatalogue, catalogue
from unidad.results.paper import _DISPUTED, load_paper_results
from unidad.results.schema import normalise_tidy, ordered_datasets
from unidad.results.sdp_tables import (
    ALL_SUBJECTS,
    DIVERSITY,
    ORACLE_CONTEXT,
    ORACLE_SUBJECT,
    PAPER_METRIC,
    PROMPT_FIDELITY,
    SUBJECT_FIDELITY,
    sdp_rows,
    sdp_values,
    seed_stats,
    subject_means,
)

UNIDAD, ADAPT_THEN_DISTILL = "unidad", "ft_dmd2"
SDP_CLAIMS = {
    "SDP-1": "Uni-DAD beats {rival} at one step on subject fidelity ({values})",
    "SDP-2": "Uni-DAD beats {rival} at one step on prompt fidelity ({values})",
    "SDP-3": "Uni-DAD is more diverse than Adapt-then-Distill (ft_dmd2) at one step ({values})",
}
PAPER_TABLE = "T3_sdp"


def _groups(rows: pd.DataFrame) -> dict[tuple[str, str], Group]:
    stats = seed_stats(subject_means(rows))
    return {(r["method"], r["metric"]): Group(r["method"], float(r["mean"]), float(r["std"]), int(r["count"]))
            for _, r in stats.iterrows() if not pd.isna(r["mean"])}


def _claim(claim_id: str, rival: str, values: Sequence[str], groups: dict, where: str, min_se: float) -> dict:
    labels = ", ".join(metric_label(v) for v in values)
    text = SDP_CLAIMS[claim_id].format(rival=rival, values=labels or "none measured")
    if not values:
        return _not_tested(claim_id, text, "no such value measured on this benchmark", where)
    comparisons, missing = [], []
    for value in values:
        ours, theirs = groups.get((UNIDAD, value)), groups.get((rival, value))
        if ours is None or theirs is None:
            missing.append(f"{value} of {UNIDAD if ours is None else rival}")
        else:
            comparisons.append(Comparison(value, "", ours, theirs))
    return _row(claim_id, text, where, comparisons, missing, min_se)


def evaluate_sdp_claims(tidy: pd.DataFrame, prompted: Sequence[str], *, selection: str = "final",
                        methods: MethodCatalogue | None = None, min_se: float = DEFAULT_MIN_SE) -> pd.DataFrame:
    """One row per SDP claim and rival (the claims table's COLUMNS)."""
    methods = catalogue(methods)
    rows = sdp_rows(normalise_tidy(tidy), prompted, methods, selection)
    if rows.empty:
        raise ValueError(f"no rows on the prompted targets {list(prompted)} (selection '{selection}')")
    present = set(rows["metric"])
    subject = [v for v in (*SUBJECT_FIDELITY, ORACLE_SUBJECT) if v in present]
    prompt = [v for v in (*PROMPT_FIDELITY, ORACLE_CONTEXT) if v in present]
    diversity = [v for v in DIVERSITY if v in present]
    groups = _groups(rows[rows["metric"].isin([*subject, *prompt, *diversity])])
    where = f"{ALL_SUBJECTS} ({len(ordered_datasets(rows))})"
    out = [_claim(cid, rival, values, groups, where, min_se)
           for cid, values in (("SDP-1", subject), ("SDP-2", prompt)) for rival in TWO_STAGE_METHODS]
    out.append(_claim("SDP-3", ADAPT_THEN_DISTILL, diversity, groups, where, min_se))
    claims = pd.DataFrame(out, columns=list(COLUMNS))
    claims.attrs = {"notes": [f"Checkpoint: {selection}; each method at its own NFE (1 for the one-step methods). A seed's number is "
                              "the mean over subjects; the verdict compares those over seeds."],
                    "min_se": min_se}
    return claims



# ------------------------------------------------------------------------------ the paper's Table 3
def _protocol_differences(rows: pd.DataFrame, measured: Sequence[str], ft_nfe: str) -> list[str]:
    subjects = ordered_datasets(rows)
    diffs = [f"Subjects: {len(subjects)} here ({', '.join(subjects)}); the paper: the 30 DreamBench subjects, "
             "25 prompts each, 4 images per prompt."]
    benchmarks = sorted(set(rows["benchmark"]) - {""})
    if benchmarks:
        diffs.append(f"Benchmark / backbone: {', '.join(benchmarks)} here; the paper: Stable Diffusion 1.5 at 512.")
    generated = sorted({int(v) for v in rows["n_generated"].dropna() if v > 0})
    if generated:
        diffs.append(f"Generated images per subject: {', '.join(map(str, generated))} here; the paper's: 100 "
                     "(25 prompts x 4).")
    iterations = rows.groupby("method")["iterations"].max().dropna()
    if not iterations.empty and iterations.max() > 0:
        diffs.append(f"Training length: {int(iterations.min()):,}-{int(iterations.max()):,} iterations per method "
                     "here; the paper's SDP runs: 5k.")
    seeds = rows.groupby(["method", "metric"])["seed"].nunique()
    if not seeds.empty:
        counts = f"{int(seeds.min())}" if seeds.min() == seeds.max() else f"{int(seeds.min())}-{int(seeds.max())}"
        diffs.append(f"Seeds: {counts} per cell here (mean ± std of the mean over "
                     "subjects); the paper gives single numbers without a spread.")
    diffs.append(f"DreamBooth (ft): 2x50 NFE in the paper (50 steps, CFG doubles each); NFE {ft_nfe} here.")
    if any(v in measured for v in DIVERSITY):
        diffs.append("Intra-/Inter-LPIPS: the paper gives no definition; this project's (metric sdp_diversity).")
    variants = sorted(set(rows.loc[rows["metric"] == "clip_t", "variant"]) - {""})
    if variants:
        diffs.append(f"CLIP-T prompt: {', '.join(variants)} here.")
    return diffs


def sdp_paper_comparison(tidy: pd.DataFrame, prompted: Sequence[str], paper_csv: str | Path | pd.DataFrame | None = None,
                         *, selection: str = "final", methods: MethodCatalogue | None = None) -> pd.DataFrame:
    """The paper's Table 3 rows beside this harness's (mean over subjects, mean ± std over seeds), with the
    protocol differences; where the benchmark measured only demo metrics, the paper's rows alone and a
    note that the demo metrics are not the paper's."""
    methods = catalogue(methods)
    paper = paper_csv.copy() if isinstance(paper_csv, pd.DataFrame) else load_paper_results(paper_csv)
    paper = paper[paper["table"] == PAPER_TABLE]
    if paper.empty:
        raise ValueError(f"the paper results have no rows for table '{PAPER_TABLE}'")
    rows = sdp_rows(normalise_tidy(tidy), prompted, methods, selection)
    rows = rows[~rows["method"].isin(methods.references)]
    measured = [v for v in PAPER_METRIC if (rows["metric"] == v).any()]
    stats = seed_stats(subject_means(rows[rows["metric"].isin(measured)]))
    full_count = int(stats["count"].max()) if len(stats) else 0
    shown = methods.ordered(list(paper["method"]) + list(stats["method"]))
    names = {m: f"{m} (quoted)" if methods.is_quoted(m) else m for m in shown}
    table = pd.DataFrame(index=pd.Index([names[m] for m in shown], name="method"))
    paper_nfe = paper.groupby("method")["nfe"].agg(lambda s: ", ".join(dict.fromkeys(s.astype(str))))
    table[("", "NFE paper")] = [paper_nfe.get(m, MISSING) for m in shown]
    table[("", "NFE harness")] = [nfe_text(rows.loc[rows["method"] == m, "nfe"]) for m in shown]
    records = []
    for value, paper_metric in PAPER_METRIC.items():
        label = metric_label(value)
        in_paper = paper[paper["metric"] == paper_metric]
        texts = {}
        for _, r in in_paper.iterrows():
            texts[r["method"]] = fmt(r["value"], decimals(value)) + (" †" if _DISPUTED.search(str(r["provenance"])) else "")
            records.append({"source": "paper", "method": r["method"], "metric": value, "mean": r["value"],
                            "std": np.nan, "n_seeds": np.nan, "note": r["provenance"]})
        table[(label, "paper")] = [texts.get(m, MISSING) for m in shown]
        if value not in measured:
            continue
        texts = {}
        for _, r in stats[stats["metric"] == value].iterrows():
            texts[r["method"]] = cell_text(r["mean"], r["std"], int(r["count"]), decimals(value), full_count)
            records.append({"source": "harness", "method": r["method"], "metric": value, "mean": r["mean"],
                            "std": r["std"], "n_seeds": int(r["count"]), "note": ""})
        table[(label, "harness")] = [texts.get(m, MISSING) for m in shown]
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    notes = ["Paper: Uni-DAD (arXiv 2511.18281) Table 3, transcribed from secondary copies; every paper number is "
             "unverified. † = the copies disagree (see the provenance column of unidad/data/paper_results.csv).",
             "(quoted): a row the paper quotes from other work; this project has no code for it."]
    if not measured:
        demo = [metric_label(v) for v in sdp_values(rows)]
        notes.append("No harness column: this benchmark measured " + (", ".join(demo) or "nothing comparable")
                     + ", demo metrics that are not the paper's (DINO, CLIP-I, CLIP-T, Intra-/Inter-LPIPS on "
                     "DreamBench); compare nothing but the layout.")
    elif full_count:
        notes.append(seed_note(stats["count"]).replace("Mean", "Harness: mean", 1))
    ft_nfe = nfe_text(rows.loc[rows["method"] == "ft", "nfe"])
    notes += ["Protocol differences:"] + [f"- {d}" for d in _protocol_differences(rows, measured, ft_nfe)]
    table.attrs = {"caption": f"This harness beside the paper's Table 3 (SDP; harness: {selection} checkpoint).",
                   "notes": notes, "best_cells": [], "stats": records}
    return table
