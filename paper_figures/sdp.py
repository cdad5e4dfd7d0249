"""The subject-driven benchmark's figure: subject and prompt fidelity against each method's own NFE
(DreamBooth at its many-step NFE with CFG beside the one-step methods), the paper's quality-vs-cost view
of Table 3. One panel per value; each point is the mean over subjects per seed, then mean ± std over seeds."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

from paper_figures.figures import SELECTION_TEXT, _keep_within_unit_interval, _seeds_sentence, _skip
from paper_figures.layout import facets, legend_below, method_styles, metric_axis_label, note, paper_style, save_figure
from unidad.metrics import value_info
from unidad.results.methods import MethodCatalogue
from unidad.results.methods import catalogue as method_catalogue
from unidad.results.schema import normalise_tidy
from unidad.results.sdp_tables import (
    ORACLE_CONTEXT, ORACLE_SUBJECT, PROMPT_FIDELITY, SUBJECT_FIDELITY, seed_stats, subject_means,
)
from unidad.results.select import OWN_NFE, select_normalised

# the panels, in order: learned subject fidelity, the oracle's subject rate, learned prompt fidelity, the oracle's context rate
FIDELITY_VALUES = (*SUBJECT_FIDELITY, ORACLE_SUBJECT, *PROMPT_FIDELITY, ORACLE_CONTEXT)


def sdp_values_present(tidy: pd.DataFrame) -> list[str]:
    present = set(tidy["metric"])
    return [v for v in FIDELITY_VALUES if v in present]


@paper_style
def sdp_fidelity_vs_nfe(tidy: pd.DataFrame, out_base: str | Path, *, selection: str = "final",
                        methods: MethodCatalogue | None = None) -> tuple[Path, Path] | None:
    """Each SDP fidelity value measured against the method's own NFE (log scale), one point per method."""
    known = method_catalogue(methods)
    frame = normalise_tidy(tidy)
    rows = select_normalised(frame, selection, OWN_NFE, methods=known)
    rows = rows[~rows["method"].isin(known.references)]
    values = sdp_values_present(rows)
    if not values:
        return _skip("SDP fidelity vs NFE", "no subject or prompt fidelity value measured")
    stats = seed_stats(subject_means(rows[rows["metric"].isin(values)]))
    own_nfe = rows.groupby("method")["nfe"].first()
    stats["nfe"] = stats["method"].map(own_nfe)
    styles = method_styles(stats["method"], known)
    shown = known.ordered(stats["method"])
    fig, axes = facets(values)
    ticks = sorted({int(v) for v in stats["nfe"].dropna()})
    for ax, value in zip(axes, values):
        for method in shown:
            point = stats[(stats["method"] == method) & (stats["metric"] == value)]
            if point.empty:
                continue
            style = styles[method]
            ax.errorbar(point["nfe"], point["mean"], yerr=point["std"].fillna(0.0), color=style["color"],
                        marker=style["marker"], linestyle="none", markersize=7, capsize=3)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_title(value_info(value).label)
        ax.set_xlabel("NFE, the method's own (log scale)")
        ax.set_ylabel(metric_axis_label(value))
        if value_info(value).bounded:
            _keep_within_unit_interval(ax)
        ax.grid(True, alpha=0.3)
    legend_below(fig, styles, shown, line=False)
    subjects = rows["dataset"].nunique()
    note(fig, [f"Each point: the mean over {subjects} subject{'s' if subjects != 1 else ''} per seed, then over seeds.",
                "NFE = network evaluations per image (CFG counts twice per step).",
                f"{SELECTION_TEXT.get(selection, selection).capitalize()}.", _seeds_sentence(rows, "error bars")])
    return save_figure(fig, out_base)
