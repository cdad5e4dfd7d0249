"""Pixel arithmetic of the procedural domains (unidad.data.domains): image batches in and out,
soft-edged shape coverage, and the measurements their oracles make (colour segments, masked
medians, solid patches, shape-template fits). Numpy only; no domain knows about another here.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from unidad.imageio import as_numpy

SHAPE_KINDS = ("circle", "square", "triangle")


# ----------------------------------------------------------------------------------- image batches
def as_unit_hwc(images: Any) -> np.ndarray:
    """uint8 NHWC or float NCHW in [-1, 1] -> float32 NHWC in [0, 1]."""
    arr = as_numpy(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"expected an image batch (uint8 [N,H,W,3] or float [N,3,H,W]), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        if arr.shape[-1] != 3:
            raise ValueError(f"uint8 images must be [N,H,W,3], got shape {arr.shape}")
        return arr.astype(np.float32) / np.float32(255.0)
    if arr.shape[1] != 3:
        raise ValueError(f"float images must be [N,3,H,W] in [-1, 1], got shape {arr.shape}")
    return np.clip((np.moveaxis(arr.astype(np.float32), 1, -1) + 1.0) * 0.5, 0.0, 1.0)


def quantize(unit: np.ndarray) -> np.ndarray:
    return np.floor(np.clip(unit, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# ------------------------------------------------------------------------------------ measurements
def project_on_segment(pixels: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position t along start->end (0 at start, 1 at end) and distance from that line, per pixel.

    pixels [N,H,W,3]; start, end [N,3]. A clean two-colour image has every pixel on the segment;
    soft edges and blur sit inside it; other colours sit off it.
    """
    seg = (end - start)[:, None, None, :]
    rel = pixels - start[:, None, None, :]
    seg_sq = np.maximum((seg * seg).sum(-1), 1e-6)
    t = (rel * seg).sum(-1) / seg_sq
    residual = np.linalg.norm(rel - t[..., None] * seg, axis=-1)
    return t, residual


def masked_median(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-image median colour of the masked pixels; [N,H,W,3], [N,H,W] -> [N,3] (nan if empty)."""
    n = len(pixels)
    flat = pixels.reshape(n, -1, 3)
    keep = mask.reshape(n, -1, 1)
    ordered = np.sort(np.where(keep, flat, np.inf), axis=1)  # masked-out values sort to the end
    count = keep.sum(1)  # [N,1]
    lower = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[:, None, :], axis=1)[:, 0]
    upper = np.take_along_axis(ordered, (count // 2).clip(max=flat.shape[1] - 1)[:, None, :], axis=1)[:, 0]
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, (lower + upper) / 2, np.nan)


def solid_patches(mask: np.ndarray) -> np.ndarray:
    """Pixels whose whole 3x3 neighbourhood is in the mask (a 3x3 erosion); [N,H,W] bool."""
    h, w = mask.shape[1:]
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    solid = np.ones_like(mask)
    for dy in range(3):
        for dx in range(3):
            solid &= padded[:, dy : dy + h, dx : dx + w]
    return solid

# ------------------------------------------------------------------------------------------ shapes
def shape_coverage(
    kinds: np.ndarray, cx: np.ndarray, cy: np.ndarray, w: np.ndarray, h: np.ndarray, image_size: int
) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of one axis-aligned shape per image, [N] params -> [N,H,W].

    kind 0 = ellipse inscribed in the w x h box, 1 = the box, 2 = isosceles triangle with its apex
    at the top centre and its base on the bottom edge. The edge is one pixel soft: coverage =
    clip(0.5 - signed distance, 0, 1), distances in pixels, pixel centres at i + 0.5.
    """
    coords = np.arange(image_size, dtype=np.float32) + 0.5
    x = coords[None, None, :] - cx[:, None, None]
    y = coords[None, :, None] - cy[:, None, None]
    half_w = np.maximum(w, 1e-3)[:, None, None] / 2
    half_h = np.maximum(h, 1e-3)[:, None, None] / 2

    # ellipse: first-order distance (k - 1) / |grad k| with k the normalised radius
    k = np.sqrt((x / half_w) ** 2 + (y / half_h) ** 2)
    grad = np.sqrt((x / half_w**2) ** 2 + (y / half_h**2) ** 2) / np.maximum(k, 1e-6)
    ellipse = np.where(k > 1e-3, (k - 1.0) / np.maximum(grad, 1e-6), -np.minimum(half_w, half_h))

    box = np.maximum(np.abs(x) - half_w, np.abs(y) - half_h)

    # triangle: the largest of the signed distances to its three edges' lines
    slant = (2 * half_h * np.abs(x) - half_w * (y + half_h)) / np.sqrt(half_w**2 + (2 * half_h) ** 2)
    triangle = np.maximum(slant, y - half_h)

    kind = kinds[:, None, None]
    distance = np.where(kind == 0, ellipse, np.where(kind == 1, box, triangle))
    return np.clip(0.5 - distance, 0.0, 1.0).astype(np.float32)


def _shape_moments(cov: np.ndarray) -> tuple[np.ndarray, ...]:
    """Area, centroid and axis variances of coverage maps [N,H,W]."""
    size = cov.shape[-1]
    coords = np.arange(size, dtype=np.float64) + 0.5
    area = cov.sum((1, 2)).astype(np.float64)
    safe = np.maximum(area, 1e-6)
    col_mass = cov.sum(1)
    row_mass = cov.sum(2)
    mx = (col_mass * coords).sum(1) / safe
    my = (row_mass * coords).sum(1) / safe
    vx = (col_mass * coords**2).sum(1) / safe - mx**2
    vy = (row_mass * coords**2).sum(1) / safe - my**2
    return area, mx, my, np.maximum(vx, 1e-6), np.maximum(vy, 1e-6)


def fit_shape_templates(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best-matching shape kind per coverage map and its relative L1 misfit.

    Each kind's box is solved from the measured moments (box: var = w^2/12; ellipse: w^2/16;
    triangle: var_x = w^2/24, var_y = h^2/18, centroid h/6 below the box centre), rendered, and
    compared to the map. Misfit = sum |map - template| / area.
    """
    n, size = len(cov), cov.shape[-1]
    area, mx, my, vx, vy = _shape_moments(cov)
    boxes = {
        0: (mx, my, 4 * np.sqrt(vx), 4 * np.sqrt(vy)),
        1: (mx, my, np.sqrt(12 * vx), np.sqrt(12 * vy)),
        2: (mx, my - np.sqrt(18 * vy) / 6, np.sqrt(24 * vx), np.sqrt(18 * vy)),
    }
    misfit = np.empty((n, len(SHAPE_KINDS)))
    for kind, (cx, cy, w, h) in boxes.items():
        template = shape_coverage(np.full(n, kind), cx, cy, w, h, size)
        misfit[:, kind] = np.abs(cov - template).sum((1, 2)) / np.maximum(area, 1e-6)
    best = misfit.argmin(1)
    return best, misfit[np.arange(n), best]

