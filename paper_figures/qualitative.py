"""The qualitative grid (paper Figure 1): the training shots, then each method's samples from the same
seeds, one labelled row per method; on a text-conditioned benchmark the columns follow the evaluation
prompts, listed under the grid."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from paper_figures.layout import GRID_WIDTH_INCHES, paper_style, plt, save_figure
from unidad.imageio import to_uint8_hwc
from unidad.results import MethodCatalogue
from unidad.results.methods import catalogue as method_catalogue

PROMPT_WRAP = 120  # characters per line of the prompt list under the grid


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


@paper_style
def column_legend(prompts: Sequence[str]) -> list[str]:
    """"columns 1-2: a prt circle in the snow; ..." wrapped into lines: runs of one prompt share an entry."""
    runs: list[tuple[int, int, str]] = []
    for i, prompt in enumerate(prompts, start=1):
        if runs and runs[-1][2] == prompt:
            runs[-1] = (runs[-1][0], i, prompt)
        else:
            runs.append((i, i, prompt))
    parts = [f"{'column' if a == b else 'columns'} {a if a == b else f'{a}-{b}'}: {p}" for a, b, p in runs]
    return textwrap.wrap("Prompts (method rows): " + "; ".join(parts), PROMPT_WRAP)


def qualitative_grid(shots_images, samples: Mapping[str, object], out_base: str | Path,
                     title: str | None = None, methods: MethodCatalogue | None = None,
                     prompts: Sequence[str] = ()) -> tuple[Path, Path]:
    """The training shots in the first row, then each method's samples (drawn from the same
    seeds/noise by the caller), one labelled row per method in the tables' order. `prompts`: the
    prompt of each sample column (text-conditioned benchmarks), listed under the grid."""
    if not samples:
        raise ValueError("qualitative_grid: `samples` is empty; pass {method: images} for at least one method")
    shots = _as_image_batch(shots_images, "shots_images")
    rows = [(f"{len(shots)} training shots", shots)]
    rows += [(m, _as_image_batch(samples[m], f"samples['{m}']"))
             for m in method_catalogue(methods).ordered(samples)]
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
    # at their own aspect, so labels and title can never overlap the images. The whole grid aims at
    # a two-column paper width, so its 9 pt labels print at true size.
    label_in = 0.2 + 0.075 * max(len(label) for label, _ in rows)
    strip_in = columns * min(1.1, max(0.35, (GRID_WIDTH_INCHES - label_in) / columns))
    row_in = strip_in * image_h / strip_px
    pad_in, gap_in, title_in = 0.1, 0.08, (0.35 if title else 0.0)
    legend = column_legend(prompts) if len(prompts) else []
    legend_in = 0.17 * len(legend) + (0.1 if legend else 0.0)
    fig_w = label_in + strip_in + pad_in
    fig_h = title_in + len(rows) * row_in + (len(rows) - 1) * gap_in + 2 * pad_in + legend_in
    fig = plt.figure(figsize=(fig_w, fig_h))
    for i, (label, batch) in enumerate(rows):
        top = fig_h - pad_in - title_in - i * (row_in + gap_in)
        ax = fig.add_axes((label_in / fig_w, (top - row_in) / fig_h, strip_in / fig_w, row_in / fig_h))
        ax.imshow(_strip(batch, columns, gap), interpolation="nearest", aspect="auto")
        ax.set_axis_off()
        fig.text((label_in - 0.1) / fig_w, (top - row_in / 2) / fig_h, label, ha="right", va="center", fontsize=9)
    if title:
        fig.text(0.5, (fig_h - pad_in - title_in / 2) / fig_h, title, ha="center", va="center", fontsize=9.5)
    if legend:
        fig.text(0.1 / fig_w, (pad_in + legend_in - 0.05) / fig_h, "\n".join(legend), ha="left", va="top",
                 fontsize=7.5)
    return save_figure(fig, out_base)


