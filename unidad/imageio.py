"""Image array conventions and PNG files.

Two layouts meet in this project: models work on float NCHW in [-1, 1], files and oracles on uint8
NHWC. The conversions here are exact inverses on uint8 values, so an image written, read back and
fed to a model is bit-identical every time.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unidad.atomic import atomic_path

GRID_SEPARATOR_VALUE = 128  # mid gray: visible against both the light and the dark demo images


def as_numpy(x: Any) -> np.ndarray:
    """numpy view of a numpy array or a torch tensor (duck-typed so this module needs no torch)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if hasattr(x, "float") and not str(getattr(x, "dtype", "")).endswith("uint8"):
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def to_uint8_hwc(x: Any) -> np.ndarray:
    """Float [N,]C,H,W in [-1, 1] -> uint8 [N,]H,W,C; clamps, rounds half away from zero."""
    arr = as_numpy(x)
    if arr.ndim not in (3, 4):
        raise ValueError(f"expected a float image batch [N,C,H,W] or one image [C,H,W], got shape {arr.shape}")
    if arr.dtype == np.uint8:
        raise ValueError("to_uint8_hwc got uint8 input; it converts float [-1, 1] model output")
    scaled = np.clip((arr.astype(np.float64) + 1.0) * 127.5, 0.0, 255.0)
    # values are non-negative after the clamp, so floor(v + 0.5) is round-half-away-from-zero
    u8 = np.floor(scaled + 0.5).astype(np.uint8)
    return np.ascontiguousarray(np.moveaxis(u8, -3, -1))


def to_float_nchw(u8: Any) -> np.ndarray:
    """uint8 [N,]H,W,C -> float32 [N,]C,H,W in [-1, 1] (exact inverse of to_uint8_hwc on uint8)."""
    arr = as_numpy(u8)
    if arr.dtype != np.uint8:
        raise ValueError(f"to_float_nchw expects uint8 images [N,H,W,C], got dtype {arr.dtype}")
    if arr.ndim not in (3, 4):
        raise ValueError(f"expected uint8 images [N,H,W,C] or one image [H,W,C], got shape {arr.shape}")
    return np.ascontiguousarray(np.moveaxis(arr.astype(np.float32) / np.float32(127.5) - 1.0, -1, -3))


def pil_to_rgb(img: Image.Image) -> np.ndarray:
    """Any PIL image -> uint8 H,W,3.

    Transparency is composited on white: the colour under fully transparent pixels is arbitrary
    (often black) and should not leak into training data.
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: PIL's own convert("RGB") clips at 255 instead of rescaling
        wide = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or wide.max() > 255 else 255.0
        gray = np.clip(np.floor(wide / peak * 255.0 + 0.5), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def load_png(path: str | os.PathLike) -> np.ndarray:
    """Read one image file as uint8 H,W,3 RGB."""
    with Image.open(path) as img:
        img.load()
        return pil_to_rgb(img)


def _check_hwc_uint8(array: Any) -> np.ndarray:
    arr = as_numpy(array)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {arr.dtype}; convert with to_uint8_hwc first")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected one image [H,W,3], got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def save_png_atomic(array: Any, path: str | os.PathLike) -> Path:
    """Write uint8 H,W,3 (or H,W) as PNG; readers never see a half-written file."""
    arr = _check_hwc_uint8(array)
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
    return path


def make_grid(images: Any, nrow: int = 8, scale: int = 4, separator: int = 1) -> np.ndarray:
    """Tile images (uint8 NHWC, or float NCHW in [-1, 1]) into one uint8 H,W,3 image.

    nrow is the number of images per row; each image is upscaled by nearest neighbour so small
    images stay crisp; cells are separated by `separator` mid-gray pixels.
    """
    arr = as_numpy(images)
    if arr.dtype != np.uint8:
        arr = to_uint8_hwc(arr)
    if arr.ndim != 4 or arr.shape[-1] != 3 or len(arr) == 0:
        raise ValueError(f"expected a non-empty batch [N,H,W,3], got shape {arr.shape}")
    if nrow < 1 or scale < 1 or separator < 0:
        raise ValueError(f"nrow and scale must be >= 1 and separator >= 0, got {nrow}, {scale}, {separator}")
    n, h, w, _ = arr.shape
    big = arr.repeat(scale, axis=1).repeat(scale, axis=2)
    cols = min(nrow, n)
    rows = -(-n // cols)
    cell_h, cell_w = h * scale + separator, w * scale + separator
    grid = np.full((rows * cell_h + separator, cols * cell_w + separator, 3), GRID_SEPARATOR_VALUE, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = separator + r * cell_h, separator + c * cell_w
        grid[top : top + h * scale, left : left + w * scale] = big[i]
    return grid


def save_grid(images: Any, path: str | os.PathLike, nrow: int = 8, scale: int = 4) -> Path:
    """Write a grid of images (see make_grid) as one PNG, atomically."""
    return save_png_atomic(make_grid(images, nrow=nrow, scale=scale), path)
