"""Image folders: the few-shot training sets and the reference sets on disk.

A folder is a flat directory of image files read in sorted file-name order, so "the first k shots"
means the same files on every machine. Reading validates everything a user can get wrong and says
what to do about it in one line; writing is all-or-nothing.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from unidad.atomic import atomic_dir
from unidad.imageio import as_numpy, pil_to_rgb, to_uint8_hwc

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
WRONG_SIZE_POLICIES = ("resize", "error")
WRONG_SIZE_KEY = "data.on_wrong_size"


class ImageFolderError(ValueError):
    """An image folder cannot be used as given; the message names the problem and the fix."""


def list_image_files(path: str | os.PathLike) -> list[Path]:
    """Image files directly inside `path`, sorted by name; hidden files and other types are skipped."""
    folder = Path(path)
    if not folder.exists():
        raise ImageFolderError(f"image folder {folder} does not exist; create it or fix the path in the config")
    if not folder.is_dir():
        raise ImageFolderError(f"{folder} is not a folder; point the config at a folder of images")
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    return sorted(files, key=lambda p: p.name)


def _read_rgb(file: Path) -> Image.Image:
    try:
        with Image.open(file) as img:
            img.load()
            return Image.fromarray(pil_to_rgb(img))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ImageFolderError(f"cannot read image {file}: {reason}; replace or remove the file") from None


def check_folder_options(image_size: Any, shots: Any = None, on_wrong_size: str = "resize") -> int:
    """Validate the options of a folder read; returns image_size as an int."""
    if on_wrong_size not in WRONG_SIZE_POLICIES:
        raise ImageFolderError(
            f"{WRONG_SIZE_KEY} is '{on_wrong_size}'; use one of: {', '.join(WRONG_SIZE_POLICIES)}"
        )
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ImageFolderError(f"image_size must be a positive integer, got {image_size!r}")
    if shots is not None and (isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 1):
        raise ImageFolderError(f"shots must be a positive integer or None, got {shots!r}")
    return int(image_size)


def folder_files(path: str | os.PathLike, shots: int | None = None) -> list[Path]:
    """The files a folder read uses: the first `shots` image files in sorted order (all for None)."""
    files = list_image_files(path)
    if not files:
        raise ImageFolderError(
            f"no images in {path}; expected PNG/JPEG files ({', '.join(IMAGE_EXTENSIONS)})"
        )
    if shots is not None:
        if len(files) < shots:
            raise ImageFolderError(
                f"{path} has {len(files)} images but shots={shots} were requested; "
                f"add images or lower the number of shots"
            )
        files = files[:shots]
    return files


def read_image(file: str | os.PathLike, image_size: int, on_wrong_size: str = "resize") -> np.ndarray:
    """One image file as uint8 [image_size, image_size, 3], resized or rejected per `on_wrong_size`."""
    img = _read_rgb(Path(file))
    if img.size != (image_size, image_size):
        if on_wrong_size == "error":
            raise ImageFolderError(
                f"{file} is {img.size[0]}x{img.size[1]} but {image_size}x{image_size} is expected; "
                f"resize the images or set {WRONG_SIZE_KEY}: resize"
            )
        img = img.resize((image_size, image_size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def load_image_folder(
    path: str | os.PathLike,
    shots: int | None = None,
    image_size: int = 16,
    on_wrong_size: str = "resize",
) -> np.ndarray:
    """Load the images of a folder as uint8 [N, image_size, image_size, 3] in sorted file order.

    For sets that fit in memory (few-shot sets, reference sets); training data is streamed instead
    (unidad.data.stream), and a staged folder is checked file by file (verify_image_folder).
    shots: keep only the first `shots` files (sorted by name); None keeps all.
    on_wrong_size: "resize" (PIL bilinear to image_size x image_size, aspect not kept, the same
    resize the metrics use for reference sets) or "error".
    Grayscale and palette images become RGB; transparency is composited on white.
    """
    size = check_folder_options(image_size, shots, on_wrong_size)
    files = folder_files(path, shots)
    out = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, file in enumerate(files):
        out[i] = read_image(file, size, on_wrong_size)
    return out


def verify_image_folder(
    path: str | os.PathLike,
    shots: int | None = None,
    image_size: int = 16,
    on_wrong_size: str = "resize",
) -> int:
    """Read every image a folder read would use, one at a time, keeping none (memory does not grow
    with the folder); returns how many there are. Raises ImageFolderError like load_image_folder."""
    size = check_folder_options(image_size, shots, on_wrong_size)
    files = folder_files(path, shots)
    for file in files:
        read_image(file, size, on_wrong_size)
    return len(files)


def write_image_folder(images: Any, out_dir: str | os.PathLike) -> Path:
    """Write images as 00000.png, 00001.png, ... into out_dir, all or nothing.

    images: uint8 [N,H,W,3] (or float NCHW in [-1, 1]). The files are written into a temporary
    sibling folder that is renamed into place at the end, so an error leaves no partial folder; an
    existing out_dir is replaced as a whole.
    """
    arr = as_numpy(images)
    if arr.dtype != np.uint8:
        arr = to_uint8_hwc(arr)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ImageFolderError(f"expected images [N,H,W,3], got shape {arr.shape}")
    if len(arr) == 0:
        raise ImageFolderError(f"no images to write to {out_dir}; pass at least one image")

    out_dir = Path(out_dir)
    digits = max(5, len(str(len(arr) - 1)))
    with atomic_dir(out_dir) as staging:
        for i, image in enumerate(arr):
            Image.fromarray(np.ascontiguousarray(image)).save(staging / f"{i:0{digits}d}.png", format="PNG")
    return out_dir
