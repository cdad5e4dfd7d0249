"""The plan: which runs exist, what options each gets, and that run names change with what they compute."""
import copy
from pathlib import Path

import pytest
import yaml

from unidad.config import ConfigError, validate_config
from unidad.plan import Plan

ROOT = Path(__file__).resolve().parent.parent


def _demo():
    return validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))


def _run(plan, target, method, seed=0):
    [mr] = [m for m in plan.method_runs if (m.target, m.label, m.seed) == (target, method, seed)]
    return plan.runs[mr.final]


def test_dataset_stage_params_apply_to_that_dataset_only():
    cfg = _demo()
    cfg["datasets"]["far"]["stage_params"] = {"unidad": {"dual_weight": 0.9}}
    plan = Plan(cfg)
    assert _run(plan, "far", "unidad").params["dual_weight"] == 0.9
    near_default = cfg["stage_params"]["unidad"].get("dual_weight", 0.5)
    assert _run(plan, "near", "unidad").params["dual_weight"] == near_default


def test_method_params_override_dataset_stage_params():
    cfg = _demo()
    cfg["datasets"]["far"]["stage_params"] = {"unidad": {"target_teacher": "frozen", "dual_weight": 0.9}}
    run = _run(Plan(cfg), "far", "unidad")
    assert run.params["target_teacher"] == "online"  # methods.yaml says so for `unidad`
    assert run.params["dual_weight"] == 0.9


def test_a_new_source_teacher_renames_every_run_that_starts_from_it():
    cfg = _demo()
    before = Plan(cfg)
    changed = copy.deepcopy(cfg)
    changed["source"]["params"]["iterations"] += 1
    after = Plan(changed)
    assert before.teacher_slug != after.teacher_slug
    assert set(before.runs).isdisjoint(after.runs)


def test_evaluation_only_options_do_not_rename_runs():
    cfg = _demo()
    changed = copy.deepcopy(cfg)
    changed["evaluation"]["n_samples"] = 10
    changed["datasets"]["near"]["full_size"] = 100
    assert set(Plan(cfg).runs) == set(Plan(changed).runs)


def test_changing_a_target_dataset_renames_only_its_runs():
    cfg = _demo()
    changed = copy.deepcopy(cfg)
    changed["datasets"]["far"]["seed"] = 7
    before, after = Plan(cfg), Plan(changed)
    renamed = set(before.runs) - set(after.runs)
    assert renamed and all(slug.startswith("far-") for slug in renamed)


def test_shots_ablation_trains_the_method_unchanged_on_fewer_shots():
    cfg = _demo()
    cfg["ablations"] = [{"method": "unidad", "param": "shots", "values": [1, 5], "targets": ["near"]}]
    plan = Plan(validate_config(cfg))
    variant_runs = [m for m in plan.method_runs if m.ablation is not None]
    assert sorted((m.label, m.shots) for m in variant_runs if m.seed == 0) == [
        ("unidad@shots=1", 1), ("unidad@shots=5", 5)]
    five = plan.runs[[m for m in variant_runs if m.shots == 5][0].final]
    ten = _run(plan, "near", "unidad")
    assert five.params == ten.params  # the stage options are the method's own
    assert five.data["shots"] == 5 and five.slug.startswith("near-k5__")


def test_shots_ablation_values_must_be_positive_integers():
    cfg = _demo()
    cfg["ablations"] = [{"method": "unidad", "param": "shots", "values": [0]}]
    with pytest.raises(ConfigError, match="shots values must be positive integers"):
        Plan(validate_config(cfg))
