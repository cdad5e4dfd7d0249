"""The tidy table from the evaluation's files: one row per measured number, with its provenance.

The tidy job passes every path explicitly (the plan computes them): each evaluation unit names its
metric files and the summaries of its method's stages; reference rows name the teacher's report and
the shot folders. Nothing here walks the results folder.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from unidad.results.schema import tidy_row

ORACLE_VALUES = (("oracle_in_domain", "in_domain_rate"), ("oracle_mode_coverage", "mode_coverage"),
                 ("oracle_tv", "tv_distance"))


def method_compute(summaries: Sequence[str | Path], step: int | None = None) -> dict[str, float]:
    """A method's compute up to checkpoint `step` of its last stage: every earlier stage in full (shared
    stages counted in full: the method needs them) plus the last stage pro rata."""
    tot = {"iterations": 0, "images_seen": 0, "device_hours": 0.0, "wall_seconds": 0.0}
    paths = list(dict.fromkeys(str(p) for p in summaries))
    for path in paths:
        s = json.loads(Path(path).read_text())
        share = 1.0
        if path == paths[-1] and step is not None and s.get("step"):
            share = min(1.0, step / s["step"])
        tot["iterations"] += int(round(s["step"] * share))
        tot["images_seen"] += int(round(s["images_seen"] * share))
        tot["device_hours"] += s["device_hours"] * share
        tot["wall_seconds"] += s["wall_seconds"] * share
    return tot


def unit_rows(benchmark: str, unit: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of one evaluation unit (a checkpoint of a method's final stage at one NFE).

    unit: dataset, shots, method, stage, seed, slug, step, nfe, method_nfe, final, ablation fields,
    `metrics` (metric id -> its JSON file) and `summaries` (the method's stage summaries, in order)."""
    compute = method_compute(unit["summaries"], unit["step"])
    fields = {k: unit[k] for k in ("dataset", "shots", "method", "stage", "seed", "slug", "step", "nfe", "method_nfe",
                                   "final", "ablation", "ablation_param", "ablation_value", "ablation_option")}
    rows = []
    for path in unit["metrics"].values():
        top = json.loads(Path(path).read_text())
        rec = top["per_nfe"][unit.get("sample_key", str(unit["nfe"]))]
        for split, values in (("test", rec["values"]), ("val", rec.get("values_val", {}))):
            for name, value in values.items():
                rows.append(tidy_row(
                    benchmark, **fields, split=split, metric=name, variant=rec["variant"], extractor=rec["extractor"],
                    extractor_sha256=rec["extractor_sha256"], protocol=top.get("evaluation_protocol", ""),
                    value=float(value), n_generated=rec["n_generated"],
                    n_reference=rec.get("n_reference_val" if split == "val" else "n_reference", rec["n_reference"]),
                    checkpoint=top["checkpoint"], standin=bool(top.get("standin", False)), **compute,
                ))
    return rows


def oracle_rows(benchmark: str, dataset: str, shots: int, seed: int, method: str, report: Mapping[str, Any],
                domain: str, nfe: int) -> list[dict[str, Any]]:
    """Oracle rows of a reference (the k shots themselves, or the source teacher before adaptation)."""
    return [tidy_row(benchmark, dataset=dataset, shots=shots, method=method, seed=seed, nfe=nfe, method_nfe=nfe,
                     metric=name, variant="rule-based", extractor=f"oracle:{domain}", value=float(report[key]),
                     n_generated=report["n"])
            for name, key in ORACLE_VALUES]


def reference_rows(benchmark: str, teacher_report: str | Path, shot_sets: Sequence[Mapping[str, Any]],
                   seeds: Sequence[int], shot_counts: Sequence[int], image_size: int) -> list[dict[str, Any]]:
    """The oracle's verdict on the source teacher (before adaptation) and on the k-shot training sets
    themselves (what a student that only reproduces its training images would score).

    shot_sets: one entry per demo target and shot count: dataset, shots, domain, folder."""
    from unidad.data.domains import oracle_report
    from unidad.data.folders import load_image_folder

    rows = []
    teacher = json.loads(Path(teacher_report).read_text())
    domains = {s["dataset"]: s["domain"] for s in shot_sets}
    for target, rep in teacher.get("target_oracle", {}).items():
        for seed in seeds:
            for shots in shot_counts:
                rows += oracle_rows(benchmark, target, shots, seed, "source_teacher", rep, domains[target],
                                    int(teacher["timing"]["nfe"]))
    for s in shot_sets:
        images = load_image_folder(s["folder"], shots=s["shots"], image_size=image_size)
        rep = oracle_report(images, s["domain"])
        for seed in seeds:
            rows += oracle_rows(benchmark, s["dataset"], s["shots"], seed, "training_shots", rep, s["domain"], 0)
    return rows


def collect_tidy(benchmark: str, units: Sequence[Mapping[str, Any]], references: Mapping[str, Any] | None) -> pd.DataFrame:
    """Every number of every evaluation unit, then the reference rows (`references`: the keyword
    arguments of `reference_rows`, or None when the oracle is not measured)."""
    rows = [row for unit in units for row in unit_rows(benchmark, unit)]
    if references:
        rows += reference_rows(benchmark, **references)
    return pd.DataFrame(rows)


def run_table(runs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per training run with its resolved stage options as columns (`dual_weight`, `gen_steps`,
    `gan_weight_g`, ...), keyed by `slug` like the tidy table: join them to see every run's parameters,
    the main grid's included. An option a stage does not have is empty in its row."""
    rows = []
    for slug, run in runs.items():
        row = {"slug": slug, "stage": run["stage"], "stage_name": run["stage_name"], "method": run["method"] or "",
               "dataset": run["target"] or run["data"]["dataset"], "shots": run["shots"] or 0, "seed": run["seed"],
               "roles": ";".join(f"{role}={ref}" for role, ref in run["roles"].items())}
        clash = sorted(set(row) & set(run["params"]))
        if clash:
            raise ValueError(f"stage option(s) {clash} of {slug} collide with run table columns")
        rows.append({**row, **run["params"]})
    return pd.DataFrame(rows).convert_dtypes()  # an integer option stays an integer where other stages lack it
