"""Which product snapshots outlive evaluation: the final checkpoint of every run (later stages and the
qualitative grids read it) and every checkpoint a selection rule chose; the other evaluated steps'
snapshots go once the tidy table holds their numbers (config `checkpoints.prune_evaluated`)."""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import pandas as pd

from unidad.checkpoint import checkpoint_weights_file

KEPT_SELECTIONS = ("final", "best_val", "best_test")


def snapshots_to_keep(tidy: pd.DataFrame, final_steps: Mapping[str, int]) -> dict[str, list[int]]:
    """slug -> steps whose snapshot stays: its final step and every step a selection rule picked."""
    keep = {slug: {int(step)} for slug, step in final_steps.items()}
    chosen = tidy[tidy["selection"].isin(KEPT_SELECTIONS) & tidy["slug"].isin(list(keep))]
    for slug, step in zip(chosen["slug"], chosen["step"]):
        keep[slug].add(int(step))
    return {slug: sorted(steps) for slug, steps in keep.items()}


def prune_snapshots(run_dirs: Mapping[str, str], evaluated: Mapping[str, Sequence[int]],
                    keep: Mapping[str, Sequence[int]]) -> dict:
    """Delete the snapshots of evaluated steps not in `keep` (idempotent); returns what went and its size."""
    removed, freed, kept = [], 0, []
    for slug, steps in evaluated.items():
        for step in steps:
            path = checkpoint_weights_file(run_dirs[slug], int(step))
            if int(step) in set(keep.get(slug, ())):
                kept.append(str(path))
                continue
            try:
                size = path.stat().st_size
                os.unlink(path)
            except FileNotFoundError:
                continue
            removed.append(str(path))
            freed += size
    return {"removed": len(removed), "bytes_removed": freed, "removed_files": removed, "kept_files": kept}
