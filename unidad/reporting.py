"""DAG glue for the last stage: tables, figures and the qualitative grid from the run's outputs."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from unidad.plan import Plan


def far_datasets(config: dict[str, Any]) -> list[str]:
    """Targets structurally distant from the source (demo: domain 'far'; real: datasets.X.domain_gap)."""
    out = []
    for name in config["targets"]:
        d = config["datasets"][name]
        if d.get("domain_gap") == "far" or (d["kind"] == "demo" and d.get("domain") == "far"):
            out.append(name)
    return out


def _fresh_dir(out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return out_dir, tmp


def _publish(tmp: Path, out_dir: Path) -> None:
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)


def build_tables(config: dict[str, Any], tidy_path: str | Path, out_dir: str | Path) -> list[Path]:
    from unidad.results import load_tidy, write_all_tables

    out_dir, tmp = _fresh_dir(out_dir)
    paths = write_all_tables(load_tidy(tidy_path), tmp, far_datasets=far_datasets(config))
    _publish(tmp, out_dir)
    print("\n".join(str(out_dir / Path(p).name) for p in paths))
    return paths


def build_figures(config: dict[str, Any], tidy_path: str | Path, out_dir: str | Path) -> list[Path]:
    import logging

    from paper_figures.figures import write_all_figures
    from unidad.results import load_tidy

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out_dir, tmp = _fresh_dir(out_dir)
    paths = write_all_figures(load_tidy(tidy_path), tmp)
    _publish(tmp, out_dir)
    return paths


def qualitative_units(plan: Plan, dataset: str) -> dict[str, tuple[Path, int]]:
    """method -> (samples file, NFE) of its first seed's final checkpoint at its own NFE."""
    from unidad.evaluate import samples_file

    chosen: dict[str, Path] = {}
    for unit in plan.eval_units:
        mr = unit.method_run
        if mr.target != dataset or not unit.final or unit.nfe != plan.method_nfe(unit.slug):
            continue
        if mr.seed != plan.config["seeds"][0] or mr.shots != max(plan.config["shots"]):
            continue
        chosen.setdefault(mr.method, (samples_file(plan, unit.slug, unit.step), unit.nfe))
    return chosen


def build_qualitative_grid(config: dict[str, Any], dataset: str, shots_dir: str, samples: Sequence[str], out: str,
                           per_row: int = 10) -> None:
    from paper_figures.figures import qualitative_grid
    from unidad.data.folders import load_image_folder
    from unidad.runner import plan_image_size

    plan = Plan(config)
    units = qualitative_units(plan, dataset)
    shots = load_image_folder(shots_dir, image_size=plan_image_size(config))[:per_row]
    rows = {}
    for method, (path, nfe) in units.items():
        with np.load(path, allow_pickle=False) as f:
            rows[method] = f[f"images_nfe{nfe}"][:per_row]
    out = Path(out)
    base = out.with_suffix("")
    qualitative_grid(shots, rows, base, title=f"{config['benchmark']} / {dataset}: 10 shots, then each method (same seeds)")
