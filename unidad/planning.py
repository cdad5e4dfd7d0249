"""`unidad plan`: what a config will cost before anything is spent."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from unidad.backbones import backbone_kind
from unidad.plan import Plan

MEMORY_CLASS = {"none": "CPU only", "small": "< 16 GB", "medium": "16-40 GB", "large": "> 40 GB"}


def _measured_step_seconds(plan: Plan) -> dict[str, float]:
    """Seconds per iteration of every stage kind that has finished runs under this results folder."""
    per_kind: dict[str, list[float]] = defaultdict(list)
    for slug, run in plan.runs.items():
        path = plan.summary(slug)
        if path.exists():
            s = json.loads(path.read_text())
            if s.get("step"):
                per_kind[run.stage].append(s["wall_seconds"] / s["step"])
    return {k: sum(v) / len(v) for k, v in per_kind.items()}


def estimate(config: dict[str, Any], step_seconds: float | None = None) -> dict[str, Any]:
    plan = Plan(config)
    kind = config["backbone"]["kind"]
    backbone = backbone_kind(config["backbone"])
    measured = _measured_step_seconds(plan)
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
    jobs["reference_statistics"] = 2 * len(config["targets"])
    jobs["tables+figures+report"] = 3 + len(config["targets"])
    return {
        "benchmark": config["benchmark"], "backbone": kind, "gpus_per_training_job": gpus,
        "memory_class": MEMORY_CLASS[config["backbone"].get("gpu_memory_class", "none")],
        "jobs": dict(jobs), "training_runs": len(plan.runs), "method_runs": len(plan.method_runs),
        "hours_per_method_run": {m: per_method[m] / 3600 / max(1, sum(1 for r in plan.method_runs if r.label == m))
                                 for m in per_method},
        "device_hours_total": unique_seconds / 3600 * max(1, gpus),
        "estimate_sources": dict(source_of),
    }


def print_plan(config: dict[str, Any], step_seconds: float | None = None) -> None:
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


def summarise_job_times(path: Path) -> int:
    """Print the DAG's own timing log (results/<benchmark>/logs/job_times.jsonl): per rule the jobs and
    their summed seconds, and the wall time from the first job's start to the last job's end, counting
    for each job only its latest run (a rerun replaces the earlier one)."""
    if not path.exists():
        print(f"unidad timing: no {path} yet; run the DAG first")
        return 1
    latest: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            latest[rec["job"]] = rec
    per_rule: dict[str, list[float]] = defaultdict(list)
    for rec in latest.values():
        per_rule[rec["rule"]].append(rec["seconds"])
    start = min(r["start"] for r in latest.values())
    end = max(r["end"] for r in latest.values())
    busy = sum(r["seconds"] * max(1, r["threads"]) for r in latest.values())
    print(f"{path}: {len(latest)} jobs")
    print(f"{'rule':24s} {'jobs':>5s} {'seconds':>9s} {'mean':>7s}")
    for rule, secs in sorted(per_rule.items(), key=lambda kv: -sum(kv[1])):
        print(f"{rule:24s} {len(secs):5d} {sum(secs):9.0f} {sum(secs) / len(secs):7.1f}")
    print(f"wall time, first job start to last job end: {end - start:.0f} s ({(end - start) / 60:.1f} min); "
          f"thread-seconds of all jobs: {busy:.0f}")
    return 0
