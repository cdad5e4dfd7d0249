"""`unidad plan`: job counts, GPU-hours and the disk the retention policy leaves (peak and final)."""
from pathlib import Path

import pytest
import yaml

from unidad.cli import main
from unidad.config import load_config_file, validate_config
from unidad.disk import disk_estimate, full_state_modules, module_bytes
from unidad.plan import Plan

ROOT = Path(__file__).resolve().parent.parent


def _demo(**checkpoints):
    config = validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    config["checkpoints"].update(checkpoints)
    return Plan(config)


def test_full_states_follow_the_modules_each_stage_trains():
    plan = _demo()
    by_method = {plan.runs[mr.final].stage_name + ":" + mr.method: plan.runs[mr.final] for mr in plan.method_runs}
    assert full_state_modules(by_method["unidad:unidad"]) == (3, 3)  # generator, fake, online target teacher
    assert full_state_modules(by_method["unidad:unidad_src"]) == (2, 2)
    assert full_state_modules(by_method["unidad:unidad_pre"]) == (2, 2)  # frozen target teacher: not saved
    assert full_state_modules(by_method["adapt:ft"])[1] == 1


def test_disk_estimate_adds_up_and_pruning_and_bf16_shrink_it():
    plan = _demo()
    d = disk_estimate(plan)
    module = module_bytes(plan.config["backbone"])
    full = sum((w + 2 * t) * module for w, t in (full_state_modules(r) for r in plan.runs.values()))
    assert d["full_states_gb"] == pytest.approx(full / 1e9)
    assert d["snapshots_peak"] == sum(len(r.checkpoint_steps) for r in plan.runs.values())
    assert d["final_gb"] < d["peak_gb"]
    kept_all = disk_estimate(_demo(prune_evaluated=False))
    assert kept_all["final_gb"] == pytest.approx(kept_all["peak_gb"])
    bf16 = disk_estimate(_demo(snapshot_dtype="bf16"))
    assert bf16["snapshot_gb"] == pytest.approx(d["snapshot_gb"] / 2, rel=1e-6)
    two = disk_estimate(_demo(keep_full=2))
    assert two["full_states_gb"] > d["full_states_gb"]


def test_paper_grid_at_the_official_cadence_ends_under_2_tb(capsys):
    assert main(["plan", "config/paper_fsig.yaml", "--checkpoint-every", "500"]) == 0
    out = capsys.readouterr().out
    assert "sample_checkpoint        4080" in out  # 340 evaluated checkpoints per (target, seed), 12 of them
    config = load_config_file(ROOT / "config" / "paper_fsig.yaml")
    for stage in config["stage_params"]:
        config["stage_params"][stage]["checkpoint_every"] = 500
    d = disk_estimate(Plan(config))
    assert d["module_gb"] == pytest.approx(2.21, abs=0.01)  # ADM FFHQ-256: 552.8M tensors, fp32
    assert d["final_gb"] < 2000 < d["peak_gb"]
    assert f"{d['final_gb']:.1f} GB" in out
