"""Job of workflow/rules/train.smk: train one stage run (or one segment of it), resuming if it can."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from unidad.atomic import write_json_atomic, write_text_atomic
from unidad.runtime import environment_record, log, resolve_device, set_threads


@dataclass
class StageJob:
    """Everything one training job needs, computed by the plan (`Plan.stage_job`)."""

    run: dict[str, Any]  # the resolved StageRun (slug, stage, params, data, roles, seed, ...)
    run_dir: str
    weights: dict[str, list[str]]  # role -> [weights file, module inside it]
    data_dir: str  # the folder of the stage's training images
    image_size: int
    backbone: dict[str, Any]
    benchmark: str
    tracking: dict[str, Any]  # kind, uri, experiment, results_dir (see training_tracker)
    on_wrong_size: str = "resize"
    data_workers: int = 0  # processes decoding the training images (config `data_workers`)
    device: str = "auto"
    plugins: list[str] = field(default_factory=list)
    caption: str | None = None  # a subject's images: the caption of every one ("a prt dog")
    checkpoints: dict[str, Any] = field(default_factory=dict)  # retention: keep_full, snapshot_dtype

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StageJob":
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def retention(job: StageJob) -> dict[str, Any]:
    """The training loop's checkpoint retention arguments from the config's `checkpoints` keys."""
    return {k: job.checkpoints[k] for k in ("keep_full", "snapshot_dtype") if k in job.checkpoints}


def stage_images(job: StageJob):
    """The stage's training images as file paths, decoded batch by batch while it trains."""
    from unidad.data.stream import TrainingImages

    return TrainingImages.from_folder(job.data_dir, shots=job.run["data"].get("shots"), image_size=job.image_size,
                                      on_wrong_size=job.on_wrong_size)


def stage_prompts(job: StageJob, n_images: int) -> list[str] | None:
    """One caption per training image: the captions file beside the images, else the subject's caption
    for every image, else None (unconditional data)."""
    from unidad.prompts import load_captions

    captions = load_captions(job.data_dir, job.run["data"].get("shots"))
    if captions is None and job.caption:
        captions = [job.caption] * n_images
    return captions


def run_stage(job: StageJob, threads: int | None = None, stop_at: int | None = None, procs: int = 1) -> dict | None:
    """Train one stage run (resuming if it has checkpoints).

    procs > 1 (a job given several GPUs): the run is started under torchrun with one data-parallel
    process per GPU (gloo on the CPU), and this process only waits for it."""
    from unidad.backbones import build_backbone
    from unidad.distributed import current_world, init_world, run_under_torchrun, shutdown_world
    from unidad.stages import StageContext, get_stage
    from unidad.train.loop import PREEMPTED_EXIT_CODE, PREEMPTED_MARKER, train

    set_threads(threads)
    run = job.run
    slug = run["slug"]
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    summary_file = run_dir / "summary.json"
    if procs > 1 and not current_world().enabled:
        launch = run_dir / "launch_job.json"
        write_json_atomic(launch, job.to_dict())
        per_proc_threads = max(1, (threads or os.cpu_count() or 1) // procs)
        args = ["unidad.cli", "train", str(launch), "--threads", str(per_proc_threads)]
        args += [] if stop_at is None else ["--stop-at", str(stop_at)]
        log(f"[stage] {slug}: {procs} data-parallel processes (torchrun)")
        status = run_under_torchrun(procs, args)
        if status != 0:
            # torchrun reports any failed worker as 1; a preemption checkpoint must still reach the
            # scheduler as 75 so that it requeues the job
            raise SystemExit(PREEMPTED_EXIT_CODE if (run_dir / PREEMPTED_MARKER).exists() else status)
        return json.loads(summary_file.read_text()) if summary_file.exists() else None
    cls = get_stage(run["stage"], job.plugins)
    cfg = cls.config_cls.from_dict(run["params"])
    device = resolve_device(job.device)
    world = init_world(device.type)
    if world.enabled and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    weights = {role: (Path(f), module) for role, (f, module) in job.weights.items()}
    for role, (f, _) in weights.items():
        if not f.exists():
            raise FileNotFoundError(f"stage {slug} needs weights for role '{role}': {f} does not exist")
    images = stage_images(job)
    ctx = StageContext(backbone_factory=lambda: build_backbone(job.backbone), weights=weights,
                       real_images=images, device=device, seed=run["seed"], prompts=stage_prompts(job, len(images)))
    stage = cls(cfg, ctx)
    if not world.is_main:  # rank 0 writes the run record, the tracker entry, stats and checkpoints
        try:
            return train(stage, run_dir, tracker=None, stop_at=stop_at, log=lambda msg: None, world=world,
                         data_workers=job.data_workers, **retention(job))
        finally:
            shutdown_world()
    environment = environment_record(device)
    resolved = {"run": run, "backbone": job.backbone, "benchmark": job.benchmark,
                "git_commit": environment["git_commit"],
                "torch": str(torch.__version__), "device": str(device), "world_size": world.size,
                "environment": environment}
    write_text_atomic(run_dir / "run.yaml", yaml.safe_dump(resolved, sort_keys=False))
    tracker = training_tracker(job, run_dir, resolved)
    status = "FAILED"
    try:
        log(f"[stage] {slug}: {run['stage']} on {run['data']}, roles {run['roles']}, device {device}, "
            f"{world.size} process(es)")
        summary = train(stage, run_dir, tracker=tracker, stop_at=stop_at, log=log, world=world,
                        data_workers=job.data_workers, **retention(job))
        status = "FINISHED"
    finally:
        tracker.end_run(status=status)
        shutdown_world()
    return summary


def training_tracker(job: StageJob, run_dir: Path, resolved: dict[str, Any]):
    """The tracker a training job logs into while it trains.

    Only with an MLflow tracking server (unidad.tracking.logs_live): a resumed run (it has a
    checkpoint and a run record in this store) logs on into its MLflow run, anything else starts
    one. With a file-based store (the default SQLite file) or `tracking.kind: none` this is a
    NullTracker and the store is not opened at all: the `mlflow_import` job imports run.yaml and
    stats.jsonl after training."""
    from unidad.checkpoint import latest_checkpoint
    from unidad.tracking import NullTracker, logs_live, make_tracker, read_run_record, run_tags

    tr = job.tracking
    if not logs_live(tr["kind"], tr["uri"], tr["results_dir"]):
        return NullTracker()

    def new_tracker():
        return make_tracker(tr["kind"], tr["uri"] or None, f"{tr['experiment']}/{job.benchmark}",
                            results_dir=tr["results_dir"])

    tracker = new_tracker()
    record = read_run_record(run_dir)
    if (record is not None and latest_checkpoint(run_dir) is not None
            and (record["tracking_uri"], record["experiment"]) == (tracker.tracking_uri, tracker.experiment)):
        tracker.resume_run(record["run_id"], reopen=True)
        if tracker.run_id:
            return tracker
        tracker = new_tracker()  # the recorded run is gone: start a new one
    tracker.start_run(job.run["slug"], tags=run_tags(job.run, job.benchmark, resolved["git_commit"]),
                      params=resolved, run_dir=run_dir)
    return tracker
