"""The text-conditioned (SDP) benchmark's tables: the paper's Table 3 layout, the per-subject table, the
oracle table with the source teacher on the same token-free prompts, and the rank agreement of a learned
subject-fidelity value with the oracle's subject-present rate.

A benchmark is text-conditioned when its targets carry evaluation prompts (the workflow passes them as
`prompted` datasets, read from the config's dataset entries); the tables never look at its name. Each
subject is one target (one model per subject, as in the paper), so a Table 3 cell is the mean over
subjects per seed, then mean ± std over seeds.

Which values are subject fidelity, prompt fidelity or diversity is the SDP protocol's reading of the
registered values (metrics.md): the columns themselves are every shown quality and oracle value present,
in registration order, so a new SDP metric shows up without a change here.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

import unidad.metrics  # noqa: F401  (registers the built-in metrics)
from unidad.metrics.registry import value_names
from unidad.results.display import (
    MISSING,
    best_rows,
    cell_text,
    decimals,
    metric_direction,
    metric_label,
    nfe_text,
    seed_note,
)
from unidad.results.methods import MethodCatalogue, MethodInfo, catalogue
from unidad.results.schema import normalise_tidy, ordered_datasets, tidy_row
from unidad.results.select import OWN_NFE, select_normalised
from unidad.results.tables import SELECTION_NOTES, _stat_table

SDP_NFE = OWN_NFE  # the paper's SDP setting: every method at its own NFE (1 for the one-step methods, 2x50 DreamBooth)
SUBJECT_FIDELITY = ("dino", "clip_i", "demo_subject_sim")  # learned subject fidelity, the main one first
PROMPT_FIDELITY = ("clip_t", "demo_prompt_sim")
DIVERSITY = ("sdp_intra_lpips", "sdp_inter_lpips")
ORACLE_SUBJECT, ORACLE_CONTEXT, ORACLE_BOTH = "oracle_subject", "oracle_context", "oracle_subject_context"
ORACLE_VALUES = (ORACLE_SUBJECT, ORACLE_CONTEXT, ORACLE_BOTH)
TEACHER = "source_teacher"
TEACHER_LABEL = "source teacher (token-free prompts)"
ALL_SUBJECTS = "all subjects"
_REPORT_KEYS = {ORACLE_SUBJECT: "subject_present_rate", ORACLE_CONTEXT: "context_follows_rate",
                ORACLE_BOTH: "both_rate"}
PAPER_METRIC = {"dino": "dino", "clip_i": "clip_i", "clip_t": "clip_t", "sdp_intra_lpips": "intra_lpips",
                "sdp_inter_lpips": "inter_lpips"}  # harness value -> the paper's Table 3 column
SUBJECT_NOTE = ("Each cell: the mean over subjects (one model per subject) per seed, then mean ± std over seeds; "
                "(k/N subjects) marks a cell some seed of which lacks subjects.")


def is_text_conditioned(frame: pd.DataFrame, prompted: Sequence[str]) -> bool:
    """Whether the tidy table's targets are the text-conditioned benchmark's (datasets with prompts)."""
    return bool(prompted) and frame["dataset"].isin(list(prompted)).any()


def sdp_rows(frame: pd.DataFrame, prompted: Sequence[str], methods: MethodCatalogue,
             selection: str = "final") -> pd.DataFrame:
    """The main-grid rows of the prompted targets: one checkpoint rule, each method at 1 NFE or its own."""
    frame = normalise_tidy(frame)
    rows = frame[frame["dataset"].isin(list(prompted))]
    return select_normalised(rows, selection, SDP_NFE, methods=methods)


def sdp_values(rows: pd.DataFrame) -> list[str]:
    """The value columns of Table 3: shown quality values, then oracle values, present in `rows`."""
    present = set(rows["metric"])
    return [v for v in value_names("quality") + value_names("oracle") if v in present]


def first_present(rows: pd.DataFrame, names: Sequence[str]) -> str | None:
    present = set(rows["metric"])
    return next((n for n in names if n in present), None)


def subject_means(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (method, metric, variant, seed): the mean over subjects and how many subjects it averages.
    The extractor is left out of the key: the oracle is one per subject by construction."""
    if rows.empty:
        return pd.DataFrame(columns=["method", "metric", "variant", "seed", "value", "n_subjects"])
    grouped = rows.groupby(["method", "metric", "variant", "seed"], sort=False, dropna=False)["value"]
    return grouped.agg(value="mean", n_subjects="count").reset_index()


def seed_stats(means: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std and seed count over seeds of `subject_means`, with the fewest subjects a seed had."""
    if means.empty:
        return pd.DataFrame(columns=["method", "metric", "variant", "mean", "std", "count", "min_subjects"])
    grouped = means.groupby(["method", "metric", "variant"], sort=False, dropna=False)
    stats = grouped["value"].agg(mean="mean", std="std", count="count")
    stats["min_subjects"] = grouped["n_subjects"].min()
    return stats.reset_index()


def _method_notes(methods: MethodCatalogue, shown: Sequence[str]) -> list[str]:
    return [f"{m}: {methods.note(m)}" for m in shown if methods.note(m)]


def _demo_note(values: Sequence[str]) -> str:
    demo = [metric_label(v) for v in values if v not in PAPER_METRIC]
    return ("Demo metrics, not the paper's: " + ", ".join(demo) + " (the demo counterparts of DINO / CLIP-I / "
            "CLIP-T and the demo subject oracle).") if demo else ""


def sdp_main_table(frame: pd.DataFrame, prompted: Sequence[str], *, selection: str = "final",
                   methods: MethodCatalogue | None = None) -> pd.DataFrame:
    """The paper's Table 3 layout: method, NFE, single-stage, then every SDP value present (mean over
    subjects per seed, mean ± std over seeds; best per column in bold)."""
    methods = catalogue(methods)
    rows = sdp_rows(frame, prompted, methods, selection)
    rows = rows[~rows["method"].isin(methods.references)]
    values = sdp_values(rows)
    rows = rows[rows["metric"].isin(values)]
    if rows.empty:
        raise ValueError(f"no SDP values on the prompted targets {list(prompted)} (selection '{selection}')")
    stats = seed_stats(subject_means(rows))
    shown = methods.ordered(rows["method"])
    n_subjects = len(ordered_datasets(rows))
    full_count = int(stats["count"].max())
    table = pd.DataFrame(index=pd.Index(shown, name="method"))
    table["NFE"] = [nfe_text(rows.loc[rows["method"] == m, "nfe"]) for m in shown]
    table["single-stage"] = [methods.single_stage(m) or MISSING for m in shown]
    best_cells, records = [], []
    for value in values:
        label = metric_label(value)
        sub = stats[stats["metric"] == value]
        best = best_rows(pd.Series(dict(zip(sub["method"], sub["mean"])), dtype=float), metric_direction(value))
        texts = {}
        for _, r in sub.iterrows():
            text = cell_text(r["mean"], r["std"], int(r["count"]), decimals(value), full_count)
            if int(r["min_subjects"]) < n_subjects:
                text += f" ({int(r['min_subjects'])}/{n_subjects} subjects)"
            texts[r["method"]] = text
            records.append({"method": r["method"], "metric": value, "variant": r["variant"], "mean": r["mean"],
                            "std": r["std"], "n_seeds": int(r["count"]), "n_subjects": int(r["min_subjects"]),
                            "best": r["method"] in best})
        table[label] = [texts.get(m, MISSING) for m in shown]
        best_cells += [(m, label) for m in best]
    notes = [SUBJECT_NOTE.replace("subjects (", f"the {n_subjects} subject{'s' if n_subjects > 1 else ''} (", 1),
             seed_note(stats["count"]), SELECTION_NOTES.get(selection, f"Checkpoint rule: {selection}."),
             "NFE: each method at its own (the one-step methods at 1, DP-DMD's students at 2, DreamBooth (ft) at its many-step NFE with CFG).",
             _demo_note(values), *_method_notes(methods, shown)]
    table.attrs = {"caption": f"Subject-driven personalization, the paper's Table 3 layout ({selection} checkpoint). "
                              "Mean ± std over seeds of the mean over subjects; best per column in bold.",
                   "notes": [n for n in notes if n], "best_cells": best_cells, "stats": records}
    return table


def teacher_rows(report: Mapping[str, Any] | None, subjects: Sequence[str]) -> pd.DataFrame:
    """The source teacher's oracle rates on the token-free prompts (teacher report `subject_oracle`) as
    tidy rows of the reference method `source_teacher` (one model: seed 0)."""
    oracle = (report or {}).get("subject_oracle") or {}
    timing = (report or {}).get("timing") or {}
    out = []
    for subject in subjects:
        verdict = oracle.get(subject)
        if not verdict:
            continue
        nfe = (timing.get(subject) or {}).get("nfe", float("nan"))
        for value, key in _REPORT_KEYS.items():
            if key in verdict:
                out.append(tidy_row("", dataset=subject, method=TEACHER, metric=value, value=float(verdict[key]),
                                    nfe=nfe, method_nfe=nfe, variant="rule-based", extractor=f"oracle:{subject}",
                                    n_generated=verdict.get("n", 0)))
    return normalise_tidy(pd.DataFrame(out)) if out else pd.DataFrame()


def _with_teacher_catalogue(methods: MethodCatalogue) -> MethodCatalogue:
    if methods.is_reference(TEACHER):
        return methods
    entries = [methods.get(m) for m in methods.order]
    return MethodCatalogue([*entries, MethodInfo(TEACHER, "source teacher", None, reference=True)])


def _all_subjects(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of the mean over subjects per (method, metric, seed), as dataset ALL_SUBJECTS."""
    means = subject_means(rows).drop(columns="n_subjects")
    nfe = rows.groupby("method")["nfe"].first()
    return normalise_tidy(means.assign(dataset=ALL_SUBJECTS, nfe=means["method"].map(nfe)))


def _per_subject(frame: pd.DataFrame, prompted: Sequence[str], values: Sequence[str], teacher_report,
                 selection: str, methods: MethodCatalogue, caption: str, notes: list[str]) -> pd.DataFrame:
    rows = sdp_rows(frame, prompted, methods, selection)
    rows = rows[rows["metric"].isin(values) & (rows["method"] != TEACHER)]
    if rows.empty:
        raise ValueError(f"no {list(values)} rows on the prompted targets {list(prompted)}")
    subjects = ordered_datasets(rows)
    teacher = teacher_rows(teacher_report, subjects)
    if len(teacher):
        teacher = teacher[teacher["metric"].isin(values)]
        rows = pd.concat([rows, teacher], ignore_index=True)
    if len(subjects) > 1:
        rows = pd.concat([rows, _all_subjects(rows)], ignore_index=True)
    rows = rows.assign(protocol="")  # the FSIG evaluation protocol's note (resize, Intra-LPIPS) says nothing here
    extended = _with_teacher_catalogue(methods)
    shown = extended.ordered(rows["method"])
    info = {"NFE": {m: nfe_text(rows.loc[rows["method"] == m, "nfe"]) for m in shown}}
    table = _stat_table(rows, ["method"], shown, metric_order=values, datasets=ordered_datasets(rows),
                        caption=caption, notes=notes, methods=extended, info=info)
    if TEACHER in table.index:
        table = table.rename(index={TEACHER: TEACHER_LABEL})
        table.attrs["notes"] = [*table.attrs["notes"],
                                f"{TEACHER_LABEL}: the source teacher before any adaptation, sampled with the same "
                                "prompts without the unique token and the same seeds (teacher report); one model, "
                                "not ranked."]
    if len(subjects) > 1:
        table.attrs["notes"] = [*table.attrs["notes"], f"'{ALL_SUBJECTS}': the mean over the {len(subjects)} "
                                "subjects per seed, then mean ± std over seeds."]
    return table


def sdp_oracle_table(frame: pd.DataFrame, prompted: Sequence[str], teacher_report: Mapping[str, Any] | None = None,
                     *, selection: str = "final", methods: MethodCatalogue | None = None) -> pd.DataFrame:
    """The demo subject oracle per subject (and over all subjects): subject present, context follows the
    prompt, both; the source teacher on the same token-free prompts beside the methods."""
    methods = catalogue(methods)
    values = [v for v in value_names("oracle") if v in ORACLE_VALUES]
    return _per_subject(frame, prompted, values, teacher_report, selection, methods,
                        f"Demo subject oracle per subject ({selection} checkpoint): the source teacher on the "
                        "token-free prompts beside every method on the prompts with the unique token.",
                        [SELECTION_NOTES.get(selection, f"Checkpoint rule: {selection}."),
                         "Oracle: exact rules of the demo subject (its shape and pattern) and of the prompt's context."])


def sdp_subject_table(frame: pd.DataFrame, prompted: Sequence[str], teacher_report: Mapping[str, Any] | None = None,
                      *, selection: str = "final", methods: MethodCatalogue | None = None) -> pd.DataFrame:
    """Method x subject for the main subject-fidelity value and the oracle's subject-present rate."""
    methods = catalogue(methods)
    rows = sdp_rows(frame, prompted, methods, selection)
    values = [v for v in (first_present(rows, SUBJECT_FIDELITY), ORACLE_SUBJECT) if v and (rows["metric"] == v).any()]
    if not values:
        raise ValueError("no subject-fidelity value (dino, clip_i, demo_subject_sim) nor oracle_subject rows")
    return _per_subject(frame, prompted, values, teacher_report, selection, methods,
                        f"Subject fidelity per subject ({selection} checkpoint): "
                        + " and ".join(metric_label(v) for v in values) + ".",
                        [SELECTION_NOTES.get(selection, f"Checkpoint rule: {selection}.")])


def _spearman(a: pd.Series, b: pd.Series) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN where a ranking is constant."""
    ra, rb = a.rank(), b.rank()
    if ra.nunique() < 2 or rb.nunique() < 2:
        return float("nan")
    return float(ra.corr(rb))


def _ranking(means: pd.Series, value: str) -> list[str]:
    """Best first; a similarity not (yet) registered counts as higher-is-better."""
    return list(means.sort_values(ascending=metric_direction(value) is False, kind="stable").index)


def rank_agreement(frame: pd.DataFrame, prompted: Sequence[str], *, selection: str = "final",
                   methods: MethodCatalogue | None = None) -> pd.DataFrame:
    """Spearman's rank correlation across methods between each learned subject-fidelity value and the
    oracle's subject-present rate (means over subjects and seeds), with both rankings."""
    methods = catalogue(methods)
    rows = sdp_rows(frame, prompted, methods, selection)
    rows = rows[~rows["method"].isin(methods.references)]
    learned = [v for v in SUBJECT_FIDELITY if (rows["metric"] == v).any()]
    if not learned or not (rows["metric"] == ORACLE_SUBJECT).any():
        raise ValueError("rank agreement needs a learned subject-fidelity value and oracle_subject")
    stats = seed_stats(subject_means(rows[rows["metric"].isin([*learned, ORACLE_SUBJECT])]))
    oracle = stats[stats["metric"] == ORACLE_SUBJECT].set_index("method")["mean"]
    out, notes = [], []
    for value in learned:
        mine = stats[stats["metric"] == value].set_index("method")["mean"]
        both = [m for m in methods.ordered(mine.index) if m in oracle.index]
        rho = _spearman(mine[both], oracle[both])
        by_value, by_oracle = _ranking(mine[both], value), _ranking(oracle[both], ORACLE_SUBJECT)
        same = by_value == by_oracle
        out.append({"value": metric_label(value), "methods": len(both),
                    "Spearman ρ": MISSING if pd.isna(rho) else f"{rho:+.3f}",
                    "same order": "yes" if same else "no",
                    "ranking by value": " > ".join(by_value), "ranking by the oracle": " > ".join(by_oracle)})
        if not same:
            notes.append(f"{metric_label(value)} ranks the methods differently from the oracle's subject-present rate.")
    table = pd.DataFrame(out).set_index("value")
    table.attrs = {"caption": "Does the learned subject-fidelity value rank the methods as the oracle's subject-present "
                              "rate does? Spearman's rank correlation across methods.",
                   "notes": [*notes, "Means over subjects and seeds; ρ uses average ranks for ties; rankings best first."],
                   "best_cells": [], "stats": out}
    return table
