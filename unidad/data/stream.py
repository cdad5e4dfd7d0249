"""Training images streamed to the training loop: a set keeps file paths (or, for a tiny in-memory set,
uint8 pixels) and each batch is decoded when the loop needs it, by DataLoader worker processes, so the
memory of the data path does not grow with the dataset (70k FFHQ images as one float tensor at 256x256
would be ~55 GB).

Which images a batch holds is the loop's pure function of (seed, iteration, micro-batch)
(`unidad.train.loop.batch_indices`), so the stream can start at any iteration (exact resume) and the
batches, hence the trained weights, are the same whatever the number of workers.
"""
from __future__ import annotations

import os
import signal
from typing import Any, Callable, Iterator

import numpy as np
import torch

from unidad.data.folders import check_folder_options, folder_files, read_image
from unidad.imageio import to_float_nchw

# Sets whose pixels fit in this are decoded once and held as uint8: a bound that does not grow with the
# dataset, and the tiny demo sets skip per-batch PNG decoding.
PRELOAD_MAX_BYTES = 64 * 2**20

# (iteration, micro-batch id) -> (indices into the set, flip each image or not)
IndexFn = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]


class TrainingImages(torch.utils.data.Dataset):
    """A stage's training images: file paths decoded on access, or a small uint8 array.

    Item `(key, index, flip)` -> `(key, uint8 [H,W,3])`; the key travels with the image so the stream
    can check what it receives."""

    def __init__(self, *, files: list | None = None, pixels: np.ndarray | None = None, image_size: int,
                 on_wrong_size: str = "resize") -> None:
        if (files is None) == (pixels is None):
            raise ValueError("TrainingImages takes either files or pixels")
        self.image_size = check_folder_options(image_size, None, on_wrong_size)
        self.on_wrong_size = on_wrong_size
        # one numpy buffer of paths, not a list of str: workers read it without touching Python
        # refcounts, so forked workers do not copy it page by page
        self._files = None if files is None else np.array([os.fsencode(str(f)) for f in files])
        self._pixels = pixels
        if pixels is not None and (pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != (
                image_size, image_size, 3)):
            raise ValueError(f"pixels must be uint8 [N,{image_size},{image_size},3], got {pixels.dtype} {pixels.shape}")

    @classmethod
    def from_folder(cls, folder, shots: int | None, image_size: int, on_wrong_size: str = "resize",
                    preload_max_bytes: int = PRELOAD_MAX_BYTES) -> "TrainingImages":
        """The first `shots` files (sorted by name; all for None) of an image folder. Decoded once into
        memory when their pixels take at most `preload_max_bytes` (few-shot sets, the demo's 16x16
        source set), else kept as paths and decoded batch by batch. The pixels are the same either way."""
        check_folder_options(image_size, shots, on_wrong_size)
        files = folder_files(folder, shots)
        if len(files) * image_size * image_size * 3 <= preload_max_bytes:
            pixels = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)
            for i, file in enumerate(files):
                pixels[i] = read_image(file, image_size, on_wrong_size)
            return cls(pixels=pixels, image_size=image_size)
        return cls(files=files, image_size=image_size, on_wrong_size=on_wrong_size)

    @property
    def in_memory(self) -> bool:
        return self._pixels is not None

    @classmethod
    def from_pixels(cls, pixels) -> "TrainingImages":
        """A small set held in memory as uint8 [N,H,W,3] (tests, benchmarks)."""
        arr = np.ascontiguousarray(np.asarray(pixels))
        return cls(pixels=arr, image_size=int(arr.shape[1]) if arr.ndim == 4 else 0)

    def __len__(self) -> int:
        return len(self._files) if self._files is not None else len(self._pixels)

    def image(self, index: int) -> np.ndarray:
        if self._pixels is not None:
            return self._pixels[index]
        return read_image(os.fsdecode(self._files[index]), self.image_size, self.on_wrong_size)

    def __getitem__(self, item: tuple[tuple[int, int], int, bool]) -> tuple[tuple[int, int], np.ndarray]:
        key, index, flip = item
        img = self.image(index)
        return key, np.ascontiguousarray(img[:, ::-1] if flip else img)


def _collate(items: list[tuple[tuple[int, int], np.ndarray]]) -> tuple[tuple[int, int], torch.Tensor]:
    """One batch: its key and float NCHW in [-1, 1], converted as the rest of the project does
    (to_float_nchw), in the worker so the training process only moves it to the device."""
    key = items[0][0]
    return key, torch.from_numpy(to_float_nchw(np.stack([img for _, img in items])))


def decode_batch(images, idx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """The float NCHW batch of images[idx] (flipped where `flip`), decoded in this process: a
    TrainingImages set or an already float NCHW tensor (tests, benchmarks)."""
    if isinstance(images, torch.Tensor):
        real = images[idx]
        return torch.where(flip[:, None, None, None], real.flip(-1), real)
    return _collate([images[((0, 0), int(i), bool(f))] for i, f in zip(idx.tolist(), flip.tolist())])[1]


def _quiet_worker(_: int) -> None:
    # SLURM signals every process of the job step; a worker killed by SIGTERM/SIGUSR1 would make the
    # DataLoader raise in the training process before it saves its preemption checkpoint. The
    # training process decides when to stop and shuts the workers down itself.
    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)


class _Keys:
    """Infinite batch sampler: for each iteration from `start`, one batch per micro-batch id."""

    def __init__(self, indices: IndexFn, start: int, micros: list[int], flip: bool) -> None:
        self.indices, self.start, self.micros, self.flip = indices, start, micros, flip

    def __iter__(self) -> Iterator[list[tuple[tuple[int, int], int, bool]]]:
        it = self.start
        while True:
            for micro in self.micros:
                idx, flip = self.indices(it, micro)
                yield [((it, micro), int(i), bool(f) and self.flip) for i, f in zip(idx.tolist(), flip.tolist())]
            it += 1


class BatchStream:
    """Batches of a TrainingImages set for iterations start, start+1, ... in order.

    `batch(iteration, micro)` may be asked several times per iteration (each update of the iteration
    uses the same batch); iterations nobody asks for are decoded and skipped. workers = 0 decodes in
    this process."""

    def __init__(self, images: TrainingImages, indices: IndexFn, *, start: int, micros: list[int], flip: bool,
                 device: torch.device, workers: int = 0, prefetch: int = 2) -> None:
        if workers < 0:
            raise ValueError(f"data workers must be >= 0, got {workers}")
        self.device = device
        loader = torch.utils.data.DataLoader(
            images, batch_sampler=_Keys(indices, start, list(micros), flip), collate_fn=_collate,
            num_workers=workers, prefetch_factor=prefetch if workers else None,
            worker_init_fn=_quiet_worker if workers else None, pin_memory=device.type == "cuda",
            # its own generator: the DataLoader draws a base seed from it, which would otherwise
            # advance the global torch RNG and change the training noise
            generator=torch.Generator().manual_seed(0),
        )
        self._iter: Any = iter(loader)
        self._cache: dict[tuple[int, int], torch.Tensor] = {}

    def batch(self, iteration: int, micro: int) -> torch.Tensor:
        key = (iteration, micro)
        while key not in self._cache:
            if self._iter is None:
                raise RuntimeError("the batch stream is closed")
            got, real = next(self._iter)
            if got[0] > iteration:
                raise RuntimeError(f"batch {key} asked for after the stream passed it (at {got})")
            if got[0] == iteration:
                self._cache[got] = real
        for old in [k for k in self._cache if k[0] < iteration]:
            del self._cache[old]
        return self._cache[key].to(self.device, non_blocking=True)

    def close(self) -> None:
        """Stop the worker processes (their iterator shuts them down when released)."""
        self._iter = None
        self._cache.clear()

    def __enter__(self) -> "BatchStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
