"""What each job is given: the plan turned into the explicit arguments of the unidad.jobs functions.

`workflow/rules/common.smk` hands these to the rules' params; benchmarks and tests that run a job by
hand use the same functions, so a job is called the same way everywhere.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from unidad.plan import EvalUnit, Plan


def stage_job(plan: Plan, slug: str) -> dict[str, Any]:
    """The training job of a run (unidad.jobs.train.StageJob) as a plain dict."""
    config, run = plan.config, plan.runs[slug]
    dataset = run.data["dataset"]
    return {
        "run": run.to_dict(), "run_dir": str(plan.run_dir(slug)),
        "weights": {role: [f, module] for role, (f, module) in plan.role_weights(run).items()},
        "data_dir": str(plan.dataset_dir(dataset, run.data["split"], run.data.get("shots"))),
        "image_size": plan.image_size, "backbone": config["backbone"], "benchmark": config["benchmark"],
        "tracking": tracking_settings(plan),
        "on_wrong_size": config["datasets"][dataset].get("on_wrong_size", "resize"),
        "data_workers": int(config.get("data_workers", 0)),
        "device": config.get("device", "auto"), "plugins": list(config.get("plugins", [])),
    }


def tracking_settings(plan: Plan) -> dict[str, Any]:
    """The config's tracking keys plus the results folder (where a local store's default lives), as the
    training job and the MLflow import job take them."""
    return {**plan.config["tracking"], "results_dir": plan.config["results_dir"]}


def reference_splits(plan: Plan, dataset: str) -> list[str]:
    """The reference statistics a metric job reads: the test reference, and the validation split where
    the dataset has one (best-val checkpoint selection)."""
    return [s for s in ("full", "val") if plan.has_split(dataset, s)]


def demo_extractor_file(plan: Plan) -> Path | None:
    """The demo extractor's weights, where the config measures with the demo extractor or distance."""
    ev = plan.config["evaluation"]
    return plan.path("demo_extractor") if "demo" in (ev["extractor"], ev["lpips"]) else None


def metric_inputs(plan: Plan, slug: str, step: int) -> dict[str, Any]:
    """unidad.metrics.inputs.MetricInputs of one checkpoint, as plain keyword arguments."""
    ev, run = plan.config["evaluation"], plan.runs[slug]
    dataset = plan.run_dataset(slug)
    extractor_file = demo_extractor_file(plan)
    return {
        "samples": str(plan.samples_file(slug, step)),
        "references": {s: str(plan.reference_file(dataset, s)) for s in reference_splits(plan, dataset)},
        "extractor": ev["extractor"], "extractor_file": None if extractor_file is None else str(extractor_file),
        "lpips": ev["lpips"], "intra_lpips_variant": ev["intra_lpips_variant"],
        "shots_dir": str(plan.dataset_dir(dataset, "shots", run.shots or max(plan.config["shots"]))),
        "shots": run.shots, "domain": plan.demo_domain(dataset), "image_size": plan.image_size,
    }


def sampling_job(plan: Plan, slug: str, step: int) -> dict[str, Any]:
    """The arguments of unidad.jobs.evaluate.sample_checkpoint for one checkpoint (outputs aside)."""
    config, run = plan.config, plan.runs[slug]
    return {
        "backbone": config["backbone"], "weights": str(plan.checkpoint_weights(slug, step)),
        "module": run.product_module, "sampling": run.sampling, "nfes": plan.checkpoint_nfes(slug, step),
        "grid_nfe": plan.method_nfe(slug), "seeds": plan.sample_seeds(),
        "batch_size": config["evaluation"]["batch_size"], "step": step, "device": config.get("device", "auto"),
    }


def eval_unit_record(plan: Plan, unit: EvalUnit) -> dict[str, Any]:
    """What the tidy table needs of an evaluation unit: its row fields and the files to read."""
    mr, run = unit.method_run, plan.runs[unit.slug]
    return {
        "dataset": mr.target, "shots": mr.shots, "method": mr.method, "stage": run.stage, "seed": mr.seed,
        "slug": unit.slug, "step": unit.step, "nfe": unit.nfe, "method_nfe": plan.method_nfe(unit.slug),
        "final": unit.final, **mr.ablation_fields(),
        "metrics": {m: str(plan.metric_file(unit.slug, unit.step, m)) for m in plan.config["evaluation"]["metrics"]},
        "summaries": [str(plan.summary(s)) for s in dict.fromkeys(mr.stages)],
    }


def qualitative_units(plan: Plan, dataset: str) -> dict[str, tuple[Path, int]]:
    """method (with its ablation value, if any) -> (samples file, NFE) of its first seed's final
    checkpoint at its own NFE."""
    chosen: dict[str, tuple[Path, int]] = {}
    for unit in plan.eval_units:
        mr = unit.method_run
        if mr.target != dataset or not unit.final or unit.nfe != plan.method_nfe(unit.slug):
            continue
        if mr.seed != plan.config["seeds"][0] or mr.shots != max(plan.config["shots"]):
            continue
        chosen.setdefault(mr.label, (plan.samples_file(unit.slug, unit.step), unit.nfe))
    return chosen
