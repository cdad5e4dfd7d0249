"""Which rows a table or figure shows: checkpoint selection, one NFE per method, one ablation.

`with_selection` runs once, when the tidy table is written: it labels the evaluated rows with each
checkpoint-selection rule. `select_rows` runs in every table and figure: it keeps one rule's rows,
one NFE per method and one ablation, and gives each shot count of a dataset its own name.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from unidad.results.methods import MethodCatalogue, catalogue
from unidad.results.schema import normalise_tidy

SELECTIONS = ("final", "best_val", "best_test")
DEFAULT_NFE = 3  # the paper's FSIG few-step setting; a method measured at one NFE only keeps its own


# ------------------------------------------------------------------------------ checkpoint selection
def with_selection(tidy, selections=SELECTIONS):
    """Adds rows per checkpoint-selection rule. 'all' = every checkpoint; final = last; best_val =
    lowest FID on the validation split; best_test = lowest FID on the test reference (the official
    code's optimistic choice, flagged in every table that uses it). The checkpoint is chosen at the
    method's own NFE; a selection keeps every NFE evaluated at that checkpoint (the NFE sweep runs at
    the final one), so figures over NFE use the same selection as the tables. `selections`: the rules
    the config's protocol uses (evaluation.selections)."""
    unknown = [s for s in selections if s not in SELECTIONS]
    if unknown:
        raise ValueError(f"unknown checkpoint selection {unknown[0]!r}; use one of {SELECTIONS}")
    test = tidy[tidy["split"] == "test"].copy()
    test["selection"] = "all"
    out = [test]
    keys = ["benchmark", "dataset", "shots", "method", "ablation", "seed"]
    for sel in selections:
        picks = []
        for _, group in test.groupby(keys, sort=False):  # config order, which the tables keep
            g = group[group["nfe"] == group["method_nfe"]]
            own_nfe = int(g["nfe"].iloc[0])
            steps = sorted(g["step"].unique())
            if sel == "final":
                step = steps[-1]
            else:
                split = "val" if sel == "best_val" else "test"
                fid = tidy[(tidy["split"] == split) & (tidy["metric"] == "fid") & (tidy["slug"] == g["slug"].iloc[0])
                           & (tidy["nfe"] == own_nfe)]
                if fid.empty:
                    continue
                step = int(fid.loc[fid["value"].idxmin(), "step"])
            picked = group[group["step"] == step].copy()
            picked["selection"] = sel
            picks.append(picked)
        if picks:
            out.append(pd.concat(picks))
    return pd.concat(out, ignore_index=True)


# ------------------------------------------------------------------------------ row selection
def select_checkpoints(frame: pd.DataFrame, selection: str, methods: MethodCatalogue | None = None) -> pd.DataFrame:
    """Rows of one checkpoint-selection rule; per method, "final" falls back to the final "all" rows
    and reference rows (training shots) fall back to whatever they have."""
    references = catalogue(methods).references
    by_method = frame["method"]
    chosen = frame["selection"] == selection
    if selection == "final":
        fallback = (frame["selection"] == "all") & frame["final"]
        chosen |= fallback & ~chosen.groupby(by_method).transform("any")
    unmatched_reference = by_method.isin(references) & ~chosen.groupby(by_method).transform("any")
    reference = frame[unmatched_reference]
    reference = reference.drop_duplicates([c for c in frame.columns if c not in ("selection", "step", "final")])
    return pd.concat([frame[chosen], reference]) if len(reference) else frame[chosen]


OWN_NFE = "own"  # resolve_nfe: each method at the NFE it is built for (its sampler's), whatever the others'


def resolve_nfe(frame: pd.DataFrame, nfe: int | str, group: Sequence[str]) -> pd.DataFrame:
    """Keep one NFE per group: the group's only NFE, else `nfe` (OWN_NFE: the method's own)."""
    keys = [frame[g] for g in group]
    several = frame["nfe"].groupby(keys, dropna=False).transform("nunique") > 1
    at_nfe = frame["nfe"] == (frame["method_nfe"] if nfe == OWN_NFE else nfe)
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
                ablation: str | None = "", methods: MethodCatalogue | None = None) -> pd.DataFrame:
    """Rows of one checkpoint selection, one NFE per method, and one ablation ("" = main grid, None = all)."""
    return select_normalised(normalise_tidy(tidy), selection, nfe, ablation, methods)


def select_normalised(frame: pd.DataFrame, selection: str, nfe: int | None, ablation: str | None = "",
                      methods: MethodCatalogue | None = None) -> pd.DataFrame:
    """`select_rows` of a table normalise_tidy has already checked."""
    if ablation is not None:
        frame = frame[frame["ablation"] == ablation]
    frame = select_checkpoints(frame, selection, methods)
    if nfe is not None and not frame.empty:
        frame = resolve_nfe(frame, nfe, ["method", "ablation"])
    return label_shots(frame)


def label_shots(frame: pd.DataFrame) -> pd.DataFrame:
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
