"""The paper configs: per-target dual-domain weight, the official code's protocol beside the corrected
one, and the protocol label that every number carries."""
import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml

from unidad.config import ConfigError, load_config_file, validate_config
from unidad.jobs.params import metric_inputs, reference_splits
from unidad.plan import Plan
from unidad.results.select import with_selection
from unidad.results.tables import main_table

ROOT = Path(__file__).resolve().parent.parent
CORRECTED = ROOT / "config" / "paper_fsig.yaml"
OFFICIAL = ROOT / "config" / "paper_fsig_official.yaml"


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flat(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def test_official_config_differs_from_the_corrected_one_only_in_protocol_keys():
    a, b = _flat(yaml.safe_load(CORRECTED.read_text())), _flat(yaml.safe_load(OFFICIAL.read_text()))
    changed = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    gan = {f"stage_params.{s}.gan_weight_{x}" for s in ("dmd2", "unidad", "imagine_flash", "unidad_dp") for x in ("g", "d")}
    cadence = {f"stage_params.{s}.checkpoint_every"
               for s in ("ft", "student_ft", "dmd2", "unidad", "dpdmd", "imagine_flash", "unidad_dp")}
    protocol = {f"evaluation.{k}" for k in ("protocol", "extractor", "intra_lpips_variant", "selections")}
    assert changed == {"benchmark"} | gan | cadence | protocol
    assert all(b[k] == 500 for k in cadence)
    assert [b[f"stage_params.unidad.gan_weight_{x}"] for x in ("g", "d")] == [0.015, 0.05]
    assert b["evaluation.extractor"] == "inception_pytorch_fid"
    assert b["evaluation.intra_lpips_variant"] == "unidad_compat" and b["evaluation.n_samples"] == 5000
    assert "best_test" in b["evaluation.selections"] and "best_test" not in a["evaluation.selections"]


@pytest.mark.parametrize("path", [CORRECTED, OFFICIAL])
def test_paper_configs_set_a_per_target(path):
    plan = Plan(load_config_file(path))
    expected = {"babies": 0.25, "sunglasses": 0.25, "metfaces": 0.75, "afhq_cat": 0.75}
    runs = [r for r in plan.runs.values() if r.stage == "unidad"]
    assert {r.target for r in runs} == set(expected)
    for run in runs:
        assert run.params["dual_weight"] == expected[run.target], run.slug


def test_a_dataset_stage_param_the_stage_does_not_have_is_refused():
    config = yaml.safe_load(CORRECTED.read_text())
    config["datasets"]["babies"]["stage_params"] = {"unidad": {"dual_wieght": 0.25}}
    with pytest.raises(ConfigError, match="dual_wieght"):
        Plan(load_config_file(CORRECTED, overrides={"datasets": config["datasets"]}))


@pytest.mark.parametrize("change, message", [
    ({"selections": ["final", "best_test"]}, "best_test"),
    ({"intra_lpips_variant": "unidad_compat"}, "intra_lpips_variant"),
    ({"extractor": "inception_pytorch_fid"}, "extractor"),
    ({"protocol": "official_code"}, "evaluation"),
])
def test_protocol_label_must_match_its_settings(change, message):
    with pytest.raises(ConfigError, match=message):
        load_config_file(CORRECTED, overrides={"evaluation": change})


def test_val_reference_only_where_a_selection_needs_it():
    config = validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    plan = Plan(config)
    assert reference_splits(plan, "near") == ["full", "val"]
    final_only = copy.deepcopy(config)
    final_only["evaluation"]["selections"] = ["final"]
    assert reference_splits(Plan(final_only), "near") == ["full"]
    paper = Plan(load_config_file(CORRECTED))  # staged folders without val_path: no val reference
    slug = next(r.slug for r in paper.runs.values() if r.target == "babies")
    inputs = metric_inputs(paper, slug, paper.runs[slug].checkpoint_steps[-1])
    assert list(inputs["references"]) == ["full"] and inputs["evaluation_protocol"] == "corrected"


def _tidy(protocol):
    rows = []
    for step, fid in ((500, 30.0), (1000, 20.0), (1500, 25.0)):
        rows.append({"benchmark": "b", "dataset": "babies", "shots": 10, "method": "unidad", "stage": "unidad",
                     "seed": 0, "slug": "s", "step": step, "nfe": 3, "method_nfe": 3, "final": step == 1500,
                     "split": "test", "metric": "fid", "variant": "", "extractor": "inception_v3_tf/pool3/x",
                     "value": fid, "protocol": protocol, "ablation": ""})
    return pd.DataFrame(rows)


def test_selections_follow_the_config_and_tables_name_the_protocol(tmp_path):
    corrected = with_selection(_tidy("corrected"), ["final", "best_val"])
    assert set(corrected["selection"]) == {"all", "final"}  # no val split: no best_val rows
    official = with_selection(_tidy("official_code"), ["final", "best_test"])
    picked = official[official["selection"] == "best_test"]
    assert list(picked["step"]) == [1000]
    table = main_table(official, metrics=("fid",), selection="best_test")
    assert any("official_code" in n for n in table.attrs["notes"])
    assert "Optimistic" in table.attrs["caption"]
    with pytest.raises(ValueError, match="unknown checkpoint selection"):
        with_selection(_tidy("corrected"), ["best"])
