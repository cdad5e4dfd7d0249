"""What each job is given: the plan turned into the explicit arguments of the unidad.jobs functions.

`workflow/rules/common.smk` hands these to the rules' params; benchmarks and tests that run a job by
hand use the same functions, so a job is called the same way everywhere.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from unidad.plan import SOURCE, EvalUnit, Plan
from unidad.prompts import check_stage_token, drop_tokens, evaluation_prompts, subject_caption

# Images the source teacher's report and the source students' reports sample: the same seeds for all of
# them, so a student is judged on the noise its teacher was.
REPORT_IMAGES = 1000


def stage_job(plan: Plan, slug: str) -> dict[str, Any]:
    """The training job of a run (unidad.jobs.train.StageJob) as a plain dict."""
    config, run = plan.config, plan.runs[slug]
    dataset = run.data["dataset"]
    check_stage_token(config, run.params, f"run {slug}: ")
    caption = subject_caption(config, dataset)
    # text keys only where there is text, so the unconditional benchmarks' job params stay as they were
    return ({"caption": caption} if caption else {}) | {
        "run": run.to_dict(), "run_dir": str(plan.run_dir(slug)),
        "weights": {role: [f, module] for role, (f, module) in plan.role_weights(run).items()},
        "data_dir": str(plan.dataset_dir(dataset, run.data["split"], run.data.get("shots"))),
        "image_size": plan.image_size, "backbone": plan.backbone, "benchmark": config["benchmark"],
        "tracking": tracking_settings(plan),
        "on_wrong_size": config["datasets"][dataset].get("on_wrong_size", "resize"),
        "data_workers": int(config.get("data_workers", 0)),
        "device": config.get("device", "auto"), "plugins": list(config.get("plugins", [])),
        "checkpoints": {k: config["checkpoints"][k] for k in ("keep_full", "snapshot_dtype")},
    }


def tracking_settings(plan: Plan) -> dict[str, Any]:
    """The config's tracking keys plus the results folder (where a local store's default lives), as the
    training job and the MLflow import job take them."""
    return {**plan.config["tracking"], "results_dir": plan.config["results_dir"]}


def reference_splits(plan: Plan, dataset: str) -> list[str]:
    """The reference statistics a metric job reads: the test reference, and the validation split only
    where a selection needs it (best_val in evaluation.selections) and the dataset has one."""
    wants_val = "best_val" in plan.config["evaluation"]["selections"]
    return [s for s in ("full", "val") if s == "full" or (wants_val and plan.has_split(dataset, s))]


def demo_extractor_file(plan: Plan) -> Path | None:
    """The weights the DAG trains for what the configured metrics read: the demo extractor (reference
    features or distance `demo`) or the SDP demo embedding (distance `demo_sdp`, the demo SDP metrics)."""
    from unidad.metrics.extractors import DAG_TRAINED
    from unidad.metrics.registry import metrics_needing

    ev = plan.config["evaluation"]
    used = {need: name for need, name in (("reference", ev["extractor"]), ("distance", ev["lpips"]),
                                          ("sdp_embedding", "demo_sdp")) if metrics_needing(need, ev["metrics"])}
    files = {DAG_TRAINED[name] for name in used.values() if name in DAG_TRAINED}
    if len(files) > 1:
        raise ValueError(f"evaluation.metrics read two networks trained in the DAG ({', '.join(sorted(files))}: "
                         f"{used}); a metric job reads one: set evaluation.lpips to demo_sdp for the SDP demo metrics")
    return plan.path(files.pop()) if files else None


def metric_inputs(plan: Plan, slug: str, step: int) -> dict[str, Any]:
    """unidad.metrics.inputs.MetricInputs of one checkpoint, as plain keyword arguments."""
    ev, run = plan.config["evaluation"], plan.runs[slug]
    dataset = plan.run_dataset(slug)
    extractor_file = demo_extractor_file(plan)
    # text keys only where there is text, so the unconditional benchmarks' job params stay as they were
    token = {"unique_token": plan.config["unique_token"]} if evaluation_prompts(plan.config, dataset) else {}
    subject = {"subject": plan.demo_subject(dataset)} if plan.demo_subject(dataset) else {}
    return token | subject | {
        "samples": str(plan.samples_file(slug, step)),
        "references": {s: str(plan.reference_file(dataset, s)) for s in reference_splits(plan, dataset)},
        "extractor": ev["extractor"], "extractor_file": None if extractor_file is None else str(extractor_file),
        "lpips": ev["lpips"], "intra_lpips_variant": ev["intra_lpips_variant"],
        "evaluation_protocol": ev["protocol"],
        "shots_dir": str(plan.dataset_dir(dataset, "shots", run.shots or max(plan.config["shots"]))),
        "shots": run.shots, "domain": plan.demo_domain(dataset), "image_size": plan.image_size,
    }


def prune_params(plan: Plan) -> dict[str, Any]:
    """What the prune_snapshots job needs: every run's folder, final step and snapshot steps (every run
    writes one per checkpoint step, evaluated or not)."""
    return {"run_dirs": {slug: str(plan.run_dir(slug)) for slug in plan.runs},
            "final_steps": {slug: run.checkpoint_steps[-1] for slug, run in plan.runs.items()},
            "evaluated": {slug: list(run.checkpoint_steps) for slug, run in plan.runs.items()}}


def sampling_job(plan: Plan, slug: str, step: int) -> dict[str, Any]:
    """The arguments of unidad.jobs.evaluate.sample_checkpoint for one checkpoint (outputs aside)."""
    config, run = plan.config, plan.runs[slug]
    prompted = evaluation_prompts(config, plan.run_dataset(slug))
    job = ({"prompts": prompted[0]} if prompted else {}) | {
        "backbone": plan.backbone, "weights": str(plan.checkpoint_weights(slug, step)),
        "module": run.product_module, "sampling": run.sampling, "nfes": plan.checkpoint_nfes(slug, step),
        "grid_nfe": plan.method_nfe(slug), "seeds": prompted[1] if prompted else plan.sample_seeds(),
        "batch_size": config["evaluation"]["batch_size"], "step": step, "device": config.get("device", "auto"),
    }
    corrected = plan.corrected_nfes(slug, step)
    if corrected:  # only then: the params of every other sampling job (Snakemake's rerun trigger) stay as they were
        job["corrected_nfes"] = corrected
    return job


def eval_unit_record(plan: Plan, unit: EvalUnit) -> dict[str, Any]:
    """What the tidy table needs of an evaluation unit: its row fields and the files to read."""
    mr, run = unit.method_run, plan.runs[unit.slug]
    return {
        "dataset": mr.target, "shots": mr.shots, "method": mr.method, "stage": run.stage, "seed": mr.seed,
        "slug": unit.slug, "step": unit.step, "nfe": unit.nfe, "method_nfe": plan.method_nfe(unit.slug),
        "final": unit.final, "sample_key": unit.sample_key, **unit.ablation_fields(),
        "metrics": {m: str(plan.metric_file(unit.slug, unit.step, m)) for m in plan.config["evaluation"]["metrics"]},
        "summaries": [str(plan.summary(s)) for s in dict.fromkeys(mr.stages)],
    }


def qualitative_units(plan: Plan, dataset: str) -> dict[str, tuple[Path, int]]:
    """method (with its ablation value, if any) -> (samples file, NFE) of its first seed's final
    checkpoint at its own NFE."""
    chosen: dict[str, tuple[Path, int]] = {}
    for unit in plan.eval_units:
        mr = unit.method_run
        if mr.target != dataset or not unit.final or unit.nfe != plan.method_nfe(unit.slug) or unit.noise_correction:
            continue
        if mr.seed != plan.config["seeds"][0] or mr.shots != max(plan.config["shots"]):
            continue
        chosen.setdefault(mr.label, (plan.samples_file(unit.slug, unit.step), unit.nfe))
    return chosen


def report_seeds(plan: Plan) -> list[int]:
    """The per-image seeds of the source teacher's and the source students' reports: 1000, or the
    evaluation's sample count when smaller (a smoke run's or a rehearsal's few)."""
    return plan.sample_seeds(min(REPORT_IMAGES, plan.config["evaluation"]["n_samples"]))


def source_students(plan: Plan) -> list[str]:
    """Few-step students distilled from the source teacher on source data in the main grid (the shared
    `distill` stage of dmd2_ft and unidad_pre), where the source is a demo domain its oracle can judge:
    the premise of every distillation method, evaluated beside the teacher. Their training is shared;
    only this evaluation is added."""
    source = plan.config["source"]["dataset"]
    if source not in plan.config["datasets"] or not plan.demo_domain(source):
        return []
    slugs = {slug for mr in plan.method_runs if mr.ablation is None for slug in mr.stages}
    return sorted(s for s in slugs if plan.runs[s].shared and plan.runs[s].sampling["kind"] == "few_step"
                  and plan.runs[s].roles.get("teacher") == SOURCE and plan.runs[s].data["dataset"] == source)


def student_report_job(plan: Plan, slug: str) -> dict[str, Any]:
    """The arguments of unidad.jobs.teachers.teacher_report for a source student (outputs aside): its final
    weights sampled at its own NFE, judged by the source domain's oracle."""
    config, run = plan.config, plan.runs[slug]
    step = run.checkpoint_steps[-1]
    return {
        "backbone": plan.backbone, "weights": str(plan.final_weights(slug)), "module": run.product_module,
        "sampling": run.sampling, "seeds": report_seeds(plan), "batch_size": config["evaluation"]["batch_size"],
        "source_domain": plan.demo_domain(config["source"]["dataset"]), "device": config.get("device", "auto"),
        "about": {"slug": slug, "seed": run.seed, "step": step, "stage": run.stage, "stage_name": run.stage_name},
    }


def teacher_subject_prompts(plan: Plan) -> dict[str, Any]:
    """{"subject_prompts": target -> its demo subject, evaluation prompts without the unique token and
    their seeds}: what the source teacher draws for the prompts every method is evaluated on, judged by
    the subject's oracle (the baseline of subject presence). Empty where no target is a demo subject."""
    token = plan.config["unique_token"]
    chosen = {}
    for target in plan.config["targets"]:
        prompted = evaluation_prompts(plan.config, target)
        if plan.demo_subject(target) and prompted:
            chosen[target] = {"subject": plan.demo_subject(target), "prompts": drop_tokens(prompted[0], token),
                              "seeds": prompted[1]}
    return {"subject_prompts": chosen} if chosen else {}


def controls_inputs(plan: Plan) -> dict[str, Any]:
    """The inputs of unidad.jobs.report.build_controls that are files (the rest: controls_params)."""
    return {"tidy": str(plan.path("tidy_parquet")), "teacher": str(plan.path("teacher_report")),
            "students": [str(plan.path("student_report", slug=s)) for s in source_students(plan)],
            "methods": str(plan.methods_path)}


def prompted_targets(plan: Plan) -> list[str]:
    """The targets with evaluation prompts: the text-conditioned benchmark's subjects, whose tables are SDP's."""
    return [t for t in plan.config["targets"] if evaluation_prompts(plan.config, t)]


def controls_params(plan: Plan) -> dict[str, Any]:
    """The arguments of unidad.jobs.report.build_controls that are not files."""
    return {"thresholds": plan.config["controls"], "targets": list(plan.config["targets"])}
