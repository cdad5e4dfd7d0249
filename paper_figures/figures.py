"""Paper figures from the tidy results table (matplotlib, Agg backend).

Every figure function writes <out_base>.pdf and <out_base>.png and returns both paths, or returns
None and logs why when the data it needs is absent. A method keeps one colour, marker and line
style in every figure (Okabe-Ito palette, colour-blind safe; the marker and line style keep methods
apart in greyscale too), and methods appear in the tables' order.

    python -m paper_figures.figures results/demo/tables/results_tidy.parquet results/demo/figures
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator, ScalarFormatter  # noqa: E402

from unidad.metrics import value_info  # noqa: E402
from unidad.results import (  # noqa: E402
    DEFAULT_NFE,
    MethodCatalogue,
    aggregate,
    load_tidy,
    normalise_tidy,
    ordered_datasets,
    protocol_text,
    select_rows,
)
from unidad.results.methods import catalogue as method_catalogue  # noqa: E402
from unidad.results.render import STANDIN_CAPTION  # noqa: E402

from paper_figures.layout import (  # noqa: E402
    facets, legend_below, method_styles, metric_axis_label, note, paper_style, save_figure,
)

log = logging.getLogger(__name__)

DUAL_WEIGHT_OPTION = "dual_weight"  # Uni-DAD's target-teacher weight a (the x axis of FID vs a)
TRAINED_PER_NFE = " (trained per NFE)"  # label suffix of the nfe ablation's line in FID vs NFE
SELECTION_TEXT = {"final": "final checkpoint", "best_val": "checkpoint picked on the validation split",
                  "best_test": "best checkpoint on the test split (oracle)", "all": "every checkpoint"}


def _standin_sentence(rows: pd.DataFrame) -> str:
    """The stand-in stamp (a rehearsal's numbers), first in the note of every figure that plots one."""
    return STANDIN_CAPTION if "standin" in rows.columns and rows["standin"].fillna(False).astype(bool).any() else ""


def _protocol_sentence(metric: str, protocol: str) -> str:
    name = value_info(metric).label
    return f"{name}: {protocol}." if protocol else ""


def _seeds_sentence(rows: pd.DataFrame, spread: str) -> str:
    """How many seeds each point averages, and what its band/error bar shows."""
    seeds = rows.groupby(["method", "dataset"])["seed"].nunique()
    if seeds.empty:
        return ""
    low, high = int(seeds.min()), int(seeds.max())
    if high <= 1:
        return "One seed per point (no spread shown)."
    count = f"{low}" if low == high else f"{low}-{high}"
    return f"Mean over {count} seeds; {spread} = ± std."


def _nfe_sentence(rows: pd.DataFrame) -> str:
    """"NFE 3" or, when a method is shown at its own NFE, "NFE 3 (ft: 25)"."""
    per_method = rows.dropna(subset=["nfe"]).groupby("method")["nfe"].agg(lambda v: sorted({int(x) for x in v}))
    if per_method.empty:
        return ""
    common = pd.Series([tuple(v) for v in per_method]).mode().iloc[0]
    exceptions = [f"{m}: {', '.join(map(str, v))}" for m, v in per_method.items() if tuple(v) != common]
    text = f"NFE {', '.join(map(str, common))}"
    return f"{text} ({'; '.join(exceptions)})." if exceptions else f"{text}."


def _one_protocol(rows: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, str]:
    """Rows of the metric measured one way (extractor, variant) in each dataset's panel, the most
    common way where several, and how it was measured as note text.

    The choice is per dataset because some extractors are (e.g. a per-domain oracle); each panel
    has its own y axis, so no axis mixes two ways of measuring.
    """
    rows = rows[rows["metric"] == metric]
    chosen, used = [], {}
    for dataset in ordered_datasets(rows):
        here = rows[rows["dataset"] == dataset]
        ways = here.groupby(["extractor", "variant"], sort=True).size().sort_values(ascending=False, kind="stable")
        extractor, variant = ways.index[0]
        if len(ways) > 1:
            others = [protocol_text(*w) for w in ways.index[1:]]
            log.info("%s, %s: plotting [%s]; also measured with %s (not mixed into one axis)", metric, dataset,
                     protocol_text(extractor, variant), others)
        chosen.append(here[(here["extractor"] == extractor) & (here["variant"] == variant)])
        used[dataset] = protocol_text(extractor, variant)
    if not chosen:
        return rows, ""
    if len(set(used.values())) == 1:
        return pd.concat(chosen), next(iter(used.values()))
    return pd.concat(chosen), "; ".join(f"{text} ({dataset})" for dataset, text in used.items())


def _keep_within_unit_interval(ax: plt.Axes) -> None:
    """A fraction's axis shows no impossible values (autoscaling pads a flat line at 0 below zero)."""
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, -0.03), min(high, 1.03))


def _panel_order(frame: pd.DataFrame, shown: pd.DataFrame) -> list[str]:
    """The datasets shown, in the whole table's order, so panels come in one order in every figure."""
    present = set(shown["dataset"])
    return [d for d in ordered_datasets(frame) if d in present]


def _skip(what: str, reason: str) -> None:
    log.warning("figure %s skipped: %s", what, reason)
    return None


def _dataset_title(rows: pd.DataFrame, dataset: str) -> str:
    shots = sorted({int(s) for s in rows.loc[rows["dataset"] == dataset, "shots"].dropna()})
    return f"{dataset} ({', '.join(map(str, shots))}-shot)" if shots else dataset


def _checkpoint_iterations(rows: pd.DataFrame) -> pd.Series:
    """Training iterations at each checkpoint, every earlier stage of the method included.

    Run records may carry the run's total on every checkpoint row rather than the count at that
    checkpoint; both readings agree on the earlier stages' share (total minus the last step), so
    that share plus the checkpoint's step is right either way.
    """
    run_key = [c for c in ("method", "dataset", "shots", "seed", "ablation", "ablation_value") if c in rows.columns]
    runs = rows.groupby(run_key, dropna=False, sort=False)
    earlier_stages = runs["iterations"].transform("max") - runs["step"].transform("max")
    return earlier_stages.clip(lower=0) + rows["step"]


# ------------------------------------------------------------------------------ figures
@paper_style
def metric_vs_iteration(tidy: pd.DataFrame, metric: str, out_base: str | Path, *,
                        nfe: int = DEFAULT_NFE, methods: MethodCatalogue | None = None) -> tuple[Path, Path] | None:
    """The metric at every checkpoint against training iterations (method totals), one line per
    method (mean over seeds, band = ± std), one panel per dataset."""
    known = method_catalogue(methods)
    frame = normalise_tidy(tidy)
    styles = method_styles(frame["method"], known)
    rows = select_rows(frame, "all", nfe=nfe, methods=known)
    rows = rows[~rows["method"].isin(known.references)]
    rows, protocol = _one_protocol(rows, metric)
    if rows.empty:
        return _skip(f"{metric} vs iteration", f"no per-checkpoint rows (selection 'all') for metric '{metric}'")
    x = "iterations" if rows["iterations"].notna().any() else "step"
    if x == "iterations":
        rows = rows.assign(iterations=_checkpoint_iterations(rows))
    stats = aggregate(rows, by=["method", "dataset", "step", x] if x != "step" else ["method", "dataset", "step"])
    datasets = _panel_order(frame, rows)
    shown = known.ordered(stats["method"])
    fig, axes = facets(datasets)
    for ax, dataset in zip(axes, datasets):
        for method in shown:
            line = stats[(stats["method"] == method) & (stats["dataset"] == dataset)].sort_values(x)
            if line.empty:
                continue
            style = styles[method]
            spread = line["std"].fillna(0.0)
            ax.plot(line[x], line["mean"], color=style["color"], marker=style["marker"],
                    linestyle=style["linestyle"], markersize=5, linewidth=1.5)
            ax.fill_between(line[x], line["mean"] - spread, line["mean"] + spread, color=style["color"],
                            alpha=0.15, linewidth=0)
        ax.set_title(_dataset_title(rows, dataset))
        ax.set_xlabel("training iteration" if x == "iterations" else "checkpoint step")
        # at most ~5 ticks: a 3.5-inch panel has room for five 5-digit iteration counts side by side
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.set_ylabel(metric_axis_label(metric))
        if value_info(metric).bounded:
            _keep_within_unit_interval(ax)
        ax.grid(True, alpha=0.3)
    legend_below(fig, styles, shown)
    stages = "Iterations count every stage of two-stage methods." if x == "iterations" else ""
    note(fig, [_standin_sentence(rows), _protocol_sentence(metric, protocol), _nfe_sentence(rows), stages,
                _seeds_sentence(rows, "band")])
    return save_figure(fig, out_base)


@paper_style
def quality_diversity_scatter(tidy: pd.DataFrame, out_base: str | Path, *, selection: str = "final",
                              nfe: int = DEFAULT_NFE,
                              methods: MethodCatalogue | None = None) -> tuple[Path, Path] | None:
    """FID against Intra-LPIPS: one point per method in each dataset's panel, error bars = std over seeds."""
    known = method_catalogue(methods)
    frame = normalise_tidy(tidy)
    styles = method_styles(frame["method"], known)
    rows = select_rows(frame, selection, nfe=nfe, methods=known)
    rows = rows[~rows["method"].isin(known.references)]
    fid_rows, fid_protocol = _one_protocol(rows, "fid")
    lpips_rows, lpips_protocol = _one_protocol(rows, "intra_lpips")
    if fid_rows.empty or lpips_rows.empty:
        return _skip("quality-diversity scatter", f"needs both fid and intra_lpips rows (selection '{selection}')")
    stats = aggregate(pd.concat([fid_rows, lpips_rows]), by=["method", "dataset", "metric"])
    datasets = _panel_order(frame, stats)
    shown = known.ordered(stats["method"])
    fig, axes = facets(datasets)
    for ax, dataset in zip(axes, datasets):
        here = stats[stats["dataset"] == dataset].set_index(["method", "metric"])
        for method in shown:
            if (method, "fid") not in here.index or (method, "intra_lpips") not in here.index:
                continue
            fid, lpips = here.loc[(method, "fid")], here.loc[(method, "intra_lpips")]
            style = styles[method]
            ax.errorbar(lpips["mean"], fid["mean"], xerr=np.nan_to_num(lpips["std"]), yerr=np.nan_to_num(fid["std"]),
                        color=style["color"], marker=style["marker"], linestyle="none", markersize=7, capsize=3,
                        elinewidth=1.2)
        ax.set_title(_dataset_title(rows, dataset))
        ax.set_xlabel(metric_axis_label("intra_lpips"))
        ax.set_ylabel(metric_axis_label("fid"))
        ax.grid(True, alpha=0.3)
        ax.margins(0.15)
    legend_below(fig, styles, shown, line=False)
    both = pd.concat([fid_rows, lpips_rows])
    note(fig, [_standin_sentence(both), _protocol_sentence("fid", fid_protocol),
                _protocol_sentence("intra_lpips", lpips_protocol),
                f"{SELECTION_TEXT.get(selection, selection).capitalize()}, {_nfe_sentence(both)}",
                _seeds_sentence(both, "error bars")])
    return save_figure(fig, out_base)


def nfe_curves(rows: pd.DataFrame, methods: MethodCatalogue | None = None) -> pd.DataFrame:
    """The rows of the FID-vs-NFE figure, one "method" per line.

    Two different things are plotted: one student sampled with K steps (the main grid's NFE sweep,
    under the method's name), and a student trained for K steps (the "nfe" ablation, each at its own
    K, with the main-grid student at its own NFE) under "<method> (trained per NFE)".
    """
    rows = rows[~rows["method"].isin(method_catalogue(methods).references) & rows["nfe"].notna()]
    sweep = rows[rows["ablation"] == ""]
    ablated = rows[rows["ablation_param"] == "nfe"]
    trained = ablated[ablated["nfe"] == pd.to_numeric(ablated["ablation_value"], errors="coerce")]
    if not trained.empty and "method_nfe" in sweep.columns:
        own = sweep[sweep["method"].isin(set(trained["method"])) & (sweep["nfe"] == sweep["method_nfe"])]
        trained = pd.concat([trained, own])
    return pd.concat([sweep, trained.assign(method=trained["method"] + TRAINED_PER_NFE)])


@paper_style
def fid_vs_nfe(tidy: pd.DataFrame, out_base: str | Path, *, selection: str = "final",
               metric: str = "fid", methods: MethodCatalogue | None = None) -> tuple[Path, Path] | None:
    """FID against the number of sampling steps (NFE, log scale), one line per method, one panel per dataset."""
    known = method_catalogue(methods)
    frame = normalise_tidy(tidy)
    rows = nfe_curves(select_rows(frame, selection, nfe=None, ablation=None, methods=known), known)
    rows, protocol = _one_protocol(rows, metric)
    if rows.empty or rows.groupby("method")["nfe"].nunique().max() < 2:
        return _skip(f"{metric} vs NFE", "no method was evaluated at more than one NFE")
    styles = method_styles(list(frame["method"]) + list(rows["method"]), known)
    stats = aggregate(rows, by=["method", "dataset", "nfe"])
    datasets = _panel_order(frame, rows)
    shown = known.ordered(stats["method"])
    fig, axes = facets(datasets)
    ticks = sorted({int(v) for v in stats["nfe"]})
    for ax, dataset in zip(axes, datasets):
        for method in shown:
            line = stats[(stats["method"] == method) & (stats["dataset"] == dataset)].sort_values("nfe")
            if line.empty:
                continue
            style = styles[method]
            ax.errorbar(line["nfe"], line["mean"], yerr=line["std"].fillna(0.0), color=style["color"],
                        marker=style["marker"], linestyle=style["linestyle"], markersize=6, capsize=3)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_title(_dataset_title(rows, dataset))
        ax.set_xlabel("NFE (log scale)")
        ax.set_ylabel(metric_axis_label(metric))
        ax.grid(True, alpha=0.3)
    legend_below(fig, styles, shown)
    per_nfe = (f"'{TRAINED_PER_NFE.strip()}': a student trained for each NFE (ablation 'nfe'); the other lines "
               "sample one student with each number of steps." if any(m.endswith(TRAINED_PER_NFE) for m in shown)
               else "")
    note(fig, [_standin_sentence(rows), _protocol_sentence(metric, protocol), "NFE = network evaluations per image.",
                per_nfe,
                f"{SELECTION_TEXT.get(selection, selection).capitalize()}.", _seeds_sentence(rows, "error bars")])
    return save_figure(fig, out_base)


@paper_style
def fid_vs_a(tidy: pd.DataFrame, out_base: str | Path, *, selection: str = "final", nfe: int = DEFAULT_NFE,
             metric: str = "fid", methods: MethodCatalogue | None = None) -> tuple[Path, Path] | None:
    """FID against the target-teacher weight a (the ablation of Uni-DAD's option `dual_weight`, whatever its
    label), one line per method, one panel per dataset."""
    known = method_catalogue(methods)
    frame = normalise_tidy(tidy)
    styles = method_styles(frame["method"], known)
    ablated = frame[frame["ablation_option"] == DUAL_WEIGHT_OPTION]
    if ablated.empty:
        return _skip(f"{metric} vs a", f"no ablation of the option {DUAL_WEIGHT_OPTION}")
    rows = select_rows(ablated, selection, nfe=nfe, ablation=None, methods=known)
    rows, protocol = _one_protocol(rows, metric)
    if rows.empty:
        return _skip(f"{metric} vs a", f"the 'a' ablation has no '{metric}' rows (selection '{selection}')")
    try:
        rows = rows.assign(a=rows["ablation_value"].astype(float))
    except ValueError:
        raise ValueError(f"{DUAL_WEIGHT_OPTION} ablation values must be numbers, "
                         f"got {sorted(set(rows['ablation_value']))}") from None
    stats = aggregate(rows, by=["method", "dataset", "a"])
    datasets = _panel_order(frame, rows)
    shown = known.ordered(stats["method"])
    fig, axes = facets(datasets)
    for ax, dataset in zip(axes, datasets):
        for method in shown:
            line = stats[(stats["method"] == method) & (stats["dataset"] == dataset)].sort_values("a")
            if line.empty:
                continue
            style = styles[method]
            ax.errorbar(line["a"], line["mean"], yerr=line["std"].fillna(0.0), color=style["color"],
                        marker=style["marker"], linestyle=style["linestyle"], markersize=6, capsize=3)
        ax.set_title(_dataset_title(rows, dataset))
        ax.set_xlabel("target-teacher weight a")
        ax.set_ylabel(metric_axis_label(metric))
        ax.set_xlim(-0.05, 1.05)
        ax.grid(True, alpha=0.3)
    legend_below(fig, styles, shown)
    note(fig, [_standin_sentence(rows), _protocol_sentence(metric, protocol),
                "a = 0: source teacher only; a = 1: target teacher only.",
                f"{SELECTION_TEXT.get(selection, selection).capitalize()}, {_nfe_sentence(rows)}",
                _seeds_sentence(rows, "error bars")])
    return save_figure(fig, out_base)


# ------------------------------------------------------------------------------ all of them
def write_all_figures(tidy: pd.DataFrame, out_dir: str | Path, *, nfe: int = DEFAULT_NFE,
                      methods: MethodCatalogue | None = None) -> list[Path]:
    """Every figure the data allows (PDF + PNG each); absent data skips a figure with a log message.
    `methods`: the method catalogue (default: the project's config/methods.yaml)."""
    methods = method_catalogue(methods)
    frame = normalise_tidy(tidy)
    out_dir = Path(out_dir)
    made: list[tuple[Path, Path] | None] = []
    present = set(frame["metric"])
    for metric in ("fid", "intra_lpips", "oracle_mode_coverage"):
        if metric in present:
            made.append(metric_vs_iteration(frame, metric, out_dir / f"{metric}_vs_iteration", nfe=nfe,
                                            methods=methods))
    # FID figures need FID: a text-conditioned (SDP) benchmark measures none, and its methods' NFEs (1, 2,
    # 2x50) need not include the FID figures' NFE
    if {"fid", "intra_lpips"} <= present:
        made.append(quality_diversity_scatter(frame, out_dir / "fid_vs_intra_lpips", nfe=nfe, methods=methods))
    if "fid" in present:
        made.append(fid_vs_nfe(frame, out_dir / "fid_vs_nfe", methods=methods))
        made.append(fid_vs_a(frame, out_dir / "fid_vs_a", nfe=nfe, methods=methods))
    from paper_figures.sdp import sdp_fidelity_vs_nfe, sdp_values_present

    if sdp_values_present(frame):
        made.append(sdp_fidelity_vs_nfe(frame, out_dir / "sdp_fidelity_vs_nfe", methods=methods))
    return [p for pair in made if pair for p in pair]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Draw the paper figures from a tidy results table.")
    parser.add_argument("tidy", help="results_tidy.csv or .parquet")
    parser.add_argument("out_dir", help="folder for the PDF and PNG files")
    parser.add_argument("--nfe", type=int, default=DEFAULT_NFE, help="NFE shown for methods evaluated at several")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in write_all_figures(load_tidy(args.tidy), args.out_dir, nfe=args.nfe):
        print(path)


if __name__ == "__main__":
    main()
