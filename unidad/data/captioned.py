"""Captioned image folders: a text-to-image pretraining set on disk (the demo's LAION stand-in).

    <folder>/00000.png ...       the images
    <folder>/captions.jsonl      one {"file": "00000.png", "caption": "a red circle on the beach"} per line

Writing is all-or-nothing; reading checks that every caption names a readable image of the folder
and every image has exactly one caption, and says what to fix in one line.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from unidad.atomic import atomic_dir
from unidad.data.folders import ImageFolderError, _read_rgb, list_image_files

CAPTIONS_FILE = "captions.jsonl"


def write_captioned_folder(images: Any, captions: Sequence[str], out_dir: str | os.PathLike) -> Path:
    """uint8 [N,H,W,3] images and their N captions as PNGs plus captions.jsonl, replacing out_dir whole."""
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ImageFolderError(f"expected uint8 images [N,H,W,3], got {arr.dtype} {arr.shape}")
    if len(arr) != len(captions) or len(arr) == 0:
        raise ImageFolderError(f"{len(arr)} images but {len(captions)} captions; give one caption per image")
    digits = max(5, len(str(len(arr) - 1)))
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as staging:
        lines = []
        for i, (image, text) in enumerate(zip(arr, captions)):
            name = f"{i:0{digits}d}.png"
            Image.fromarray(np.ascontiguousarray(image)).save(staging / name, format="PNG")
            lines.append(json.dumps({"file": name, "caption": str(text)}))
        (staging / CAPTIONS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out_dir


def read_captions(folder: str | os.PathLike) -> list[tuple[Path, str]]:
    """(image file, caption) pairs in captions.jsonl order, checked against the folder's images."""
    folder = Path(folder)
    files = {p.name: p for p in list_image_files(folder)}
    index = folder / CAPTIONS_FILE
    if not index.is_file():
        raise ImageFolderError(f"{folder} has no {CAPTIONS_FILE}; write one line "
                               '{"file": ..., "caption": ...} per image')
    pairs, seen = [], set()
    for number, line in enumerate(index.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            name, text = row["file"], row["caption"]
        except (ValueError, KeyError, TypeError):
            raise ImageFolderError(f"{index} line {number} is not "
                                   '{"file": ..., "caption": ...}; fix or remove the line') from None
        if name not in files:
            raise ImageFolderError(f"{index} line {number} names {name}, which is not an image in {folder}; "
                                   f"add the image or remove the line")
        if name in seen:
            raise ImageFolderError(f"{index} line {number}: {name} has a second caption; keep one line per image")
        seen.add(name)
        pairs.append((files[name], str(text)))
    missing = sorted(set(files) - seen)
    if missing:
        raise ImageFolderError(f"{len(missing)} images of {folder} have no caption (first: {missing[0]}); "
                               f"add their lines to {CAPTIONS_FILE} or remove the images")
    return pairs


def load_captioned_folder(folder: str | os.PathLike, image_size: int) -> tuple[np.ndarray, list[str]]:
    """uint8 [N, image_size, image_size, 3] and the N captions (bilinear resize where sizes differ)."""
    pairs = read_captions(folder)
    out = np.empty((len(pairs), image_size, image_size, 3), dtype=np.uint8)
    for i, (file, _) in enumerate(pairs):
        img = _read_rgb(file)
        if img.size != (image_size, image_size):
            img = img.resize((image_size, image_size), Image.BILINEAR)
        out[i] = np.asarray(img, dtype=np.uint8)
    return out, [text for _, text in pairs]


__all__ = ["CAPTIONS_FILE", "load_captioned_folder", "read_captions", "write_captioned_folder"]
