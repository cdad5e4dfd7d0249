# Validation, wildcard constraints and input functions only; the logic lives in the unidad package.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir)))

from unidad.config import ConfigError, validate_config
from unidad.plan import TEACHER_SLUG, Plan

try:
    validate_config(config)
    PLAN = Plan(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None

R = str(PLAN.root)


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",
    split=r"train|full|val|k\d+",
    slug=r"[A-Za-z0-9_.-]+",


def resources_for(kind):
    """Cluster resources of a rule kind: config `resources.<kind>` over the defaults below."""
    defaults = {
        "train": {"cpus": 2, "mem_mb": 4000, "runtime": 120, "gpus": 0},
        "sample": {"cpus": 2, "mem_mb": 4000, "runtime": 60, "gpus": 0},
        "evaluate": {"cpus": 2, "mem_mb": 4000, "runtime": 30, "gpus": 0},
        "small": {"cpus": 1, "mem_mb": 2000, "runtime": 15, "gpus": 0},
    }[kind]
    return {**defaults, **config.get("resources", {}).get(kind, {})}


def data_dir(dataset, split, shots=None):
    return str(PLAN.dataset_dir(dataset, split, shots))


def stage_inputs(wildcards):
    """A stage run needs its data folder and the final weights of every run it reads from."""
    if wildcards.slug not in PLAN.runs:
        raise WorkflowError(f"no stage run named {wildcards.slug} in this config's plan")
    run = PLAN.runs[wildcards.slug]
    data = run.data
    return {
        "data": data_dir(data["dataset"], data["split"], data.get("shots")),
        "weights": PLAN.upstream_files(wildcards.slug),
    }


def all_outputs():
    outs = [f"{R}/source_teacher/report.json", f"{R}/figures/domains.png"]
    outs += [str(PLAN.summary(slug)) for slug in PLAN.runs]
    return outs
