"""`unidad plan`: what a config will cost before anything is spent."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

from unidad.plan import Plan

# seconds per training iteration when nothing has been measured yet, by backbone and stage kind;
# rough single-GPU (H100-class) figures for the paper backbones at the paper's batch sizes, and CPU
# figures for the demo's tiny UNet
DEFAULT_STEP_SECONDS = {
    "tiny": {"pretrain": 0.12, "ft": 0.03, "student_ft": 0.03, "dmd2": 0.09, "unidad": 0.12},
    "adm": {"pretrain": 1.0, "ft": 0.25, "student_ft": 0.25, "dmd2": 0.22, "unidad": 0.26},
    "sd15": {"pretrain": 1.0, "ft": 0.35, "student_ft": 0.35, "dmd2": 0.9, "unidad": 1.1},
}
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
    measured = _measured_step_seconds(plan)
    defaults = DEFAULT_STEP_SECONDS.get(kind, DEFAULT_STEP_SECONDS["adm"])
    gpus = int(config.get("resources", {}).get("train", {}).get("gpus", 0 if kind == "tiny" else 1))

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
            per_method[mr.method] += secs
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
        "hours_per_method_run": {m: per_method[m] / 3600 / max(1, sum(1 for r in plan.method_runs if r.method == m))
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
