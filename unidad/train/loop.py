"""The one training loop every stage runs through.

It owns: seeding, the per-iteration data order, the update schedule (`Update.every`), gradient
accumulation, bf16 autocast, gradient clipping, AdamW with linear warm-up, checkpoints (exact resume:
weights, optimisers, schedulers, RNG states, step), preemption (SIGTERM / SIGUSR1, or the SLURM job's
end time coming near (unidad.train.deadline) -> checkpoint and exit 75), progress lines and a jsonl of
every loss term and gradient norm, and data parallelism over the processes of a torchrun job
(unidad.distributed: per-rank data and noise, averaged gradients, only rank 0 writes).
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unidad.atomic import write_text_atomic
from unidad.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    save_snapshot,
    load_state,
    restore_rng_state,
    save_checkpoint,
)
from unidad.distributed import World
from unidad.stages.base import Stage, Update
from unidad.train.deadline import job_deadline
from unidad.weights_file import load_weights

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: the job should be requeued / retried and will resume
PREEMPTED_MARKER = "preempted.json"  # written next to the checkpoints when a run stops for requeue


class Preempted(SystemExit):
    """Exit 75 after the checkpoint for requeue; its text says why (the job's SLURM log keeps it: Snakemake
    deletes the rule's log file before the retry runs)."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.reason} (exit {PREEMPTED_EXIT_CODE})" if self.reason else str(PREEMPTED_EXIT_CODE)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def batch_indices(seed: int, iteration: int, micro: int, n_items: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Which real images (and which of them flipped) iteration `iteration` uses. A pure function of
    (seed, iteration, micro): the data order needs no state to resume."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + iteration * 7919 + micro * 104_729) % 2**63)
    idx = torch.randint(0, n_items, (batch,), generator=g)
    flip = torch.rand(batch, generator=g) < 0.5
    return idx, flip


def batch_stream(stage: Stage, start: int, world: World, workers: int = 0):
    """The stage's training images from iteration `start` on, each micro-batch of this rank decoded when
    the loop asks for it (unidad.data.stream); None for a stage without images."""
    from unidad.data.stream import BatchStream

    cfg, ctx = stage.config, stage.ctx
    if ctx.real_images is None:
        return None
    n = len(ctx.real_images)
    micros = [micro + world.rank * cfg.grad_accum for micro in range(cfg.grad_accum)]
    return BatchStream(ctx.real_images, lambda it, micro: batch_indices(ctx.seed, it, micro, n, cfg.batch_size),
                       start=start, micros=micros, flip=cfg.flip_augment, device=ctx.device, workers=workers)


def make_batch(stage: Stage, iteration: int, micro: int, stream=None) -> dict[str, Any]:
    """One micro-batch: {"real": images} and, when the stage's images have captions, {"prompts": their
    captions}; {} for a stage without images. The training loop passes its `stream` (batch_stream);
    without one (tests, benchmarks) the images are decoded here, the same pixels either way."""
    from unidad.data.stream import decode_batch

    cfg, ctx = stage.config, stage.ctx
    if ctx.real_images is None:
        return {}
    idx, flip = batch_indices(ctx.seed, iteration, micro, len(ctx.real_images), cfg.batch_size)
    if stream is not None:
        real = stream.batch(iteration, micro)
    else:
        real = decode_batch(ctx.real_images, idx, flip & cfg.flip_augment).to(ctx.device)
    batch: dict[str, Any] = {"real": real}
    if ctx.prompts is not None:
        batch["prompts"] = [ctx.prompts[i] for i in idx.tolist()]
    return batch


@dataclass
class _Optim:
    update: Update
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR


def _lr_factor(k: int, warm: int, total: int, cosine: bool) -> float:
    """Linear warm-up over `warm` updates, then constant or a cosine decay to 0 at `total`."""
    if k < warm:
        return (k + 1) / warm
    if not cosine:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (k - warm) / max(1, total - warm))))


def _fusable(params: list[torch.nn.Parameter]) -> bool:
    """Whether AdamW's fused kernel can take these parameters: one kernel per step instead of a dozen per
    tensor (on one CPU thread the per-tensor AdamW took 6-9 ms of a 50-60 ms demo fine-tune iteration,
    fused 0.8-1.3 ms)."""
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def build_optimizers(stage: Stage) -> list[_Optim]:
    cfg = stage.config
    out = []
    for upd in stage.updates():
        params = [p for name in upd.modules for p in stage.modules[name].parameters()]
        opt = torch.optim.AdamW(
            params, lr=upd.lr if upd.lr is not None else cfg.lr,
            betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay, fused=_fusable(params),
        )
        warm = max(1, cfg.warmup_iters // max(1, upd.every))
        total = max(warm + 1, -(-cfg.iterations // max(1, upd.every)))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k, warm=warm, total=total, cosine=cfg.lr_schedule == "cosine": _lr_factor(k, warm, total, cosine))
        out.append(_Optim(upd, params, opt, sched))
    return out


class _SignalFlag:
    """Turns SIGTERM / SIGUSR1 into a flag checked between iterations."""

    def __init__(self) -> None:
        self.raised: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside some test runners)
                pass
        return self

    def _handle(self, signum, frame):
        self.raised = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return torch.autocast(device_type=device.type, enabled=False)


def apply_speed_options(stage: Stage) -> None:
    """The stage config's tf32 / channels_last / compile switches (SpeedOptions), on the built modules."""
    from unidad.backbones.base import Denoiser
    from unidad.stages.options import SpeedOptions

    cfg = stage.config
    if not isinstance(cfg, SpeedOptions):
        return
    if cfg.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    for module in stage.modules.values():
        if cfg.channels_last:
            module.to(memory_format=torch.channels_last)
        if cfg.compile and isinstance(module, Denoiser):
            # the network inside the denoiser wrapper, in place: parameter names (and so checkpoints) stay
            for child in module.children():
                if any(True for _ in child.parameters()):
                    child.compile()


def _set_trainable(stage: Stage, active: set[str]) -> None:
    for name, module in stage.modules.items():
        module.requires_grad_(name in active and name not in stage.frozen)


def _rank_rng_state(state: dict[str, Any], world: World, checkpoint: Path) -> dict[str, Any]:
    saved_world = int(state.get("world_size", 1))
    if saved_world != world.size:
        raise RuntimeError(f"{checkpoint} was written by {saved_world} process(es) but this run has {world.size}; "
                           f"resume with the same number of GPUs/processes (an exact resume restores every rank's RNG)")
    return state["rng_per_rank"][world.rank] if world.enabled else state["rng"]


def _is_log_step(step: int, log_every: int, target: int) -> bool:
    return step % log_every == 0 or step == target


class _LogWindow:
    """The terms of every update since the last log line: a log line holds each term's mean over the
    iterations its update ran in the window (the learning rate: its latest value), so updates that run
    every few iterations are logged whatever `ratio` and `log_every` are."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._latest: dict[str, float] = {}

    def has(self, update: str) -> bool:
        return any(k.startswith(update + "/") for k in self._counts)

    def add(self, record: dict[str, float]) -> None:
        for k, v in record.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
            self._counts[k] = self._counts.get(k, 0) + 1
            self._latest[k] = v

    def flush(self) -> dict[str, float]:
        out = {k: self._latest[k] if k.endswith("/lr") else self._sums[k] / self._counts[k] for k in self._sums}
        self._sums, self._counts, self._latest = {}, {}, {}
        return out


def per_term_grad_norms(terms: dict[str, torch.Tensor], params: list[torch.nn.Parameter]) -> dict[str, float]:
    """L2 norm of the gradient of each (unweighted) loss term w.r.t. the updated parameters.

    Shows which term drives an update (e.g. DMD vs GAN in the generator step). Run only on logged
    steps: one extra backward per term. It reads gradients without touching .grad or any RNG, so
    training is bitwise the same with or without it.
    """
    out = {}
    trainable = [p for p in params if p.requires_grad]
    for name, value in terms.items():
        if name == "loss" or not value.requires_grad or value.ndim != 0:
            continue
        grads = torch.autograd.grad(value.float(), trainable, retain_graph=True, allow_unused=True)
        squares = [g.float().pow(2).sum() for g in grads if g is not None]
        out[name] = math.sqrt(float(torch.stack(squares).sum())) if squares else 0.0
    return out


def run_update(stage: Stage, o: _Optim, it: int, world: World | None = None, grad_norms: bool = False,
               stream=None) -> dict[str, float]:
    """One step of `o`'s update at iteration `it`: every micro-batch's loss and backward, gradient
    averaging and clipping, the optimiser and scheduler steps. Returns the update's record (its terms,
    gradient norm, learning rate; the per-term gradient norms too with `grad_norms`).
    benchmarks/bench_side_by_side.py times it update by update."""
    cfg, ctx = stage.config, stage.ctx
    world = world or World()
    name = o.update.name
    record: dict[str, float] = {}
    _set_trainable(stage, set(o.update.modules))
    o.optimizer.zero_grad(set_to_none=True)
    for micro in range(cfg.grad_accum):
        batch = make_batch(stage, it, micro + world.rank * cfg.grad_accum, stream)
        with _autocast(ctx.device, cfg.precision):
            terms = o.update.loss(batch)
        if micro == 0 and world.is_main and grad_norms:
            record.update({f"{name}/grad_norm/{k}": v for k, v in per_term_grad_norms(terms, o.params).items()})
        (terms["loss"].float() / cfg.grad_accum).backward()
        for k, v in terms.items():
            record[f"{name}/{k}"] = record.get(f"{name}/{k}", 0.0) + float(v.detach()) / cfg.grad_accum
    world.average_gradients(o.params)
    norm = torch.nn.utils.clip_grad_norm_(o.params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
    record[f"{name}/grad_norm"] = float(norm)
    o.optimizer.step()
    o.scheduler.step()
    if o.update.after_step is not None:
        o.update.after_step()
    record[f"{name}/lr"] = o.scheduler.get_last_lr()[0]
    return record


def train(
    stage: Stage,
    run_dir: Path,
    tracker=None,
    stop_at: int | None = None,
    log=print,
    world: World | None = None,
    keep_full: int = 1,
    snapshot_dtype: str = "fp32",
    data_workers: int = 0,
) -> dict[str, Any]:
    """Train `stage` to `config.iterations` (or to `stop_at`, for segmented runs), resuming from the
    newest checkpoint in run_dir. Returns the run summary (also written to run_dir/summary.json when
    the stage is complete).

    With a multi-process `world`, every rank runs this with its own slice of each batch
    (batch_size per rank) and noise; weights start and stay identical on all ranks. `data_workers`
    processes decode the training images (0: this process); the weights do not depend on it.

    Retention (config `checkpoints`): the full resume state for the newest `keep_full` checkpoints (a
    stage's own keep_checkpoints, when set, wins); every checkpoint step also writes the product
    snapshot in `snapshot_dtype`, which evaluation and later stages read."""
    cfg, ctx = stage.config, stage.ctx
    world = world or World()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(ctx.seed)
    stage.build()
    apply_speed_options(stage)
    world.broadcast_modules(stage.modules)
    if world.enabled:
        seed_everything(world.rank_seed(ctx.seed))
    optims = build_optimizers(stage)
    checkpoint_steps = set(cfg.checkpoint_steps())
    target = cfg.iterations if stop_at is None else min(cfg.iterations, stop_at)

    start, elapsed_before, images_before = 0, 0.0, 0
    resumed = latest_checkpoint(run_dir)
    if resumed is not None:
        state = load_state(resumed)
        load_weights(resumed, stage.exported_modules(), strict=True)
        for o, sd, sch in zip(optims, state["optimizers"], state["schedulers"]):
            o.optimizer.load_state_dict(sd)
            o.scheduler.load_state_dict(sch)
        restore_rng_state(_rank_rng_state(state, world, resumed))
        start = int(state["step"])
        elapsed_before = float(state.get("wall_seconds", 0.0))
        images_before = int(state.get("images_seen", 0))
        log(f"[train] resumed {run_dir} at step {start} from {resumed.name}")

    stats_path = run_dir / "stats.jsonl"
    if world.is_main:
        (run_dir / PREEMPTED_MARKER).unlink(missing_ok=True)
        if start == 0 and stats_path.exists():
            stats_path.unlink()  # a fresh start: stats of an aborted earlier attempt are stale
    # the SLURM job's end time: stop for requeue before it even when no signal gets through
    deadline = job_deadline(log=log)
    images_seen = images_before
    t0 = time.perf_counter()
    last_log_t, last_log_step = t0, start

    def save(step: int) -> None:
        rngs = world.gather(capture_rng_state())  # every rank's streams, for an exact resume
        world.check_in_sync(stage.exported_modules())
        if not world.is_main:
            world.barrier()
            return
        state = {
            "step": step,
            "optimizers": [o.optimizer.state_dict() for o in optims],
            "schedulers": [o.scheduler.state_dict() for o in optims],
            "rng": rngs[0],
            "world_size": world.size,
            "wall_seconds": elapsed_before + time.perf_counter() - t0,
            "images_seen": images_seen,
        }
        meta = {"stage": getattr(stage, "stage_id", type(stage).__name__), "primary": stage.product_module(cfg),
                "sampling": stage.sampling()}
        if world.enabled:
            state["rng_per_rank"] = rngs
        exported = stage.exported_modules()
        if step in checkpoint_steps:  # before the full checkpoint: resume never skips a snapshot
            save_snapshot(run_dir, step, {meta["primary"]: exported[meta["primary"]]}, snapshot_dtype)
        save_checkpoint(run_dir, step, exported, state, meta=meta, keep_last=cfg.keep_checkpoints or keep_full)
        world.barrier()

    for m in stage.trainable_modules().values():
        m.train()
    stats_cm = open(stats_path, "a") if world.is_main else contextlib.nullcontext()
    window = _LogWindow()
    # the workers start inside the signal handler's scope and ignore the scheduler's signals themselves
    with _SignalFlag() as flag, stats_cm as stats_file, \
            (batch_stream(stage, start, world, data_workers) or contextlib.nullcontext()) as stream:
        for it in range(start, target):
            record: dict[str, float] = {}
            for o in optims:
                if it % o.update.every == 0:
                    # per-term gradient norms once per update and log line, at its first step in the window
                    # (an update that runs every `ratio` iterations may never run on a log step itself)
                    record.update(run_update(stage, o, it, world, grad_norms=not window.has(o.update.name),
                                             stream=stream))
            _set_trainable(stage, set())
            images_seen += cfg.batch_size * cfg.grad_accum * world.size
            step = it + 1
            if flag.raised is not None:
                stop_reason = f"{flag.raised} received"
            elif deadline is not None and deadline.reached():
                stop_reason = f"job end time near ({deadline.describe()})"
            else:
                stop_reason = None
            stop_signal = world.any(stop_reason is not None, ctx.device)
            window.add(record)
            if world.is_main and _is_log_step(step, cfg.log_every, target):
                now = time.perf_counter()
                rate = (step - last_log_step) / max(now - last_log_t, 1e-9)
                eta = (target - step) / max(rate, 1e-9)
                record = window.flush()
                record.update(step=step, it_per_s=rate, images_seen=images_seen)
                stats_file.write(json.dumps(record) + "\n")
                stats_file.flush()
                losses = " ".join(f"{k}={v:.4g}" for k, v in record.items() if k.endswith("/loss"))
                log(f"[train] step {step}/{target} {rate:.2f} it/s ETA {eta:.0f}s {losses}")
                if tracker is not None:
                    tracker.log_metrics({k: v for k, v in record.items() if k != "step" and math.isfinite(v)}, step=step)
                last_log_t, last_log_step = now, step
            if step in checkpoint_steps or step == target or stop_signal:
                save(step)
            if stop_signal and step < target:
                stop_reason = stop_reason or "stop on another rank"
                if world.is_main:
                    (run_dir / PREEMPTED_MARKER).write_text(
                        json.dumps({"step": step, "signal": flag.raised, "reason": stop_reason}))
                    log(f"[train] {stop_reason}: checkpoint at step {step} saved, exiting for requeue")
                raise Preempted(f"{stop_reason}: checkpoint at step {step} saved, exiting for requeue")
    wall = elapsed_before + time.perf_counter() - t0
    summary = {
        "step": target,
        "iterations": cfg.iterations,
        "complete": target >= cfg.iterations,
        "images_seen": images_seen,
        "wall_seconds": wall,
        "device": str(ctx.device),
        "device_hours": wall / 3600.0 * world.size,
        "gpus": world.size if ctx.device.type == "cuda" else 0,
        "world_size": world.size,
        **stage.describe(),
    }
    if summary["complete"] and world.is_main:
        write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary
