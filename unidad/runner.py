"""What the DAG's jobs do: thin entry points from (config, wildcards) to library calls.

Every function here takes the validated workflow config and writes its outputs atomically, so
a failed job leaves nothing that Snakemake could mistake for a result.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from unidad.plan import Plan, StageRun


def log(msg: str) -> None:
    print(msg, flush=True)


def resolve_device(config: dict[str, Any]) -> torch.device:
    want = config.get("device", "auto")
    if want == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config key device is 'cuda' but no CUDA device is visible; use device: auto or cpu")
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(want)


def set_threads(threads: int | None) -> None:
    n = threads or int(os.environ.get("SLURM_CPUS_PER_TASK", "0")) or os.cpu_count() or 1
    torch.set_num_threads(max(1, int(n)))


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent.parent)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def write_json_atomic(path: Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------- data
def write_demo_split(config: dict[str, Any], dataset: str, split: str, out_dir: Path) -> None:
    """Writes one split of a demo dataset as a folder of PNGs (like a real dataset on disk).

    split: "train" (teacher pretraining set), "full" (reference statistics), "val" (checkpoint
    selection; disjoint seeds from "full"), or "k{shots}" (the few-shot training set).
    """
    from unidad.data.domains import get_domain, make_fewshot, make_full, write_image_folder

    d = config["datasets"][dataset]
    size = plan_image_size(config)
    dom = get_domain(d["domain"])
    seed = int(d.get("seed", 0))
    if split == "train":
        images, _ = dom.sample(int(d.get("train_size", 10000)), seed=seed + 101, image_size=size)
    elif split == "full":
        images = make_full(dom, int(d.get("full_size", 5000)), seed=seed, image_size=size)
    elif split == "val":
        images = make_full(dom, int(d.get("val_size", 1000)), seed=seed + 7_777, image_size=size)
    elif split.startswith("k") and split[1:].isdigit():
        images = make_fewshot(dom, int(split[1:]), seed=seed, image_size=size)
    else:
        raise ValueError(f"unknown demo split {split!r}; expected train, full, val or k<shots>")
    write_image_folder(images, out_dir)


def load_stage_images(plan: Plan, run: StageRun) -> torch.Tensor:
    from unidad.data.folders import load_image_folder
    from unidad.imageio import to_float_nchw

    cfg = plan.config
    d = cfg["datasets"][run.data["dataset"]]
    folder = plan.dataset_dir(run.data["dataset"], run.data["split"], run.data.get("shots"))
    size = plan_image_size(cfg)
    images = load_image_folder(folder, shots=run.data.get("shots"), image_size=size,
                               on_wrong_size=d.get("on_wrong_size", "resize"))
    return torch.from_numpy(to_float_nchw(images))


def plan_image_size(config: dict[str, Any]) -> int:
    kind = config["backbone"]["kind"]
    params = config["backbone"].get("params") or {}
    if kind == "tiny":
        return int(params.get("image_size", 16))
    if kind == "adm":
        return 256 if params.get("config", "ffhq256") == "ffhq256" else int(params["config"]["image_size"])
    return int(params.get("image_size", 512))


# ----------------------------------------------------------------------------------------- stages
def backbone_factory(config: dict[str, Any]):
    from unidad.backbones import build_backbone

    spec = config["backbone"]
    return lambda: build_backbone(spec)


def run_stage(config: dict[str, Any], slug: str, threads: int | None = None, stop_at: int | None = None,
              procs: int = 1) -> dict | None:
    """Train one stage run of the plan (resuming if it has checkpoints).

    procs > 1 (a job given several GPUs): the run is started under torchrun with one data-parallel
    process per GPU (gloo on the CPU), and this process only waits for it."""
    import unidad.stages  # noqa: F401
    from unidad.distributed import current_world, init_world, run_under_torchrun, shutdown_world
    from unidad.stages import STAGES, StageContext
    from unidad.tracking import make_tracker
    from unidad.train.loop import PREEMPTED_EXIT_CODE, PREEMPTED_MARKER, train

    set_threads(threads)
    plan = Plan(config)
    if slug not in plan.runs:
        raise KeyError(f"no stage run '{slug}' in this config's plan")
    run = plan.runs[slug]
    run_dir = plan.run_dir(slug)
    run_dir.mkdir(parents=True, exist_ok=True)
    if procs > 1 and not current_world().enabled:
        launch = run_dir / "launch_config.json"
        write_json_atomic(launch, config)
        per_proc_threads = max(1, (threads or os.cpu_count() or 1) // procs)
        args = ["unidad.cli", "train", str(launch), slug, "--threads", str(per_proc_threads)]
        args += [] if stop_at is None else ["--stop-at", str(stop_at)]
        log(f"[stage] {slug}: {procs} data-parallel processes (torchrun)")
        status = run_under_torchrun(procs, args)
        if status != 0:
            # torchrun reports any failed worker as 1; a preemption checkpoint must still reach the
            # scheduler as 75 so that it requeues the job
            raise SystemExit(PREEMPTED_EXIT_CODE if (run_dir / PREEMPTED_MARKER).exists() else status)
        return json.loads(plan.summary(slug).read_text()) if plan.summary(slug).exists() else None
    cls = STAGES.get(run.stage)
    cfg = cls.config_cls.from_dict(run.params)
    device = resolve_device(config)
    world = init_world(device.type)
    if world.enabled and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    weights = {role: (Path(f), module) for role, (f, module) in plan.role_weights(run).items()}
    for role, (f, _) in weights.items():
        if not f.exists():
            raise FileNotFoundError(f"stage {slug} needs weights for role '{role}': {f} does not exist")
    ctx = StageContext(
        backbone_factory=backbone_factory(config), weights=weights,
        real_images=load_stage_images(plan, run), device=device, seed=run.seed,
    )
    stage = cls(cfg, ctx)
    if not world.is_main:  # rank 0 writes the run record, the tracker entry, stats and checkpoints
        try:
            return train(stage, run_dir, tracker=None, stop_at=stop_at, log=lambda msg: None, world=world)
        finally:
            shutdown_world()
    resolved = {"run": run.to_dict(), "backbone": config["backbone"], "benchmark": config["benchmark"],
                "git_commit": git_commit(), "torch": str(torch.__version__), "device": str(device),
                "world_size": world.size}
    (run_dir / "run.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    tr = config["tracking"]
    tracker = make_tracker(tr["kind"], tr["uri"] or None, f"{tr['experiment']}/{config['benchmark']}",
                           results_dir=config["results_dir"])
    tags = {"method": run.method or "shared", "dataset": run.target or run.data["dataset"], "seed": str(run.seed),
            "stage": run.stage, "stage_name": run.stage_name, "benchmark": config["benchmark"],
            "shots": str(run.shots or ""), "git_commit": resolved["git_commit"], "slug": slug}
    tracker.start_run(slug, tags=tags, params=resolved, run_dir=run_dir)
    status = "FAILED"
    try:
        log(f"[stage] {slug}: {run.stage} on {run.data}, roles {run.roles}, device {device}, "
            f"{world.size} process(es)")
        summary = train(stage, run_dir, tracker=tracker, stop_at=stop_at, log=log, world=world)
        status = "FINISHED"
    finally:
        tracker.end_run(status=status)
        shutdown_world()
    return summary


def export_source_teacher(config: dict[str, Any], out: Path) -> None:
    """The source teacher as one weights file with module 'model', whichever way it was obtained."""
    from unidad.backbones import build_backbone
    from unidad.checkpoint import export_weights, read_weights

    plan = Plan(config)
    src = config["source"]
    model = build_backbone(config["backbone"])
    if src["kind"] == "pretrain":
        tensors = read_weights(plan.final_weights(plan.teacher_slug))[plan.runs[plan.teacher_slug].product_module]
        model.load_state_dict(tensors, strict=True)
    else:
        model = load_staged_source(config, model)
    export_weights(out, {"model": model})


def load_staged_source(config: dict[str, Any], model):
    """Real source weights (ffhq.pt for ADM, a diffusers folder for SD1.5) -> the backbone."""
    from unidad.weights import is_path_ref, resolve

    src = config["source"]
    ref = src["weights"]
    path = Path(ref) if is_path_ref(ref) else resolve(ref)
    kind = config["backbone"]["kind"]
    if kind == "adm":
        from unidad.backbones.adm import load_adm_checkpoint

        return load_adm_checkpoint(path, model.unet.config)
    if kind == "sd15":
        from unidad.backbones.sd15 import load_sd15

        return load_sd15(path)
    from unidad.checkpoint import read_weights

    tensors = read_weights(path)
    model.load_state_dict(next(iter(tensors.values())), strict=True)
    return model


def sample_product(config: dict[str, Any], weights: Path, module: str, sampling: dict, seeds, batch_size: int, threads=None):
    from unidad.backbones import build_backbone
    from unidad.checkpoint import read_weights
    from unidad.sampling import generate

    set_threads(threads)
    model = build_backbone(config["backbone"])
    model.load_state_dict(read_weights(weights)[module], strict=True)
    return generate(model, sampling, seeds, batch_size=batch_size, device=resolve_device(config), log=log)


def teacher_report(config: dict[str, Any], out_json: Path, out_grid: Path, n: int = 1000, threads=None) -> dict:
    """Samples the source teacher with its deterministic many-step sampler and asks the oracle."""
    from unidad.data.domains import oracle_report
    from unidad.imageio import save_grid

    plan = Plan(config)
    src = config["source"]
    sampling = {"kind": "many_step", "sampler": "euler", "steps": src["sample_steps"]}
    seeds = [config["evaluation"]["sample_seed_offset"] + i for i in range(n)]
    images, timing = sample_product(config, plan.source_weights(), "model", sampling, seeds,
                                    config["evaluation"]["batch_size"], threads)
    report: dict[str, Any] = {"n": n, "sampling": sampling, "timing": timing}
    ds = config["datasets"].get(src["dataset"], {})
    if ds.get("kind") == "demo":
        report["oracle"] = oracle_report(images, ds["domain"])
        report["oracle_domain"] = ds["domain"]
    # the starting point every method adapts from, judged by each target's oracle
    report["target_oracle"] = {t: oracle_report(images, config["datasets"][t]["domain"])
                               for t in config["targets"] if config["datasets"][t]["kind"] == "demo"}
    save_grid(images[:64], out_grid, nrow=8)
    write_json_atomic(out_json, report)
    return report


@contextlib.contextmanager
def job_log(snakemake):
    """Inside a rule script: stdout/stderr go to the rule's log file; a failure also prints one
    line naming the rule, the error and the log to the terminal."""
    log_file = Path(snakemake.log[0]) if snakemake.log else None
    if log_file is None:
        yield
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(log_file, "w") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        try:
            yield
        except BaseException as exc:
            traceback.print_exc()
            fh.flush()
            sys.__stderr__.write(f"[{snakemake.rule}] failed: {exc} (log: {log_file})\n")
            raise
    record_job_time(snakemake.config, snakemake.rule, str(log_file), started, time.time(), snakemake.threads)


def job_times_file(config: dict[str, Any]) -> Path:
    return Path(config["results_dir"]) / config["benchmark"] / "logs" / "job_times.jsonl"


def record_job_time(config: dict[str, Any], rule: str, job: str, start: float, end: float, threads: int) -> None:
    """One line per finished job (the DAG's own timing log; `unidad timing` summarises it). Lines are
    short single writes in append mode, so parallel jobs do not interleave them."""
    path = job_times_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"rule": rule, "job": job, "start": start, "end": end, "seconds": round(end - start, 3),
                       "threads": threads, "host": os.uname().nodename}) + "\n"
    with open(path, "a") as f:
        f.write(line)


def domain_figure(config: dict[str, Any], out: Path) -> None:
    """One figure: 32 images of each demo domain, then each target's 10-shot training set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unidad.data.domains import get_domain, make_fewshot
    from unidad.imageio import make_grid

    size = plan_image_size(config)
    demo = {k: d for k, d in config["datasets"].items() if d["kind"] == "demo"}
    panels = []
    for key, d in demo.items():
        images, _ = get_domain(d["domain"]).sample(32, seed=int(d.get("seed", 0)) + 5, image_size=size)
        panels.append((f"{key}: domain '{d['domain']}' ({len(get_domain(d['domain']).modes)} modes)", make_grid(images, nrow=8, scale=4)))
    for key in config["targets"]:
        d = demo.get(key)
        if d is None:
            continue
        shots = make_fewshot(d["domain"], 10, seed=int(d.get("seed", 0)), image_size=size)
        panels.append((f"{key}: the 10-shot training set", make_grid(shots, nrow=10, scale=4)))
    if not panels:
        raise ValueError("no demo datasets in this config: nothing to draw")
    fig, axes = plt.subplots(len(panels), 1, figsize=(6, 2.2 * len(panels)))
    for ax, (title, img) in zip(np.atleast_1d(axes), panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(".tmp_" + out.name)
    fig.savefig(tmp, dpi=110, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
    os.replace(tmp, out)


def verify_staged_folder(config: dict[str, Any], dataset: str, split: str, out: Path) -> None:
    """Loads a staged dataset split once with the validating loader; writes a marker with its size."""
    from unidad.data.folders import load_image_folder

    plan = Plan(config)
    shots = int(split[1:]) if split.startswith("k") and split[1:].isdigit() else None
    folder = plan.dataset_dir(dataset, "shots" if shots else split, shots)
    d = config["datasets"][dataset]
    images = load_image_folder(folder, shots=shots, image_size=plan_image_size(config),
                               on_wrong_size=d.get("on_wrong_size", "resize"))
    write_json_atomic(Path(out), {"dataset": dataset, "split": split, "folder": str(folder), "n_images": len(images)})
