"""Memory of the training data path against the size of the dataset.

Writes generated 256x256 PNGs into a temporary folder (8k files; the 1k/2k/4k folders hard-link the first
files), then for each size, in a fresh process, streams `--batches` batches through the path the
training job uses (TrainingImages.from_folder -> BatchStream with worker processes -> float batches)
and prints the peak RSS of the training process and of its workers. Flat figures from 1k to 8k mean
the data path does not hold the dataset; the last column is what one float32 tensor of the folder
(the path before streaming) would take.

    python benchmarks/bench_data_memory.py [--sizes 1000 2000 4000 8000] [--batches 200] [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE_SIZE = 256


def write_images(folder: Path, n: int, seed: int = 0) -> None:
    """n smooth random 256x256 PNGs (bilinear upsampled 8x8 noise plus a little grain: real-photo-like
    file sizes of 100-200 kB, quick to write)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        img = np.asarray(small.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR), dtype=np.int16)
        img = np.clip(img + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:05d}.png", compress_level=1)


def link_subset(full: Path, folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        os.link(full / f"{i:05d}.png", folder / f"{i:05d}.png")


def measure(folder: str, batches: int, batch_size: int, workers: int) -> dict:
    """Run in a fresh process: stream `batches` batches and report peak RSS (MiB)."""
    import torch

    from unidad.data.stream import BatchStream, TrainingImages
    from unidad.train.loop import batch_indices

    torch.set_num_threads(1)
    images = TrainingImages.from_folder(folder, shots=None, image_size=IMAGE_SIZE)
    n = len(images)
    t0 = time.perf_counter()
    with BatchStream(images, lambda it, m: batch_indices(0, it, m, n, batch_size), start=0, micros=[0], flip=True,
                     device=torch.device("cpu"), workers=workers) as stream:
        checksum = 0.0
        for it in range(batches):
            checksum += float(stream.batch(it, 0)[:, :, 0, 0].sum())
    wall = time.perf_counter() - t0
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest worker
    return {"n_images": n, "in_memory": images.in_memory, "peak_rss_mib": own, "peak_worker_rss_mib": children,
            "images_per_s": batches * batch_size / wall, "checksum": checksum}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # internal: the child process
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.batches, args.batch_size, args.workers)))
        return
    with tempfile.TemporaryDirectory(prefix="bench_data_memory_") as tmp:
        full = Path(tmp) / f"n{max(args.sizes)}"
        t0 = time.perf_counter()
        write_images(full, max(args.sizes))
        print(f"wrote {max(args.sizes)} {IMAGE_SIZE}x{IMAGE_SIZE} PNGs in {time.perf_counter() - t0:.0f} s "
              f"({sum(f.stat().st_size for f in full.iterdir()) / 2**20:.0f} MiB)")
        print(f"{args.batches} batches of {args.batch_size}, {args.workers} worker(s)")
        print(f"{'images':>7} {'peak RSS MiB':>13} {'peak worker RSS MiB':>20} {'images/s':>9} "
              f"{'one float32 tensor of the folder, MiB':>38}")
        for n in sorted(args.sizes):
            folder = full if n == max(args.sizes) else Path(tmp) / f"n{n}"
            if folder != full:
                link_subset(full, folder, n)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
            out = subprocess.run([sys.executable, __file__, "--measure", str(folder), "--batches", str(args.batches),
                                  "--batch-size", str(args.batch_size), "--workers", str(args.workers)],
                                 check=True, capture_output=True, text=True, env=env)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            whole = n * 3 * IMAGE_SIZE * IMAGE_SIZE * 4 / 2**20
            print(f"{r['n_images']:>7} {r['peak_rss_mib']:>13.0f} {r['peak_worker_rss_mib']:>20.0f} "
                  f"{r['images_per_s']:>9.0f} {whole:>38.0f}", flush=True)


if __name__ == "__main__":
    main()
