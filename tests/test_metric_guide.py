"""The metric guide, executed: one new metric file + its registration in the config, in a copy of the
workflow; a tiny real run puts its numbers in the tidy table and the tables, and no evaluation, table,
figure or rule file changes."""
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from guides import ROOT, code_blocks, copy_workflow, snakemake

GUIDE = ROOT / "docs" / "adding_a_metric.md"
UNTOUCHED = ("workflow", "unidad/jobs", "unidad/results", "paper_figures")


def _code_blocks(lang):
    return code_blocks(GUIDE, lang)


def _snapshot(root):
    return {p.relative_to(root): p.read_bytes() for d in UNTOUCHED for p in (root / d).rglob("*") if p.is_file()
            and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory):
    dst = copy_workflow(tmp_path_factory.mktemp("wf"))
    before = _snapshot(dst)
    (dst / "unidad" / "metrics" / "brightness.py").write_text(_code_blocks("python")[0])
    guide_cfg = yaml.safe_load(_code_blocks("yaml")[0])
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg.update(benchmark="metric", methods=["ft"], targets=["near"], plugins=guide_cfg["plugins"])
    cfg["source"]["params"].update(iterations=10, checkpoint_every=10)
    cfg["stage_params"]["ft"].update(iterations=3, checkpoint_every=3, sample_steps=3)
    cfg["evaluation"].update(n_samples=16, metrics=["oracle", "speed", "brightness"], nfe_sweep=[1])
    assert "brightness" in guide_cfg["evaluation"]["metrics"]
    cfg["tracking"] = {"kind": "none"}
    (dst / "config" / "metric.yaml").write_text(yaml.safe_dump(cfg))
    return dst, before


def _snakemake(cwd, *args):
    return snakemake(cwd, "config/metric.yaml", *args)


def test_the_guide_metric_registers_and_computes(tmp_path, monkeypatch):
    from unidad.metrics.registry import METRICS, get_metric, value_info

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "guide_brightness.py").write_text(_code_blocks("python")[0])
    if "brightness" not in METRICS:
        from unidad.plugins import load_plugins

        load_plugins(["guide_brightness"])
    metric = get_metric("brightness")
    images = np.full((4, 8, 8, 3), 51, dtype=np.uint8)
    assert metric.compute(None, 1, images)["values"] == {"mean_brightness": pytest.approx(0.2)}
    assert value_info("mean_brightness").label == "Brightness" and value_info("mean_brightness").bounded


def test_dry_run_asks_for_the_new_metric_file(workflow_copy):
    dst, _ = workflow_copy
    proc = _snakemake(dst, "-n")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"metrics/brightness\.json", proc.stdout)


@pytest.mark.slow
def test_tiny_real_run_reports_the_new_metric(workflow_copy):
    dst, before = workflow_copy
    proc = _snakemake(dst, "results/metric/tables/compiled")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    tidy = pd.read_csv(dst / "results" / "metric" / "tables" / "results_tidy.csv")
    rows = tidy[tidy["metric"] == "mean_brightness"]
    assert len(rows) and rows["value"].between(0, 1).all() and (rows["variant"] == "mean of RGB / 255").all()
    table = (dst / "results" / "metric" / "tables" / "compiled" / "all_metrics_final.md").read_text()
    assert "Brightness" in table
    assert _snapshot(dst) == before  # no evaluation, table, figure or rule file was edited
