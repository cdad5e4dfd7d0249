"""Train one stage on a demo target with given options and print the oracle's verdict: a quick way to
tune a stage's demo options without running the DAG (how config/config.yaml's were chosen, see
docs/demo_tuning.md).

    .venv/bin/python benchmarks/probe_stage.py unidad near '{"iterations": 400, "lr": 3e-4, "fake_lr": 3e-3}'
    .venv/bin/python benchmarks/probe_stage.py dmd2 source '{"iterations": 400}' --grid /tmp/dmd2.png

The stage trains on the dataset's k-shot set (--shots). Options not given come from the config as
the DAG resolves them (datasets.<name>.stage_params, stage_params, the stage's defaults). Every weights role
reads the demo DAG's source teacher (run `make demo` first) unless --weights maps a role to a file,
e.g. --weights '{"target_teacher": "results/demo/runs/<ft run>/checkpoints/step00000300/weights.safetensors"}'.
Prints one JSON line: options, training seconds, in-target rate, mode coverage, TV distance.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", help="stage id (unidad, dmd2, ft, student_ft, ...)")
    parser.add_argument("dataset", help="demo dataset the stage trains on and is judged on (source, near, far)")
    parser.add_argument("options", nargs="?", default="{}", help="JSON object of stage options")
    parser.add_argument("--config", default=str(ROOT / "config" / "config.yaml"))
    parser.add_argument("--weights", default="{}", help="JSON {role: weights file} overriding the source teacher")
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--grid", default="", help="write the first 64 samples here (PNG)")
    args = parser.parse_args()

    import torch

    from unidad.backbones import build_backbone
    from unidad.config import load_config_file
    from unidad.data.datasets import make_fewshot
    from unidad.data.domains import oracle_report
    from unidad.data.stream import TrainingImages
    from unidad.imageio import save_grid
    from unidad.plan import Plan
    from unidad.sampling import generate
    from unidad.stages import StageContext
    from unidad.train.loop import train

    torch.set_num_threads(args.threads)
    config = load_config_file(args.config)
    dataset = config["datasets"][args.dataset]
    plan = Plan(config)
    cls, cfg = plan.stage_config(args.stage, json.loads(args.options), "probe_stage: ", args.dataset)
    source = plan.source_weights()
    if not source.exists():
        raise SystemExit(f"probe_stage: {source} does not exist; run `make demo` (or its source_teacher rule) first")
    weights = {role: (source, "model") for role in cls.roles}
    weights.update({role: (Path(path), "model") for role, path in json.loads(args.weights).items()})
    shots = make_fewshot(dataset["domain"], args.shots, seed=dataset.get("seed", 0), image_size=plan.image_size)
    ctx = StageContext(backbone_factory=lambda: build_backbone(config["backbone"]), weights=weights,
                       real_images=TrainingImages.from_pixels(shots), device=torch.device("cpu"), seed=args.seed)
    stage = cls(cfg, ctx)
    with tempfile.TemporaryDirectory() as run_dir:
        started = time.perf_counter()
        train(stage, Path(run_dir), log=lambda msg: None)
        seconds = time.perf_counter() - started
    model = stage.modules[cls.product_module(cfg)]
    images, _ = generate(model, cls.sampling_of(cfg), range(args.samples), batch_size=250)
    report = oracle_report(images, dataset["domain"])
    if args.grid:
        save_grid(images[:64], args.grid, nrow=8)
    print(json.dumps({"stage": args.stage, "dataset": args.dataset, "options": json.loads(args.options),
                      "train_seconds": round(seconds, 1), "in_target": report["in_domain_rate"],
                      "mode_coverage": report["mode_coverage"], "tv": round(report["tv_distance"], 3),
                      "rule_pass_rates": report["rule_pass_rates"]}))


if __name__ == "__main__":
    main()
