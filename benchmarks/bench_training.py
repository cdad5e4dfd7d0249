"""Training speed and memory on this machine: demo teacher pretraining and one Uni-DAD iteration per
target-teacher mode (none / online / frozen), on the demo backbone.

    .venv/bin/python benchmarks/bench_training.py [--teacher-steps 200] [--unidad-steps 40] [--device cpu]

Each measurement runs in its own process so peak memory (max RSS on CPU, max allocated on CUDA) is
that configuration's own. Figures are printed; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _child(kind: str, steps: int, device: str, threads: int) -> dict:
    import resource
    import tempfile

    import torch
    import yaml

    from unidad.weights_file import export_weights
    from unidad.data.domains import get_domain
    from unidad.data.stream import TrainingImages
    from unidad.stages import StageContext, get_stage
    from unidad.train.loop import train

    torch.set_num_threads(threads)
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    bb = cfg["backbone"]["params"]
    from unidad.backbones.tiny import TinyUNet

    factory = lambda: TinyUNet(**bb)  # noqa: E731
    dev = torch.device(device)
    tmp = Path(tempfile.mkdtemp())
    export_weights(tmp / "source.safetensors", {"model": factory()})
    if kind == "teacher":
        images, _ = get_domain("source").sample(2000, seed=0, image_size=bb["image_size"])
        stage_id, params = "pretrain", dict(cfg["source"]["params"])
    else:
        images, _ = get_domain("far").sample(10, seed=0, image_size=bb["image_size"])
        stage_id, params = "unidad", dict(cfg["stage_params"]["unidad"])
        params["target_teacher"] = kind
    params.update(iterations=steps, checkpoint_every=steps, log_every=max(1, steps))
    cls = get_stage(stage_id)
    ctx = StageContext(backbone_factory=factory,
                       weights={r: (tmp / "source.safetensors", "model") for r in cls.roles},
                       real_images=TrainingImages.from_pixels(images), device=dev, seed=0)
    stage = cls(cls.config_cls.from_dict(params), ctx)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    summary = train(stage, tmp / "run", log=lambda *_: None)
    wall = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"kind": kind, "steps": steps, "batch_size": params.get("batch_size"), "wall_s": wall,
            "it_per_s": steps / wall, "peak_mb": peak, "peak_kind": "cuda max allocated" if dev.type == "cuda" else "max RSS",
            "images_seen": summary["images_seen"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher-steps", type=int, default=200)
    ap.add_argument("--unidad-steps", type=int, default=40)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], int(args.child[1]), args.device, args.threads)))
        return
    cfg_steps = __import__("yaml").safe_load((ROOT / "config" / "config.yaml").read_text())["source"]["params"]["iterations"]
    rows = []
    for kind, steps in [("teacher", args.teacher_steps), ("none", args.unidad_steps), ("online", args.unidad_steps),
                        ("frozen", args.unidad_steps)]:
        out = subprocess.run([sys.executable, __file__, "--child", kind, str(steps), "--device", args.device,
                              "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"device {args.device}, {args.threads} thread(s)")
    for r in rows:
        label = "teacher pretraining" if r["kind"] == "teacher" else f"Uni-DAD, target teacher {r['kind']}"
        print(f"{label:34s} {r['it_per_s']:7.2f} it/s (batch {r['batch_size']}), peak {r['peak_mb']:.0f} MB ({r['peak_kind']})")
    t = rows[0]
    print(f"demo teacher ({cfg_steps} iterations, config/config.yaml): estimated {cfg_steps / t['it_per_s'] / 60:.1f} min")
    base = next(r for r in rows if r["kind"] == "none")
    for r in rows[2:]:
        print(f"target teacher {r['kind']:6s}: {base['it_per_s'] / r['it_per_s']:.2f}x the time per iteration of 'none', "
              f"{r['peak_mb'] / base['peak_mb']:.2f}x its peak memory")


if __name__ == "__main__":
    main()
