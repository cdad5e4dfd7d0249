"""Evaluation speed on this machine: feature-extraction throughput of each extractor, and the share
of a checkpoint's evaluation time spent outside feature extraction.

    .venv/bin/python benchmarks/bench_eval.py [--config config/config.yaml] [--n 1000]
    .venv/bin/python benchmarks/bench_eval.py --relative [--train-iters 4]

Needs a finished run of that config (its demo extractor, reference statistics and one sample set).
Staged real extractors (Inception-v3) are measured too when their weights resolve. Prints figures.

--relative needs no run (bench_eval_relative.py): the cost of evaluating one checkpoint against the
cost of training the segment that produced it, at demo scale and at reduced paper scale.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _throughput(extractor, images, repeats=3) -> float:
    extractor(images[:64])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        extractor(images)
        best = min(best, time.perf_counter() - t0)
    return len(images) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--relative", action="store_true", help="evaluation vs training cost, without a finished run")
    ap.add_argument("--train-iters", type=int, default=4, help="--relative: timed training iterations per scale")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.relative:
        from bench_eval_relative import relative_cost

        relative_cost(args.train_iters)
        return

    from unidad.config import load_config_file
    from unidad.data.domains import get_domain
    from unidad.jobs.evaluate import compute_metrics
    from unidad.jobs.params import demo_extractor_file, metric_inputs
    from unidad.metrics import demo_extractor as demo
    from unidad.metrics.inputs import MetricInputs
    from unidad.plan import Plan

    config = load_config_file(args.config)
    plan = Plan(config)
    weights = demo_extractor_file(plan)
    if weights is None or not weights.exists():
        raise SystemExit(f"no demo extractor at {weights}: run the DAG for {args.config} first (make demo)")
    images, _ = get_domain(config["datasets"][config["targets"][0]]["domain"]).sample(args.n, seed=99)
    rows = [("demo-cnn-v1 features", _throughput(demo.DemoFeatureExtractor(weights), images))]
    dist = demo.DemoPerceptualDistance(weights)
    rows.append(("demo LPIPS-style embedding", _throughput(dist.embed, images)))
    try:
        from unidad.metrics.extractors import InceptionV3Extractor
        from unidad.weights import resolve

        inc = InceptionV3Extractor(resolve("inception_v3_tf"))
        rows.append(("inception-v3 (torch-fidelity protocol)", _throughput(inc, images[:200], repeats=1)))
    except Exception as exc:  # weights not staged here
        print(f"inception-v3: not measured ({str(exc).splitlines()[0][:120]})")
    print(f"feature extraction, {args.threads} thread(s), {args.n} images of {images.shape[1]}x{images.shape[2]}:")
    for name, rate in rows:
        print(f"  {name:40s} {rate:9.0f} images/s")

    # one checkpoint's metrics, with the time inside feature extraction measured
    slug, step = plan.eval_checkpoints[-1]
    src = plan.samples_file(slug, step)
    if not src.exists():
        raise SystemExit(f"no samples at {src}: run the DAG for {args.config} first")
    spent = {"features": 0.0}

    def timed(fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent["features"] += time.perf_counter() - t0
        return wrapper

    demo.DemoFeatureExtractor.__call__ = timed(demo.DemoFeatureExtractor.__call__)
    demo.DemoPerceptualDistance.embed = timed(demo.DemoPerceptualDistance.embed)
    with tempfile.TemporaryDirectory() as tmp:
        samples = Path(tmp) / "samples.npz"
        shutil.copy(src, samples)  # a fresh folder: no metric cache
        outputs = {m: Path(tmp) / f"{m}.json" for m in config["evaluation"]["metrics"]}
        t0 = time.perf_counter()
        inputs = MetricInputs.from_params({**metric_inputs(plan, slug, step), "samples": str(samples)})
        compute_metrics(inputs, outputs, slug, step, threads=args.threads)
        total = time.perf_counter() - t0
    with np.load(src) as stored:
        n_sets = sum(1 for key in stored.files if key.startswith("images_nfe"))
    print(f"metrics of one checkpoint ({slug} step {step}, {n_sets} NFE sample set(s), "
          f"{', '.join(outputs)}): {total:.2f} s, of which feature extraction {spent['features']:.2f} s; "
          f"share outside feature extraction: {100 * (1 - spent['features'] / total):.0f}%")


if __name__ == "__main__":
    main()
