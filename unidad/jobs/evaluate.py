"""Jobs of workflow/rules/evaluate.smk: the demo extractor, reference statistics, sampling a checkpoint,
its metrics, the tidy table of every number, and the import of the run folders and numbers into MLflow.

Every number written here carries its metric id, protocol variant, extractor id and weights SHA-256,
the numbers of generated and reference images and the checkpoint it came from (metrics.md).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from unidad.atomic import atomic_path, write_json_atomic
from unidad.runtime import environment_record, log, set_threads


def train_extractor(out: str | Path, image_size: int, params: Mapping[str, Any], threads: int | None = None) -> dict:
    from unidad.metrics.demo_cnn import train_demo_extractor

    set_threads(threads)
    return train_demo_extractor(out, image_size=image_size, log=log, **dict(params))


def train_sdp_embedding(out: str | Path, image_size: int, params: Mapping[str, Any], threads: int | None = None) -> dict:
    from unidad.metrics.demo_sdp_train import train_sdp_embedding as train

    set_threads(threads)
    return train(out, image_size=image_size, log=log, threads=threads, **dict(params))


def reference_statistics(folder: str | Path, split: str, image_size: int, extractor: str,
                         extractor_file: str | Path | None, out: str | Path, threads: int | None = None) -> None:
    """Features, mean and covariance of a dataset split, resized to the working resolution first
    (PIL bilinear), cached with the extractor's id and weights hash."""
    from unidad.data.folders import load_image_folder
    from unidad.metrics.extractors import load_extractor
    from unidad.metrics.frechet import feature_statistics

    set_threads(threads)
    images = load_image_folder(folder, image_size=image_size, on_wrong_size="resize")
    if split == "full":
        images = images[:5000]  # metrics.md: the first 5000 files in sorted order
    ext = load_extractor(extractor, extractor_file)
    feats = ext(images)
    mu, sigma = feature_statistics(feats)
    with atomic_path(out) as tmp:
        np.savez(tmp, features=feats, mu=mu, sigma=sigma, extractor=ext.id, extractor_sha256=ext.weights_sha256,
                 resize_protocol=str(ext.resize_protocol), n=len(feats), folder=str(folder), image_size=image_size)
    log(f"[reference] {folder} ({split}): {len(feats)} images -> {out}")


def sample_checkpoint(backbone: Mapping[str, Any], weights: str | Path, module: str, sampling: Mapping[str, Any],
                      nfes: Sequence[int], grid_nfe: int, seeds: Sequence[int], batch_size: int, step: int,
                      out_npz: str | Path, out_grid: str | Path, device: str = "auto",
                      threads: int | None = None, prompts: Sequence[str] | None = None,
                      corrected_nfes: Sequence[int] = ()) -> None:
    """Samples one checkpoint at every NFE it is evaluated at into one file (uint8 images per NFE, the
    same per-image seeds for every NFE and every method); the grid shows the method's own NFE.
    prompts (text-conditioned backbones): one per seed, stored beside the images.
    `corrected_nfes`: NFEs also sampled with noise correction, stored as `images_nfe<K>_nc`."""
    from unidad.imageio import save_grid
    from unidad.jobs.teachers import sample_product
    from unidad.eval_units import sample_key

    arrays: dict[str, Any] = {}
    timings, samplings = {}, {}
    for nfe, corrected in [(n, False) for n in nfes] + [(n, True) for n in corrected_nfes]:
        s = dict(sampling)
        if s["kind"] == "few_step":
            s["steps"] = nfe
        if corrected:
            s["noise_correction"] = True
        key = sample_key(nfe, corrected)
        images, timing = sample_product(backbone, weights, module, s, seeds, batch_size, device, threads, prompts)
        arrays[f"images_nfe{key}"] = images
        timings[key], samplings[key] = timing, s
        if nfe == grid_nfe and not corrected:
            save_grid(images[:64], out_grid, nrow=8)
    if prompts is not None:
        arrays["prompts"] = np.asarray(list(prompts), dtype=str)
    with atomic_path(out_npz) as tmp:
        # uint8 and lossless: the same values PNG files would hold
        np.savez_compressed(tmp, seeds=np.asarray(seeds), timing=json.dumps(timings), sampling=json.dumps(samplings),
                            checkpoint=str(weights), step=step, **arrays)


def compute_metrics(inputs, outputs: Mapping[str, str | Path], slug: str, step: int,
                    threads: int | None = None) -> None:
    """Every configured metric of one checkpoint (all its NFEs), one JSON per metric.

    `inputs` is a MetricInputs (unidad.metrics.inputs). A metric already computed for these exact
    samples and protocol is restored from a cache next to the samples instead of recomputed, so adding
    a metric to the config computes only that metric. Each record carries the environment it was
    computed in (unidad.runtime.environment_record), which is not part of the cache key, and
    `standin` (computed in a rehearsal, from stand-in weights: never a real result)."""
    from unidad import standins
    from unidad.metrics.registry import get_metric
    from unidad.weights_file import sha256_file

    set_threads(threads)
    metrics = {name: get_metric(name) for name in outputs}
    samples = Path(inputs.samples)
    cache_dir = samples.parent / ".metric_cache"
    cache_dir.mkdir(exist_ok=True)
    samples_hash = sha256_file(samples)
    for name, out in outputs.items():
        metric = metrics[name]
        protocol = metric.protocol(inputs)
        cached = cache_dir / f"{name}.json"
        if cached.exists():
            rec = json.loads(cached.read_text())
            if rec.get("samples_sha256") == samples_hash and rec.get("protocol") == protocol:
                rec.setdefault("environment", None)  # computed before records carried one
                rec["evaluation_protocol"] = inputs.evaluation_protocol  # the label follows the settings
                rec["standin"] = bool(rec.get("standin")) or standins.active()
                write_json_atomic(out, rec)
                log(f"[metrics] {name}: up to date for these samples (cache)")
                continue
        # the environment is recorded, never compared: a cache hit keeps the record of the job that
        # computed the number
        rec = {"metric": name, "slug": slug, "step": step, "checkpoint": inputs.checkpoint,
               "samples_sha256": samples_hash, "protocol": protocol,
               "evaluation_protocol": inputs.evaluation_protocol, "environment": environment_record(),
               "per_nfe": {}}
        started = time.perf_counter()
        for nfe, images in inputs.images.items():
            record = {"n_generated": int(len(images)), "variant": "", "extractor": "", "extractor_sha256": "",
                      "n_reference": 0, "values": {}, "values_val": {}, "params": {}}
            record.update(metric.compute(inputs, nfe, images))
            rec["per_nfe"][str(nfe)] = record
        # a rehearsal's number derives from stand-in weights (its source model at least): stamped
        rec["standin"] = standins.active()
        write_json_atomic(cached, rec)
        write_json_atomic(out, rec)
        log(f"[metrics] {name}: computed for NFE {sorted(inputs.images, key=str)} in "
            f"{time.perf_counter() - started:.1f} s")


def tidy_results(benchmark: str, units: Sequence[Mapping[str, Any]], references: Mapping[str, Any] | None,
                 runs: Mapping[str, Mapping[str, Any]], out_csv: str | Path, out_parquet: str | Path,
                 out_runs: str | Path, selections: Sequence[str] = ("final", "best_val")) -> int:
    """The tidy table (CSV and Parquet) with one row per number and its checkpoint-selection rows, and
    the run table (every training run's resolved options, keyed by slug). Returns the tidy table's row
    count. (The numbers reach MLflow through the mlflow_import job.)"""
    from unidad.results.collect import collect_tidy, run_table
    from unidad.results.select import with_selection

    tidy = with_selection(collect_tidy(benchmark, units, references), selections)
    with atomic_path(out_csv) as tmp:
        tidy.to_csv(tmp, index=False)
    with atomic_path(out_parquet) as tmp:
        tidy.to_parquet(tmp, index=False)
    with atomic_path(out_runs) as tmp:
        run_table(runs).to_csv(tmp, index=False)
    log(f"{len(tidy)} rows")
    return len(tidy)


def prune_snapshots(tidy_parquet: str | Path, run_dirs: Mapping[str, str], final_steps: Mapping[str, int],
                    evaluated: Mapping[str, Sequence[int]], out: str | Path) -> dict[str, Any]:
    """Deletes the evaluated snapshots that are neither final nor chosen by a selection (unidad.snapshots)
    and writes what went."""
    import pandas as pd

    from unidad.snapshots import prune_snapshots as prune, snapshots_to_keep

    keep = snapshots_to_keep(pd.read_parquet(tidy_parquet, columns=["slug", "step", "selection"]), final_steps)
    report = prune(run_dirs, evaluated, keep)
    write_json_atomic(out, report)
    log(f"[prune] {report['removed']} snapshots removed ({report['bytes_removed'] / 1e9:.2f} GB), "
        f"{len(report['kept_files'])} evaluated ones kept (final or selected)")
    return report


def mlflow_import(benchmark: str, run_dirs: Mapping[str, str], tracking: Mapping[str, Any], tidy_parquet: str | Path,
                  out: str | Path) -> dict[str, Any]:
    """Every training run folder (run.yaml, stats.jsonl) and every evaluation number of the tidy table
    into the MLflow store, once per DAG run (unidad.mlflow_import: idempotent, one MLflow run per
    training run). `tracking`: the config's kind, uri, experiment and results_dir. Tracking errors only
    warn; the report (what was imported, per run) is written either way."""
    import pandas as pd

    from unidad.mlflow_import import import_runs

    tidy = pd.read_parquet(tidy_parquet)
    report = import_runs(run_dirs, tidy, benchmark, **tracking)
    write_json_atomic(out, report)
    runs = report["runs"].values()
    errors = [f"{r['slug']}: {r['error']}" for r in runs if r["error"]]
    log(f"[mlflow] {report.get('tracking_uri', 'tracking off')} ({report.get('experiment', '')}): "
        f"{sum(1 for r in runs if r['run_id'] and not r['error'])} runs up to date, "
        f"{sum(r['new_stats_points'] for r in runs)} new training points, "
        f"{sum(r['new_eval_points'] for r in runs)} new evaluation points")
    for line in errors:
        log(f"[mlflow] warning: {line}; the files stay the record, the next import retries")
    return report
