# Validation, wildcard constraints and input functions only; the logic lives in the unidad package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir)))

from unidad.config import ConfigError, validate_config
from unidad.plan import Plan

try:
    validate_config(config)
    PLAN = Plan(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None

R = str(PLAN.root)
# The report groups everything under the benchmark, so reports of several configs read apart.
REPORT_CATEGORY = f"Benchmark {config['benchmark']}"


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",
    split=r"train|full|val|k\d+",
    slug=r"[A-Za-z0-9_.-]+",
    end=r"\d{8}",


def resource_settings(kind):
    """Config `resources.<kind>` (gpus, cpus, mem_mb, runtime in minutes) over these defaults."""
    defaults = {
        "train": {"cpus": 2, "mem_mb": 4000, "runtime": 120, "gpus": 0},
        "sample": {"cpus": 2, "mem_mb": 4000, "runtime": 60, "gpus": 0},
        "evaluate": {"cpus": 2, "mem_mb": 4000, "runtime": 30, "gpus": 0},
        "small": {"cpus": 1, "mem_mb": 2000, "runtime": 15, "gpus": 0},
    }[kind]
    return {**defaults, **config.get("resources", {}).get(kind, {})}


def resources_for(kind):
    """The rule resources of a kind, named as the SLURM executor reads them."""
    s = resource_settings(kind)
    return {"cpus": s["cpus"], "cpus_per_task": s["cpus"], "mem_mb": s["mem_mb"], "runtime": s["runtime"], "gpu": s["gpus"]}


def pretraining_threads():
    """The source teacher and the demo extractor train while nothing else can run: two threads. Both
    asking for two also keeps the 1-thread extractor from starting on a half-free machine and
    making the teacher, the critical path, wait for it."""
    return max(resource_settings("train")["cpus"], 2)


def training_threads(wildcards):
    if wildcards.slug == PLAN.teacher_slug:
        return pretraining_threads()
    return resource_settings("train")["cpus"]


def data_dir(dataset, split, shots=None):
    """What a job needs to depend on for a dataset split: the folder the DAG writes (demo), or the
    marker of the job that checked a staged folder (real datasets)."""
    if config["datasets"][dataset]["kind"] == "folder":
        name = f"k{shots}" if split == "shots" else split
        return f"{R}/data/{dataset}/{name}.verified"
    return str(PLAN.dataset_dir(dataset, split, shots))


def stage_inputs(wildcards):
    """A stage run (or segment) needs its data folder, the final weights of every run it reads
    from, and the previous segment of its own run."""
    if wildcards.slug not in PLAN.runs:
        raise WorkflowError(f"no stage run named {wildcards.slug} in this config's plan")
    run = PLAN.runs[wildcards.slug]
    data = run.data
    ends = PLAN.segment_ends(wildcards.slug)
    end = int(wildcards.end) if hasattr(wildcards, "end") else ends[-1]
    if end not in ends:
        raise WorkflowError(f"run {wildcards.slug} has no segment ending at {end} (segments end at {ends})")
    earlier = [e for e in ends if e < end]
    return {
        "data": data_dir(data["dataset"], data["split"], data.get("shots")),
        "weights": PLAN.upstream_files(wildcards.slug),
        "previous_segment": [str(PLAN.segment_marker(wildcards.slug, earlier[-1]))] if earlier else [],
    }


def all_outputs():
    outs = [f"{R}/source_teacher/report.json"]
    if any(config["datasets"][t]["kind"] == "demo" for t in config["targets"]):
        outs.append(f"{R}/figures/domains.png")
    outs += [str(PLAN.summary(slug)) for slug in PLAN.runs]
    outs += [f"{R}/tables/results_tidy.csv", f"{R}/tables/compiled", f"{R}/figures/paper"]
    outs += [f"{R}/figures/qualitative_{t}.png" for t in config["targets"]]
    return outs


wildcard_constraints:
    step=r"\d{8}",
    extractor=r"[a-z0-9_-]+",


from unidad.evaluate import (
    FEATURE_METRICS,
    check_metric_names,
    extractor_file,
    metric_file,
    needs_demo_extractor,
    reference_file,
    samples_file,
)

try:
    check_metric_names(config["evaluation"]["metrics"])
except ValueError as err:
    raise WorkflowError(f"invalid config: {err}") from None

EXTRACTOR_FILES = [str(extractor_file(PLAN))] if needs_demo_extractor(config) else []


def reference_inputs(wildcards):
    return {"data": data_dir(wildcards.dataset, wildcards.split), "extractor": EXTRACTOR_FILES}


def metric_inputs(wildcards):
    slug = wildcards.slug
    run = PLAN.runs[slug]
    dataset = run.target or run.data["dataset"]
    metrics = config["evaluation"]["metrics"]
    inputs = {"samples": str(samples_file(PLAN, slug, int(wildcards.step)))}
    if any(m in FEATURE_METRICS for m in metrics):
        inputs["reference"] = [str(reference_file(PLAN, dataset, "full")), str(reference_file(PLAN, dataset, "val"))]
    if "intra_lpips" in metrics:
        inputs["shots"] = data_dir(dataset, "shots", run.shots)
    inputs["extractor"] = EXTRACTOR_FILES
    return inputs


def metric_files():
    return sorted(
        str(metric_file(PLAN, slug, step, m)) for slug, step in PLAN.eval_checkpoints for m in config["evaluation"]["metrics"]
    )


def qualitative_inputs(wildcards):
    from unidad.reporting import qualitative_units

    return {
        "shots": data_dir(wildcards.dataset, "shots", max(config["shots"])),
        "samples": [str(p) for p, _ in qualitative_units(PLAN, wildcards.dataset).values()],
    }
