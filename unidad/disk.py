"""What a config's grid keeps on disk (`unidad plan`): per run, the full resume states and product
snapshots the retention policy (config `checkpoints`) leaves, at the peak and when the DAG is done.

Sizes come from the backbone's parameter count (built on the meta device: nothing is allocated) times
4 bytes (fp32 weights and AdamW moments) or 2 (bf16 snapshots). One ADM-256 module is 2.2 GB.
"""
from __future__ import annotations

from functools import lru_cache
import json
from typing import Any

from unidad.plan import Plan, StageRun

GB = 1e9


@lru_cache(maxsize=8)
def _module_elements(backbone_json: str) -> int:
    import torch

    from unidad.backbones import build_backbone

    with torch.device("meta"):
        model = build_backbone(json.loads(backbone_json))
    return sum(t.numel() for t in model.state_dict().values())


def module_bytes(backbone: dict[str, Any]) -> int:
    """Bytes of one fp32 copy of the backbone (every state-dict tensor)."""
    return 4 * _module_elements(json.dumps(backbone, sort_keys=True))


def full_state_modules(run: StageRun) -> tuple[int, int]:
    """(modules in the weights file, modules the optimiser holds two fp32 moments for) of a full checkpoint.
    Distillation stages: generator and fake score, plus the online target teacher (the GAN heads are
    small and not counted); denoising stages: the model (and its EMA, which has no optimiser state)."""
    if run.stage in ("dmd2", "unidad"):
        trained = 2 + (run.params.get("target_teacher") == "online")
        return trained, trained
    return 1 + (run.params.get("ema_decay", 0) > 0), 1


def _kept_steps(plan: Plan, run: StageRun, evaluated: bool) -> int:
    """Snapshots of a run that survive pruning: its final one and, if evaluated, at most one per other
    selection rule the config uses (best_val only where the target has a val split)."""
    if not evaluated:
        return 1
    selections = [s for s in plan.config["evaluation"]["selections"] if s != "final"]
    dataset = plan.run_dataset(run.slug)
    extra = sum(1 for s in selections if s == "best_test" or (s == "best_val" and plan.has_split(dataset, "val")))
    return min(len(run.checkpoint_steps), 1 + extra)


def disk_estimate(plan: Plan) -> dict[str, Any]:
    """Peak and final bytes of the run folders (full states + snapshots) plus the size of one sample set."""
    retention = plan.config["checkpoints"]
    module = module_bytes(plan.config["backbone"])
    snapshot = module // 2 if retention["snapshot_dtype"] == "bf16" else module
    evaluated = {slug for slug, _ in plan.eval_checkpoints}
    full = snapshots_all = snapshots_kept = 0
    for run in plan.runs.values():
        weights, trained = full_state_modules(run)
        kept_full = min(retention["keep_full"], len(run.checkpoint_steps))
        full += kept_full * (weights + 2 * trained) * module
        snapshots_all += len(run.checkpoint_steps) * snapshot
        kept = _kept_steps(plan, run, run.slug in evaluated) if retention["prune_evaluated"] \
            else len(run.checkpoint_steps)
        snapshots_kept += kept * snapshot
    source = module if plan.teacher_slug is None else 0  # the staged source model, exported once
    size, ev = plan.image_size, plan.config["evaluation"]
    return {
        "module_gb": module / GB, "snapshot_gb": snapshot / GB, "full_states_gb": full / GB,
        "peak_gb": (full + snapshots_all + source) / GB, "final_gb": (full + snapshots_kept + source) / GB,
        "snapshots_peak": snapshots_all // max(snapshot, 1), "snapshots_final": snapshots_kept // max(snapshot, 1),
        "sample_set_gb": ev["n_samples"] * size * size * 3 / GB,
        "keep_full": retention["keep_full"], "snapshot_dtype": retention["snapshot_dtype"],
        "prune_evaluated": retention["prune_evaluated"],
    }


def print_disk(plan: Plan) -> dict[str, Any]:
    d = disk_estimate(plan)
    print(f"disk (run folders; one backbone module {d['module_gb']:.2f} GB fp32, snapshots {d['snapshot_dtype']} "
          f"{d['snapshot_gb']:.2f} GB, full resume state for the newest {d['keep_full']} checkpoint(s) per run):")
    print(f"  full resume states      {d['full_states_gb']:10.1f} GB")
    print(f"  peak (every snapshot)   {d['peak_gb']:10.1f} GB  ({d['snapshots_peak']} snapshots, before pruning)")
    print(f"  final                   {d['final_gb']:10.1f} GB  ({d['snapshots_final']} snapshots kept: final and "
          f"selected{'' if d['prune_evaluated'] else '; pruning off: all'})")
    print(f"  plus samples in flight: {d['sample_set_gb']:.2f} GB per sample set and NFE, deleted once measured")
    return d
