"""Data-parallel training inside one job: torchrun starts one process per GPU, each runs the same
training loop on its own slice of every batch, and gradients are averaged before each optimiser step.

Why not `DistributedDataParallel`: a stage trains several modules with separate optimisers on
different schedules (generator every `ratio` iterations, fake score every iteration), so one wrapper
per module would need `find_unused_parameters` and care about which forward belongs to which update.
Averaging the gradients of exactly the parameters an update steps is the same arithmetic, for any stage.

Outside torchrun (one GPU, or the CPU) everything here is a no-op and training is unchanged.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

# Per-rank streams: rank r trains with seed + r * RANK_SEED_STRIDE (rank 0 keeps the run's own seed).
RANK_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rank_seed(self, seed: int) -> int:
        return seed + self.rank * RANK_SEED_STRIDE

    # -- collectives (no-ops for one process) ------------------------------------------------------
    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        if not self.enabled:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def broadcast_modules(self, modules: dict[str, torch.nn.Module]) -> None:
        """Rank 0's weights everywhere (a stage built from scratch initialises per process)."""
        if not self.enabled:
            return
        for module in modules.values():
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when it is true on one (e.g. a preemption signal reached one process)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def gather(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def check_in_sync(self, modules: dict[str, torch.nn.Module]) -> None:
        """Replicas must hold identical weights; a silent divergence would make the run meaningless."""
        if not self.enabled:
            return
        sums = []
        with torch.no_grad():
            for module in modules.values():
                params = [p.detach().double().sum() for p in module.parameters()]
                sums.append(float(torch.stack(params).sum()) if params else 0.0)
        every = self.gather(sums)
        if any(s != every[0] for s in every[1:]):
            raise RuntimeError(f"data-parallel replicas diverged (per-rank weight sums {every}); "
                               "a stage must update every rank's modules identically")


def current_world() -> World:
    """The torchrun world of this process (one process when not started by torchrun)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(rank=int(os.environ["RANK"]), size=size, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def init_world(device_type: str) -> World:
    world = current_world()
    if world.enabled and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return world


def shutdown_world() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def torchrun_command(n_procs: int, args: list[str], module: bool = True) -> list[str]:
    """`python -m torch.distributed.run` (torchrun) starting `python [-m] <args>` n_procs times."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_procs}",
            *(["-m"] if module else []), *args]


def run_under_torchrun(n_procs: int, module_args: list[str]) -> int:
    """Run `python -m <module_args>` in n_procs processes and return torchrun's exit status (1 when any
    worker failed, whatever that worker's own status was)."""
    return subprocess.run(torchrun_command(n_procs, module_args)).returncode
