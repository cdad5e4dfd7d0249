"""`unidad plan`: what a config will cost before anything is spent."""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from unidad.backbones import backbone_kind
from unidad.job_requests import JobRequests, benchmark_dir, measured_step_seconds, read_benchmarks
from unidad.jobs.params import reference_splits
from unidad.plan import Plan

MEMORY_CLASS = {"none": "CPU only", "small": "< 16 GB", "medium": "16-40 GB", "large": "> 40 GB"}


def estimate(config: dict[str, Any], step_seconds: float | None = None) -> dict[str, Any]:
    plan = Plan(config)
    kind = config["backbone"]["kind"]
    backbone = backbone_kind(config["backbone"])
    measured = measured_step_seconds(plan)
    # seconds per training iteration when nothing has been measured yet: the backbone's own figures
    defaults = backbone.step_seconds
    gpus = int(config.get("resources", {}).get("train", {}).get("gpus", 0 if backbone.cpu_only else 1))

    def seconds(run) -> tuple[float, str]:
        if step_seconds is not None:
            return step_seconds * run.params["iterations"], "given"
        if run.stage in measured:
            return measured[run.stage] * run.params["iterations"], "measured"
        return defaults.get(run.stage, 1.0) * run.params["iterations"], "default"

    per_method: dict[str, float] = defaultdict(float)
    source_of: Counter = Counter()
    for mr in plan.method_runs:
        for slug in dict.fromkeys(mr.stages):
            secs, src = seconds(plan.runs[slug])
            per_method[mr.label] += secs
            source_of[src] += 1
    unique_seconds = sum(seconds(r)[0] for r in plan.runs.values())
    jobs = Counter({"train_stage": len(plan.runs), "sample_checkpoint": len(plan.eval_checkpoints),
                    "checkpoint_metrics": len(plan.eval_checkpoints)})
    jobs["demo_split"] = sum(1 for d in config["datasets"].values() if d["kind"] == "demo") and (
        len({r.data["dataset"] + str(r.data.get("shots")) for r in plan.runs.values()}) + 2 * len(config["targets"]))
    jobs["reference_statistics"] = sum(len(reference_splits(plan, t)) for t in config["targets"])
    requests = JobRequests(plan)  # the sampling and metrics jobs' own estimates (what they ask SLURM for)
    eval_gpus = int(config.get("resources", {}).get("sample", {}).get("gpus", 0 if backbone.cpu_only else 1))
    eval_seconds = {"sample_checkpoint": sum(requests.sample(s, k).seconds for s, k in plan.eval_checkpoints),
                    "checkpoint_metrics": sum(requests.checkpoint_metrics(s, k).seconds for s, k in plan.eval_checkpoints)}
    jobs["tables+figures+report"] = 3 + len(config["targets"])
    return {
        "benchmark": config["benchmark"], "backbone": kind, "gpus_per_training_job": gpus,
        "memory_class": MEMORY_CLASS[config["backbone"].get("gpu_memory_class", "none")],
        "jobs": dict(jobs), "training_runs": len(plan.runs), "method_runs": len(plan.method_runs),
        "hours_per_method_run": {m: per_method[m] / 3600 / max(1, sum(1 for r in plan.method_runs if r.label == m))
                                 for m in per_method},
        "device_hours_total": unique_seconds / 3600 * max(1, gpus),
        "evaluation_hours": {rule: secs / 3600 * max(1, eval_gpus) for rule, secs in eval_seconds.items()},
        "estimate_sources": dict(source_of),
    }


def print_plan(config: dict[str, Any], step_seconds: float | None = None) -> dict[str, Any]:
    e = estimate(config, step_seconds)
    unit = "GPU" if e["gpus_per_training_job"] else "CPU"
    print(f"benchmark {e['benchmark']}: backbone {e['backbone']}, {e['training_runs']} training runs "
          f"for {e['method_runs']} (target, shots, method, seed) combinations")
    print("jobs per rule:")
    for rule, n in e["jobs"].items():
        print(f"  {rule:24s} {n}")
    print(f"training jobs: {e['gpus_per_training_job']} GPU(s) each, peak memory class: {e['memory_class']}")
    print(f"{unit}-hours per method run (estimate; shared stages counted in full for each method):")
    for method, hours in sorted(e["hours_per_method_run"].items()):
        print(f"  {method:14s} {hours:8.3f}")
    print(f"{unit}-hours for the whole DAG's training (shared stages once): {e['device_hours_total']:.3f}")
    print(f"step times: {', '.join(f'{k}: {v}' for k, v in e['estimate_sources'].items())}")
    for rule, hours in e["evaluation_hours"].items():
        print(f"{unit}-hours of {rule} jobs (their requests' estimates, unidad.job_requests): {hours:.1f}")
    from unidad.disk import print_disk

    e["disk"] = print_disk(Plan(config))
    return e


def summarise_benchmarks(root: Path) -> int:
    """Print the Snakemake benchmark files of a results folder (results/<benchmark>/benchmarks/<rule>/,
    one per job, rewritten by a rerun): per rule the jobs, their summed and mean seconds and the largest
    peak memory (max_rss); then the wall time from the first job's start to the last job's end. A
    benchmark file holds no start time: a job started at the file's modification time (written as the
    job ended) minus its seconds."""
    records = read_benchmarks(root)
    if not records:
        print(f"unidad timing: no benchmark files under {benchmark_dir(root)} yet; run the DAG first")
        return 1
    per_rule: dict[str, list] = defaultdict(list)
    for rec in records:
        per_rule[rec.rule].append(rec)
    start = min(r.end - r.seconds for r in records)
    end = max(r.end for r in records)
    cpu = sum(r.cpu_seconds or 0.0 for r in records)
    print(f"{benchmark_dir(root)}: {len(records)} jobs")
    print(f"{'rule':24s} {'jobs':>5s} {'seconds':>9s} {'mean':>7s} {'max_rss MB':>10s}")
    for rule, recs in sorted(per_rule.items(), key=lambda kv: -sum(r.seconds for r in kv[1])):
        secs = [r.seconds for r in recs]
        rss = [r.max_rss_mb for r in recs if r.max_rss_mb is not None]
        peak = f"{max(rss):10.0f}" if rss else f"{'-':>10s}"
        print(f"{rule:24s} {len(secs):5d} {sum(secs):9.0f} {sum(secs) / len(secs):7.1f} {peak}")
    print(f"wall time, first job start to last job end: {end - start:.0f} s ({(end - start) / 60:.1f} min; "
          f"starts are file times minus seconds); CPU seconds of all jobs: {cpu:.0f}")
    return 0
