"""Figure style and layout shared by every paper figure: one colour, marker and line style per method
(Okabe-Ito, colour-blind safe; markers and line styles keep methods apart in greyscale), the paper's
font sizes, faceted panels above a footer that holds the shared legend and the provenance note, and
saving as PDF + PNG."""
from __future__ import annotations

import functools
import math
import textwrap
import weakref
from pathlib import Path
from typing import Iterable, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.gridspec import GridSpec  # noqa: E402

from unidad.results import MethodCatalogue, metric_label  # noqa: E402
from unidad.results.methods import catalogue as method_catalogue  # noqa: E402

OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#D55E00", "#0072B2", "#CC79A7", "#F0E442")
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")
LINE_STYLES = ("-", "--", "-.", ":")
REFERENCE_STYLE = {"color": "#7F7F7F", "marker": "x", "linestyle": ":"}
PANEL_SIZE = (3.5, 2.7)  # inches per facet: two facets fill a two-column paper width at true size
PNG_DPI = 200
NOTE_FONT_PT = 8
GRID_WIDTH_INCHES = 7.0  # qualitative grid: about a two-column paper's text width
# Sizes are set for the figure's saved size, so no text ends up under 8 pt in print.
PAPER_STYLE = {
    "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
    "legend.fontsize": 8.5, "figure.constrained_layout.h_pad": 0.06, "figure.constrained_layout.w_pad": 0.06,
}
# the panels/footer grid of each faceted figure, for refitting the footer just before saving
FOOTER_GRIDS: "weakref.WeakKeyDictionary[plt.Figure, GridSpec]" = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------------------ style
def method_styles(names: Iterable[str], methods: MethodCatalogue | None = None) -> dict[str, dict]:
    """Colour, marker and line style per method; the methods file's methods keep fixed slots (their
    order there), so a method looks the same in every figure whichever other methods are present."""
    known = method_catalogue(methods)
    listed = known.runnable
    present = known.ordered(names)
    others = [m for m in present if m not in listed and not known.is_reference(m)]
    styles = {}
    for method in present:
        if known.is_reference(method):
            styles[method] = dict(REFERENCE_STYLE)
            continue
        slot = listed.index(method) if method in listed else len(listed) + others.index(method)
        styles[method] = {"color": OKABE_ITO[slot % len(OKABE_ITO)], "marker": MARKERS[slot % len(MARKERS)],
                          "linestyle": LINE_STYLES[(slot // len(OKABE_ITO)) % len(LINE_STYLES)]}
    return styles


def metric_axis_label(metric: str) -> str:
    """Short axis label: the metric's name with an arrow to the better direction ("FID ↓"); how it was
    measured goes into the figure's note, so labels stay one short line."""
    return metric_label(metric)


def paper_style(draw):
    """Draw the figure under the paper's font sizes (and nowhere else change matplotlib's state)."""
    @functools.wraps(draw)
    def wrapped(*args, **kwargs):
        with plt.rc_context(PAPER_STYLE):
            return draw(*args, **kwargs)
    return wrapped


# ------------------------------------------------------------------------------ helpers
def save_figure(fig: plt.Figure, out_base: str | Path) -> tuple[Path, Path]:
    base = Path(out_base)
    if base.suffix.lower() in (".pdf", ".png"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    pdf, png = base.with_suffix(".pdf"), base.with_suffix(".png")
    if fig in FOOTER_GRIDS:
        fit_footer(fig)
    # "tight" trims the margins and keeps any label near an edge inside the canvas
    fig.savefig(pdf, bbox_inches="tight", pad_inches=0.05)
    fig.savefig(png, dpi=PNG_DPI, bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)
    return pdf, png


def facets(datasets: list[str], max_columns: int = 3) -> tuple[plt.Figure, list[plt.Axes]]:
    """One panel per dataset above a footer for the shared legend and the note.

    The footer is a subfigure of its own rather than artists outside the axes: constrained layout
    and bbox_inches="tight" move artists outside the canvas around, so legend and note collided.
    """
    n = len(datasets)
    rows = math.ceil(n / max_columns)
    columns = math.ceil(n / rows)  # balanced rows: 4 panels as 2x2, not 3+1
    panels_inches = PANEL_SIZE[1] * rows
    footer_inches = 0.8  # refitted to the legend and note by _fit_footer before saving
    fig = plt.figure(figsize=(PANEL_SIZE[0] * columns, panels_inches + footer_inches), layout="constrained")
    grid = fig.add_gridspec(2, 1, height_ratios=(panels_inches, footer_inches))
    panels = fig.add_subfigure(grid[0])
    fig.add_subfigure(grid[1])  # the footer: legend_below and note fill it
    FOOTER_GRIDS[fig] = grid
    # no shared y: datasets differ in scale (FID near ~1000 vs far ~300), a shared axis would flatten one
    axes = panels.subplots(rows, columns, squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def fit_footer(fig: plt.Figure) -> None:
    """Resize the footer subfigure to exactly hold its legend (top) and note (bottom)."""
    grid, footer = FOOTER_GRIDS.pop(fig), fig.subfigs[1]
    ratios = grid.get_height_ratios()
    panels_inches = fig.get_figheight() * ratios[0] / sum(ratios)
    fig.draw_without_rendering()
    dpi = fig.dpi
    parts = [artist.get_window_extent().height / dpi for artist in (*footer.legends, *footer.texts)]
    footer_inches = sum(parts) + 0.06 * len(parts) + 0.04
    grid.set_height_ratios((panels_inches, footer_inches))
    fig.set_figheight(panels_inches + footer_inches)


def legend_below(fig: plt.Figure, styles: Mapping[str, dict], methods: list[str], *, line: bool = True) -> None:
    """One legend for all facets, in the footer under them (so it never covers data), with as many
    columns as fit the figure's width."""
    handles = [plt.Line2D([], [], color=styles[m]["color"], marker=styles[m]["marker"],
                          linestyle=styles[m]["linestyle"] if line else "none", markersize=6)
               for m in methods]
    entry_inches = 0.75 + 0.075 * max(len(m) for m in methods)
    fitting = max(1, min(len(methods), int(fig.get_figwidth() // entry_inches)))
    columns = math.ceil(len(methods) / math.ceil(len(methods) / fitting))  # balanced rows: 3+3, not 4+2
    fig.subfigs[1].legend(handles, methods, loc="upper center", ncol=columns, frameon=False,
                          handlelength=2.2, columnspacing=1.4, borderaxespad=0.1)


def note(fig: plt.Figure, sentences: Iterable[str]) -> None:
    """The figure's one provenance note (extractors, protocol, seeds, NFE), wrapped, at the bottom."""
    text = " ".join(s.strip() for s in sentences if s and s.strip())
    if not text:
        return
    characters_per_line = int(fig.get_figwidth() * 72 / (NOTE_FONT_PT * 0.52))
    fig.subfigs[1].text(0.5, 0.0, textwrap.fill(text, characters_per_line), ha="center", va="bottom",
                        fontsize=NOTE_FONT_PT, color="#333333", linespacing=1.3)
