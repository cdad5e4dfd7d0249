"""Sampling cost of a few-step student (K = 3) against the fine-tuned teacher's 25-step Euler sampler
(FT) on the FSIG ADM backbone, through the sample job's own function (`unidad.sampling.generate`).

    .venv/bin/python benchmarks/bench_sampling.py --scale adm256 --device cuda [--precision fp32 bf16] [--images 500]

Random ADM weights (sampling time does not depend on them). One untimed warm-up batch per precision
(the student's: both samplers run the same network on the same shapes), then `--images` images per
sampler at the evaluation batch size (50, as the paper configs); the 5000-image time is projected from
the measured rate (batches run one after another at a fixed size, so the time is linear in the number
of batches; the projection is labelled as one). bf16 runs `generate` under autocast; fp32 is what the
sample job runs today (with --tf32, TF32 matrix products). Prints images/s, the seconds for 5000
images, the FT / student ratio, and the peak memory. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAPER_IMAGES = 5000
SAMPLERS = {"student, 3 NFE": {"kind": "few_step", "steps": 3},
            "FT, Euler 25 NFE": {"kind": "many_step", "sampler": "euler", "steps": 25}}


def measure(model, sampling: dict, precision: str, seeds, batch: int, device) -> dict:
    import torch

    from unidad.sampling import generate

    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        return generate(model, sampling, list(seeds), batch_size=batch, device=device)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="reduced", help="adm256, reduced or tiny (bench_side_by_side.SCALES)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=["fp32"])
    ap.add_argument("--images", type=int, default=100, help="timed images per sampler and precision")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tf32", action="store_true")
    args = ap.parse_args()
    sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]
    import torch

    from bench_side_by_side import SCALES, device_peak, random_adm

    if args.scale not in SCALES:
        raise SystemExit(f"bench_sampling: --scale {args.scale} is not one of {', '.join(SCALES)}")
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    device = torch.device(args.device)
    model = random_adm(args.scale).to(device)
    name, _, _ = device_peak(args.device, "fp32", args.tf32)
    print(f"{args.scale} ADM sampling on {name}, batch {args.batch}, {args.images} timed images per row"
          f"{', TF32 allowed' if args.tf32 else ''}; {PAPER_IMAGES} images projected from the measured rate")
    for precision in args.precision:
        measure(model, SAMPLERS["student, 3 NFE"], precision, range(args.batch), args.batch, device)
        rows = {}
        for label, sampling in SAMPLERS.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            rows[label] = measure(model, sampling, precision, range(args.batch, args.batch + args.images),
                                  args.batch, device)
            peak = (f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GB" if device.type == "cuda" else "")
            print(f"{precision:5s} {label:17s} {rows[label]['images_per_second']:8.2f} img/s  "
                  f"{PAPER_IMAGES} images in {rows[label]['seconds_per_image'] * PAPER_IMAGES:7.1f} s (projected){peak}")
        student, ft = (rows[label]["seconds_per_image"] for label in SAMPLERS)
        print(f"{precision:5s} FT / student time: {ft / student:.2f}")


if __name__ == "__main__":
    main()
