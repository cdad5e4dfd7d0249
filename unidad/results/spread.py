"""Seed spread of the oracle table: which oracle rates vary too much between seeds to rank methods.

Issue 18 asks every oracle rate of the demo's main table (the oracle table: in-target rate and mode
coverage per method and target) to have a sample std over seeds of at most `max_seed_std` (config
controls.max_seed_std, default 0.10). `seed_spread` lists each of them with its std and flags those
above; a rate measured with one seed has no spread to judge and is marked so.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from unidad.results.display import MISSING, metric_name
from unidad.results.methods import MethodCatalogue, catalogue
from unidad.results.select import DEFAULT_NFE
from unidad.results.tables import oracle_table

RATES = ("oracle_in_domain", "oracle_mode_coverage")
SPREAD_COLUMNS = ("method", "dataset", "metric", "mean", "std", "n_seeds", "max_std", "flagged")


def seed_spread(tidy: pd.DataFrame, max_std: float = 0.10, *, selection: str = "final", nfe: int = DEFAULT_NFE,
                methods: MethodCatalogue | None = None, metrics: Sequence[str] = RATES) -> pd.DataFrame:
    """Every oracle rate of the oracle table's methods (reference rows aside) with its seed std, and
    whether it exceeds `max_std` (False where one seed leaves no std). Raises ValueError when the tidy
    table has no oracle rows (as oracle_table does)."""
    methods = catalogue(methods)
    stats = pd.DataFrame(oracle_table(tidy, selection, nfe=nfe, methods=methods).attrs["stats"])
    stats = stats[stats["metric"].isin(metrics) & ~stats["method"].map(methods.is_reference)]
    out = stats[["method", "dataset", "metric", "mean", "std", "n_seeds"]].reset_index(drop=True)
    out["max_std"] = max_std
    out["flagged"] = out["std"].notna() & (out["std"] > max_std)
    return out[list(SPREAD_COLUMNS)]


def spread_banner(spread: pd.DataFrame, max_std: float) -> list[str]:
    """The report's lines on the seed spread: the flagged rates, or that none is flagged."""
    flagged = spread[spread["flagged"]]
    single = int((spread["n_seeds"] < 2).sum())
    if flagged.empty and single == len(spread):
        return ["**Seed spread**: not judged: every oracle rate was measured with one seed."]
    if flagged.empty:
        return [f"**Seed spread**: every oracle rate of the oracle table has seed std <= {max_std:g}"
                + (f" ({single} measured with one seed: no spread to judge)." if single else ".")]
    lines = [f"**SEED SPREAD TOO LARGE**: {len(flagged)} of {len(spread)} oracle rates have seed std > {max_std:g} "
             "(too noisy to rank methods):"]
    lines += [f"- {r['method']} {metric_name(r['metric'])} on {r['dataset']}: {r['mean']:.3f} ± {r['std']:.3f} "
              f"(n={int(r['n_seeds'])})" for _, r in flagged.iterrows()]
    return lines


def seed_spread_table(spread: pd.DataFrame, max_std: float) -> pd.DataFrame:
    """The seed spread as a display table, flagged rates first."""
    if spread.empty:
        raise ValueError("no oracle rates to judge the seed spread of")
    ordered = pd.concat([spread[spread["flagged"]], spread[~spread["flagged"]]])
    body = pd.DataFrame({
        "dataset": ordered["dataset"].to_numpy(),
        "rate": [metric_name(m) for m in ordered["metric"]],
        "mean": [f"{v:.3f}" for v in ordered["mean"]],
        "seed std": [MISSING if pd.isna(v) else f"{v:.3f}" for v in ordered["std"]],
        "seeds": [int(n) for n in ordered["n_seeds"]],
        f"std > {max_std:g}": ["YES" if f else ("n/a" if n < 2 else "no")
                               for f, n in zip(ordered["flagged"], ordered["n_seeds"])],
    }, index=pd.Index(ordered["method"].to_numpy(), name="method"))
    n_flagged = int(spread["flagged"].sum())
    body.attrs = {
        "caption": f"Seed spread of the oracle table: {n_flagged} of {len(spread)} oracle rates have seed std > {max_std:g}.",
        "notes": [line.lstrip("- ") for line in spread_banner(spread, max_std)[:1]]
                 + ["Sample std (ddof=1) over seeds of each method's rate per target; the training shots and the "
                    "source teacher are reference rows without seeds and are left out."],
        "best_cells": [],
        "stats": spread.to_dict("records"),
    }
    return body
