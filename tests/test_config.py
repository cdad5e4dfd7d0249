"""Config validation: typos and wrong types fail early, naming the key, at `snakemake -n` too."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unidad.config import ConfigError, load_config_file, validate_config
from unidad.plan import Plan

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "config").glob("*.yaml"))


def _demo():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


@pytest.mark.parametrize("path", [p for p in CONFIGS if not p.name.startswith("methods")], ids=lambda p: p.name)
def test_shipped_configs_validate_and_plan(path):
    cfg = load_config_file(path)
    plan = Plan(cfg)
    assert plan.method_runs and plan.eval_units


def test_defaults_are_filled():
    cfg = validate_config({"datasets": {"source": {"kind": "demo", "domain": "source"},
                                        "near": {"kind": "demo", "domain": "near"},
                                        "far": {"kind": "demo", "domain": "far"}}})
    assert cfg["evaluation"]["n_samples"] == 1000 and cfg["backbone"]["kind"] == "tiny"
    assert cfg["datasets"]["near"]["full_size"] == 5000


@pytest.mark.parametrize("mutate,needle", [
    (lambda c: c.update(seedz=[0]), "seedz"),
    (lambda c: c["evaluation"].update(n_sampels=10), "evaluation.n_sampels"),
    (lambda c: c.update(seeds="0"), "seeds"),
    (lambda c: c["backbone"].update(kind="unet9000"), "backbone.kind"),
    (lambda c: c["datasets"]["near"].update(ful_size=3), "datasets.near.ful_size"),
    (lambda c: c.update(targets=["nowhere"]), "nowhere"),
    (lambda c: c.update(methods=["ft", "made_up"]), "made_up"),
    (lambda c: c["stage_params"]["unidad"].update(dual_wieght=0.3), "dual_wieght"),
    # dmd2 has one teacher: Uni-DAD's target-teacher options are not among its options
    (lambda c: c["stage_params"]["dmd2"].update(dual_weight=0.3), "dual_weight"),
    (lambda c: c.update(plugins=["no_such_plugin_module"]), "no_such_plugin_module"),
])
def test_bad_config_names_the_key(mutate, needle):
    cfg = _demo()
    mutate(cfg)
    with pytest.raises(ConfigError) as err:
        Plan(validate_config(cfg))
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_unknown_stage_lists_known_stages():
    cfg = _demo()
    cfg["extra_methods"] = {"mine": {"stages": [{"stage": "nonexistent_stage"}]}}
    cfg["methods"] = ["mine"]
    with pytest.raises(ConfigError, match="known stages: .*dmd2.*ft"):
        Plan(validate_config(cfg))


def test_snakemake_dry_run_fails_on_a_misspelt_key(tmp_path):
    bad = _demo()
    bad["evaluation"]["n_sampels"] = 5
    cfg_file = tmp_path / "bad.yaml"
    cfg_file.write_text(yaml.safe_dump(bad))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", str(cfg_file), "--directory", str(tmp_path),
         "--snakefile", str(ROOT / "Snakefile")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "evaluation.n_sampels" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_ablation_variants_become_methods_with_one_option_changed():
    cfg = load_config_file(ROOT / "config" / "ablations.yaml")
    plan = Plan(cfg)
    labels = {mr.label for mr in plan.method_runs}
    assert {"unidad@a=0.25", "unidad@gan_loss=hinge", "unidad@heads=single", "unidad@nfe=1"} <= labels
    a_runs = [mr for mr in plan.method_runs if mr.ablation is not None and mr.ablation.label == "a"]
    assert {mr.method for mr in a_runs} == {"unidad"}  # the method id stays the method's own
    assert {plan.runs[mr.final].params["dual_weight"] for mr in a_runs} == {0.0, 0.25, 0.75, 1.0}
    assert {mr.ablation.param for mr in a_runs} == {"dual_weight"}  # the option the label stands for
    k1 = next(mr for mr in plan.method_runs if mr.label == "unidad@nfe=1")
    assert plan.method_nfe(k1.final) == 1


def test_ablation_values_are_data_and_fill_the_tidy_columns():
    from unidad.ablations import Ablation

    ablation = Ablation(label="a", param="dual_weight", value=0.25, stage="unidad")
    assert ablation.fields() == {"ablation": "a=0.25", "ablation_param": "a", "ablation_value": "0.25",
                                 "ablation_option": "dual_weight"}


def test_bad_ablation_names_the_problem():
    cfg = _demo()
    cfg["ablations"] = [{"method": "unidad", "param": "dual_wieght", "values": [0.1]}]
    with pytest.raises(ConfigError, match="dual_wieght"):
        Plan(validate_config(cfg))
    cfg["ablations"] = [{"method": "nope", "param": "dual_weight", "values": [0.1]}]
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        Plan(validate_config(cfg))


def test_unidad_plan_prints_jobs_and_estimates(capsys):
    from unidad.cli import main

    assert main(["plan", str(ROOT / "config" / "paper_fsig.yaml")]) == 0
    out = capsys.readouterr().out
    assert "train_stage" in out and "GPU-hours" in out and "> 40 GB" in out
