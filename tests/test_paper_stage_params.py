"""A paper config is merged over config/config.yaml key by key (as Snakemake merges --configfile), so
every stage option the demo sets would silently reach the paper's runs unless the paper config states
its own value. Each paper config must restate every option the demo sets for the stages it runs."""
from pathlib import Path

import pytest
import yaml

from unidad.config import load_config_file
from unidad.plan import Plan

ROOT = Path(__file__).resolve().parent.parent
PAPER_CONFIGS = ["paper_fsig.yaml", "paper_fsig_official.yaml", "paper_fsig_rehearsal.yaml", "paper_sdp.yaml",
                 "paper_sdp_rehearsal.yaml"]


def _stage_params(name):
    return (yaml.safe_load((ROOT / "config" / name).read_text()) or {}).get("stage_params", {})


def _method_params(config, method, stage_name):
    """The params a methods file sets for one stage of a method (they win over stage_params)."""
    stages = yaml.safe_load((ROOT / config["methods_file"]).read_text())[method]["stages"]
    return next(s for s in stages if s.get("name", s["stage"]) == stage_name).get("params", {})


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_configs_restate_every_stage_option_the_demo_sets(name, tmp_path):
    demo, paper = _stage_params("config.yaml"), _stage_params(name)
    config = load_config_file(ROOT / "config" / name, {"results_dir": str(tmp_path)})
    # every method its methods file can run, not only the config's list: a user adds one by name
    methods = yaml.safe_load((ROOT / config["methods_file"]).read_text())
    config["methods"] = [m for m, spec in methods.items() if not (spec.get("reference") or spec.get("quoted"))]
    plan = Plan(config)
    leaked = []
    for mr in plan.method_runs:
        for slug in mr.stages:
            run = plan.runs[slug]
            stated = {**paper.get(run.stage, {}), **_method_params(config, mr.method, run.stage_name)}
            leaked += [f"{run.stage}.{key}" for key in demo.get(run.stage, {}) if key not in stated]
    assert not leaked, f"{name} inherits the demo's values of {sorted(set(leaked))}; state the paper's values"


def test_paper_fsig_runs_get_the_papers_schedule(tmp_path):
    plan = Plan(load_config_file(ROOT / "config" / "paper_fsig.yaml", {"results_dir": str(tmp_path)}))
    unidad = next(r for r in plan.runs.values() if r.stage == "unidad")
    # unidad_method.md: ratio 5, one learning rate for every network, 500 warm-up steps, GAN 0.01 / 0.03
    assert (unidad.params["ratio"], unidad.params["fake_lr"], unidad.params["warmup_iters"]) == (5, 0.0, 500)
    assert (unidad.params["gan_weight_g"], unidad.params["gan_weight_d"]) == (0.01, 0.03)
