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
import math
from pathlib import Path
from typing import Iterable, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter  # noqa: E402

from unidad.imageio import to_uint8_hwc  # noqa: E402
from unidad.tables import (  # noqa: E402
    DEFAULT_NFE,
    METHOD_ORDER,
    METRIC_INFO,
    REFERENCE_METHODS,
    aggregate,
    load_tidy,
    normalise_tidy,
    ordered_datasets,
    ordered_methods,
    protocol_text,
    select_rows,
)

log = logging.getLogger(__name__)

OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#D55E00", "#0072B2", "#CC79A7", "#F0E442")
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")
LINE_STYLES = ("-", "--", "-.", ":")
REFERENCE_STYLE = {"color": "#7F7F7F", "marker": "x", "linestyle": ":"}
METRIC_UNITS = {"speed_images_per_s": "images/s", "speed_s_per_image": "s per image"}
PANEL_SIZE = (4.2, 3.3)  # inches per facet
PNG_DPI = 200


# ------------------------------------------------------------------------------ style
def method_styles(methods: Iterable[str]) -> dict[str, dict]:
    """Colour, marker and line style per method; the paper's methods keep fixed slots, so a method
    looks the same in every figure whichever other methods are present."""
    present = ordered_methods(methods)
    others = [m for m in present if m not in METHOD_ORDER and m not in REFERENCE_METHODS]
    styles = {}
    for method in present:
        if method in REFERENCE_METHODS:
            styles[method] = dict(REFERENCE_STYLE)
            continue
        slot = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER) + others.index(method)
        styles[method] = {"color": OKABE_ITO[slot % len(OKABE_ITO)], "marker": MARKERS[slot % len(MARKERS)],
                          "linestyle": LINE_STYLES[(slot // len(OKABE_ITO)) % len(LINE_STYLES)]}
    return styles


def metric_axis_label(metric: str, protocol: str = "") -> str:
    """"FID (lower is better)" with the unit, and the extractor/variant on a second line."""
    name, higher, _ = METRIC_INFO.get(metric, (metric, None, 3))
    unit = METRIC_UNITS.get(metric)
    direction = {True: "higher is better", False: "lower is better", None: ""}[higher]
    details = ", ".join(p for p in (unit, direction) if p)
    label = f"{name} ({details})" if details else name
    return f"{label}\n[{protocol}]" if protocol else label


# ------------------------------------------------------------------------------ helpers
def _save(fig: plt.Figure, out_base: str | Path) -> tuple[Path, Path]:
    base = Path(out_base)
    if base.suffix.lower() in (".pdf", ".png"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    pdf, png = base.with_suffix(".pdf"), base.with_suffix(".png")
    fig.savefig(pdf)
    fig.savefig(png, dpi=PNG_DPI)
    plt.close(fig)
    return pdf, png


def _facets(datasets: list[str], max_columns: int = 3) -> tuple[plt.Figure, list[plt.Axes]]:
    n = len(datasets)
    columns = min(n, max_columns)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _legend_below(fig: plt.Figure, styles: Mapping[str, dict], methods: list[str], *, line: bool = True) -> None:
    """One legend for all facets, under them, with room made for it so nothing overlaps."""
    handles = [plt.Line2D([], [], color=styles[m]["color"], marker=styles[m]["marker"],
                          linestyle=styles[m]["linestyle"] if line else "none", markersize=7)
               for m in methods]
    columns = min(len(methods), 4) or 1
    rows = math.ceil(len(methods) / columns)
    legend_inches = 0.28 * rows + 0.2
    fig.tight_layout(rect=(0, legend_inches / fig.get_figheight(), 1, 1))
    fig.legend(handles, methods, loc="lower center", ncol=columns, frameon=False, title="method")


def _one_protocol(rows: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, str]:
    """Rows of the metric measured one way (extractor, variant): the most common way when several."""
    rows = rows[rows["metric"] == metric]
    ways = rows.groupby(["extractor", "variant"], sort=True).size().sort_values(ascending=False, kind="stable")
    if ways.empty:
        return rows, ""
    extractor, variant = ways.index[0]
    if len(ways) > 1:
        others = [protocol_text(*w) for w in ways.index[1:]]
        log.info("%s: plotting [%s]; also measured with %s (not mixed into one axis)", metric,
                 protocol_text(extractor, variant), others)
    chosen = rows[(rows["extractor"] == extractor) & (rows["variant"] == variant)]
    return chosen, protocol_text(extractor, variant)


def _skip(what: str, reason: str) -> None:
    log.warning("figure %s skipped: %s", what, reason)
    return None


def _dataset_title(rows: pd.DataFrame, dataset: str) -> str:
    shots = sorted({int(s) for s in rows.loc[rows["dataset"] == dataset, "shots"].dropna()})
    return f"{dataset} ({', '.join(map(str, shots))}-shot)" if shots else dataset


# ------------------------------------------------------------------------------ figures
def metric_vs_iteration(tidy: pd.DataFrame, metric: str, out_base: str | Path, *,
                        nfe: int = DEFAULT_NFE) -> tuple[Path, Path] | None:
    """The metric at every checkpoint against training iterations (method totals), one line per
    method (mean over seeds, band = ± std), one panel per dataset."""
    frame = normalise_tidy(tidy)
    styles = method_styles(frame["method"])
    rows = select_rows(frame, "all", nfe=nfe)
    rows = rows[~rows["method"].isin(REFERENCE_METHODS)]
    rows, protocol = _one_protocol(rows, metric)
    if rows.empty:
        return _skip(f"{metric} vs iteration", f"no per-checkpoint rows (selection 'all') for metric '{metric}'")
    x = "iterations" if rows["iterations"].notna().any() else "step"
    stats = aggregate(rows, by=["method", "dataset", "step", x] if x != "step" else ["method", "dataset", "step"])
    datasets = ordered_datasets(rows)
    methods = ordered_methods(stats["method"])
    fig, axes = _facets(datasets)
    for ax, dataset in zip(axes, datasets):
        for method in methods:
            line = stats[(stats["method"] == method) & (stats["dataset"] == dataset)].sort_values(x)
            if line.empty:
                continue
            style = styles[method]
            spread = line["std"].fillna(0.0)
            ax.plot(line[x], line["mean"], color=style["color"], marker=style["marker"],
                    linestyle=style["linestyle"], markersize=5, linewidth=1.6)
            ax.fill_between(line[x], line["mean"] - spread, line["mean"] + spread, color=style["color"],
                            alpha=0.15, linewidth=0)
        ax.set_title(_dataset_title(rows, dataset))
        ax.set_xlabel("training iterations (all stages of the method)" if x == "iterations" else "checkpoint step")
        ax.set_ylabel(metric_axis_label(metric, protocol))
        ax.grid(True, alpha=0.3)
    _legend_below(fig, styles, methods)
    return _save(fig, out_base)


def quality_diversity_scatter(tidy: pd.DataFrame, out_base: str | Path, *, selection: str = "final",
                              nfe: int = DEFAULT_NFE) -> tuple[Path, Path] | None:
    """FID against Intra-LPIPS: one point per method in each dataset's panel, error bars = std over seeds."""
    frame = normalise_tidy(tidy)
    styles = method_styles(frame["method"])
    rows = select_rows(frame, selection, nfe=nfe)
    rows = rows[~rows["method"].isin(REFERENCE_METHODS)]
    fid_rows, fid_protocol = _one_protocol(rows, "fid")
    lpips_rows, lpips_protocol = _one_protocol(rows, "intra_lpips")
    if fid_rows.empty or lpips_rows.empty:
        return _skip("quality-diversity scatter", f"needs both fid and intra_lpips rows (selection '{selection}')")
    stats = aggregate(pd.concat([fid_rows, lpips_rows]), by=["method", "dataset", "metric"])
    datasets = [d for d in ordered_datasets(rows) if d in set(stats["dataset"])]
    methods = ordered_methods(stats["method"])
    fig, axes = _facets(datasets)
    for ax, dataset in zip(axes, datasets):
        here = stats[stats["dataset"] == dataset].set_index(["method", "metric"])
        for method in methods:
            if (method, "fid") not in here.index or (method, "intra_lpips") not in here.index:
                continue
            fid, lpips = here.loc[(method, "fid")], here.loc[(method, "intra_lpips")]
            style = styles[method]
            ax.errorbar(lpips["mean"], fid["mean"], xerr=np.nan_to_num(lpips["std"]), yerr=np.nan_to_num(fid["std"]),
                        color=style["color"], marker=style["marker"], linestyle="none", markersize=8, capsize=3,
                        elinewidth=1.2)
        ax.set_title(_dataset_title(rows, dataset))
        ax.set_xlabel(metric_axis_label("intra_lpips", lpips_protocol).replace("\n", " "))
        ax.set_ylabel(metric_axis_label("fid", fid_protocol))
        ax.grid(True, alpha=0.3)
        ax.margins(0.15)
    _legend_below(fig, styles, methods, line=False)
    return _save(fig, out_base)


def fid_vs_nfe(tidy: pd.DataFrame, out_base: str | Path, *, selection: str = "final",
               metric: str = "fid") -> tuple[Path, Path] | None:
    """FID against the number of sampling steps (NFE, log scale), one line per method, one panel per dataset."""
    frame = normalise_tidy(tidy)
    styles = method_styles(frame["method"])
    rows = select_rows(frame, selection, nfe=None, ablation=None)
    rows = rows[((rows["ablation"] == "") | (rows["ablation_param"] == "nfe"))
                & ~rows["method"].isin(REFERENCE_METHODS) & rows["nfe"].notna()]
    rows, protocol = _one_protocol(rows, metric)
    # an NFE sweep may sit in the main grid and in an "nfe" ablation: count each measurement once
    rows = rows.drop_duplicates(["method", "dataset", "seed", "nfe"])
    if rows.empty or rows.groupby("method")["nfe"].nunique().max() < 2:
        return _skip(f"{metric} vs NFE", "no method was evaluated at more than one NFE")
    stats = aggregate(rows, by=["method", "dataset", "nfe"])
    datasets = ordered_datasets(rows)
    methods = ordered_methods(stats["method"])
    fig, axes = _facets(datasets)
    ticks = sorted({int(v) for v in stats["nfe"]})
    for ax, dataset in zip(axes, datasets):
        for method in methods:
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
        ax.set_xlabel("NFE (network evaluations per image, log scale)")
        ax.set_ylabel(metric_axis_label(metric, protocol))
        ax.grid(True, alpha=0.3)
    _legend_below(fig, styles, methods)
    return _save(fig, out_base)


def fid_vs_a(tidy: pd.DataFrame, out_base: str | Path, *, selection: str = "final", nfe: int = DEFAULT_NFE,
             metric: str = "fid") -> tuple[Path, Path] | None:
    """FID against the target-teacher weight a (ablation "a"), one line per method, one panel per dataset."""
    frame = normalise_tidy(tidy)
    styles = method_styles(frame["method"])
    ablated = frame[frame["ablation_param"] == "a"]
    if ablated.empty:
        return _skip(f"{metric} vs a", "no ablation rows with ablation_param == 'a'")
    rows = select_rows(ablated, selection, nfe=nfe, ablation=None)
    rows, protocol = _one_protocol(rows, metric)
    if rows.empty:
        return _skip(f"{metric} vs a", f"the 'a' ablation has no '{metric}' rows (selection '{selection}')")
    try:
        rows = rows.assign(a=rows["ablation_value"].astype(float))
    except ValueError:
        raise ValueError(f"ablation 'a' values must be numbers, got {sorted(set(rows['ablation_value']))}; "
                         "write them as a=0.25") from None
    stats = aggregate(rows, by=["method", "dataset", "a"])
    datasets = ordered_datasets(rows)
    methods = ordered_methods(stats["method"])
    fig, axes = _facets(datasets)
    for ax, dataset in zip(axes, datasets):
        for method in methods:
            line = stats[(stats["method"] == method) & (stats["dataset"] == dataset)].sort_values("a")
            if line.empty:
                continue
            style = styles[method]
            ax.errorbar(line["a"], line["mean"], yerr=line["std"].fillna(0.0), color=style["color"],
                        marker=style["marker"], linestyle=style["linestyle"], markersize=6, capsize=3)
        ax.set_title(_dataset_title(rows, dataset))
        ax.set_xlabel("target-teacher weight a (0 = source teacher only)")
        ax.set_ylabel(metric_axis_label(metric, protocol))
        ax.set_xlim(-0.05, 1.05)
        ax.grid(True, alpha=0.3)
    _legend_below(fig, styles, methods)
    return _save(fig, out_base)


def _as_image_batch(images, what: str) -> np.ndarray:
    """uint8 [N,H,W,C] from uint8 NHWC or float NCHW in [-1, 1] (C = 1 or 3)."""
    arr = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images)
    if arr.ndim != 4:
        raise ValueError(f"{what}: expected an image batch (uint8 [N,H,W,C] or float [N,C,H,W]), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        if arr.shape[-1] not in (1, 3):
            raise ValueError(f"{what}: uint8 images must be [N,H,W,1|3], got shape {arr.shape}")
        return arr
    if arr.shape[1] not in (1, 3):
        raise ValueError(f"{what}: float images must be [N,1|3,H,W] in [-1, 1], got shape {arr.shape}")
    return to_uint8_hwc(arr)


def _strip(batch: np.ndarray, columns: int, gap: int) -> np.ndarray:
    """Images side by side on white, `columns` slots wide."""
    n, h, w, c = batch.shape
    strip = np.full((h, columns * w + (columns - 1) * gap, c), 255, dtype=np.uint8)
    for i in range(min(n, columns)):
        strip[:, i * (w + gap): i * (w + gap) + w] = batch[i]
    return strip


def qualitative_grid(shots_images, samples: Mapping[str, object], out_base: str | Path,
                     title: str | None = None) -> tuple[Path, Path]:
    """The training shots in the first row, then each method's samples (drawn from the same
    seeds/noise by the caller), one labelled row per method in the tables' order."""
    if not samples:
        raise ValueError("qualitative_grid: `samples` is empty; pass {method: images} for at least one method")
    shots = _as_image_batch(shots_images, "shots_images")
    rows = [(f"{len(shots)} training shots", shots)]
    rows += [(m, _as_image_batch(samples[m], f"samples['{m}']")) for m in ordered_methods(samples)]
    sizes = {batch.shape[1:3] for _, batch in rows}
    if len(sizes) > 1:
        raise ValueError(f"qualitative_grid: images differ in size {sorted(sizes)}; resize them to one size first")
    channels = max(batch.shape[-1] for _, batch in rows)
    rows = [(label, np.repeat(b, 3, axis=-1) if b.shape[-1] < channels else b) for label, b in rows]
    columns = max(len(batch) for _, batch in rows)
    image_h, image_w = rows[0][1].shape[1:3]
    gap = max(1, image_h // 16)
    strip_px = columns * image_w + (columns - 1) * gap
    # Explicit layout in inches: a label column sized for the longest label, then the image rows
    # at their own aspect, so labels and title can never overlap the images.
    strip_in = columns * min(1.1, max(0.5, 11.0 / columns))
    row_in = strip_in * image_h / strip_px
    label_in = 0.2 + 0.085 * max(len(label) for label, _ in rows)
    pad_in, gap_in, title_in = 0.1, 0.08, (0.45 if title else 0.0)
    fig_w = label_in + strip_in + pad_in
    fig_h = title_in + len(rows) * row_in + (len(rows) - 1) * gap_in + 2 * pad_in
    fig = plt.figure(figsize=(fig_w, fig_h))
    for i, (label, batch) in enumerate(rows):
        top = fig_h - pad_in - title_in - i * (row_in + gap_in)
        ax = fig.add_axes((label_in / fig_w, (top - row_in) / fig_h, strip_in / fig_w, row_in / fig_h))
        ax.imshow(_strip(batch, columns, gap), interpolation="nearest", aspect="auto")
        ax.set_axis_off()
        fig.text((label_in - 0.1) / fig_w, (top - row_in / 2) / fig_h, label, ha="right", va="center", fontsize=10)
    if title:
        fig.text(0.5, (fig_h - pad_in - title_in / 2) / fig_h, title, ha="center", va="center", fontsize=11)
    return _save(fig, out_base)


# ------------------------------------------------------------------------------ all of them
def write_all_figures(tidy: pd.DataFrame, out_dir: str | Path, *, nfe: int = DEFAULT_NFE) -> list[Path]:
    """Every figure the data allows (PDF + PNG each); absent data skips a figure with a log message."""
    frame = normalise_tidy(tidy)
    out_dir = Path(out_dir)
    made: list[tuple[Path, Path] | None] = []
    present = set(frame["metric"])
    for metric in ("fid", "intra_lpips", "oracle_mode_coverage"):
        if metric in present:
            made.append(metric_vs_iteration(frame, metric, out_dir / f"{metric}_vs_iteration", nfe=nfe))
    made.append(quality_diversity_scatter(frame, out_dir / "fid_vs_intra_lpips", nfe=nfe))
    made.append(fid_vs_nfe(frame, out_dir / "fid_vs_nfe"))
    made.append(fid_vs_a(frame, out_dir / "fid_vs_a", nfe=nfe))
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
