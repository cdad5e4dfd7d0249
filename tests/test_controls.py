"""Positive controls, the seed-spread flag and their place in the report, on synthetic tidy tables and
oracle reports (no training involved); and the plan's evaluation of the shared source distillation."""
import copy
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd
import pytest
import yaml

from test_tables import make_tidy
from unidad.config import load_schema, validate_config
from unidad.jobs import params as P
from unidad.jobs.report import build_controls, build_tables
from unidad.plan import SOURCE, Plan
from unidad.results import seed_spread
from unidad.results.spread import spread_banner
from unidad.results.controls import (
    CONTROL_COLUMNS,
    FAIL,
    NOT_MEASURED,
    PASS,
    SHOWN,
    Thresholds,
    controls_banner,
    failed_controls,
    load_controls,
    measure_controls,
)

ROOT = Path(__file__).resolve().parent.parent


def _report(in_domain, coverage, seed=None, nfe=25):
    report = {"oracle": {"in_domain_rate": in_domain, "mode_coverage": coverage}, "oracle_domain": "source",
              "timing": {"nfe": nfe}}
    if seed is not None:
        report["about"] = {"seed": seed, "slug": f"shared__dmd2-x__seed{seed}"}
    return report


TEACHER = _report(0.98, 1.0)
STUDENTS = [_report(0.96, 1.0, seed=0, nfe=3), _report(0.94, 11 / 12, seed=1, nfe=3)]


def _status(controls, control, metric, dataset=None):
    rows = controls[(controls["control"] == control) & (controls["metric"] == metric)]
    if dataset is not None:
        rows = rows[rows["dataset"] == dataset]
    [status] = list(rows["status"])
    return status


@pytest.fixture(scope="module")
def tidy():
    # FT's in-target rate is 1 - FID/400: 0.90 on near, 0.825 on far
    return make_tidy(seeds=(0, 1))


def test_every_control_passes_when_the_models_do_what_they_should(tidy):
    controls = measure_controls(tidy, TEACHER, STUDENTS, targets=["near", "far"])
    assert tuple(controls.columns) == CONTROL_COLUMNS
    assert set(controls["status"]) == {PASS, SHOWN}
    student = controls[(controls["control"] == "source_student") & (controls["metric"] == "oracle_in_domain")].iloc[0]
    assert student["value"] == pytest.approx(0.95) and student["n"] == 2 and student["reference"] == 0.98
    assert student["values"] == "0.9600;0.9400" and "seed 0: 0.960" in student["detail"]
    # students of several distillation stages are told apart by stage
    mixed = [dict(r, about=dict(r["about"], stage=stage)) for r, stage in zip(STUDENTS, ("dpdmd", "dmd2"))]
    detail = measure_controls(tidy, TEACHER, mixed, targets=["near", "far"])
    detail = detail[(detail["control"] == "source_student") & (detail["metric"] == "oracle_in_domain")].iloc[0]["detail"]
    assert detail.startswith("dmd2 seed 1: 0.940, dpdmd seed 0: 0.960"), detail
    ft = controls[(controls["control"] == "ft") & (controls["dataset"] == "far")].set_index("metric")
    assert ft.loc["oracle_in_domain", "value"] == pytest.approx(0.825)
    # FT's mode coverage is shown beside the shots' own, without a threshold
    assert ft.loc["oracle_mode_coverage", "status"] == SHOWN
    assert ft.loc["oracle_mode_coverage", "reference_label"] == "the shots"
    assert failed_controls(controls) == [] and controls_banner(controls) == ["**Every positive control passed.**"]


def test_each_threshold_fails_its_control(tidy):
    teacher = _report(0.927, 1.0)  # the demo's teacher as measured: below 0.97
    students = [_report(0.85, 0.75, seed=0, nfe=3)]  # 0.077 below its teacher; 0.75 < 0.9 x 1.0
    fid = {"near": {"ft": 40.0, "unidad": 34.0}, "far": {"ft": 150.0, "unidad": 55.0}}  # FT on far: 0.625 < 0.8
    controls = measure_controls(make_tidy(seeds=(0, 1), fid=fid, ablations=()), teacher, students,
                                targets=["near", "far"])
    assert _status(controls, "source_teacher", "oracle_in_domain") == FAIL
    assert _status(controls, "source_teacher", "oracle_mode_coverage") == PASS
    assert _status(controls, "source_student", "oracle_in_domain") == FAIL
    assert _status(controls, "source_student", "oracle_mode_coverage") == FAIL
    assert _status(controls, "ft", "oracle_in_domain", "near") == PASS
    assert _status(controls, "ft", "oracle_in_domain", "far") == FAIL
    failed = failed_controls(controls)
    assert len(failed) == 4 and any("0.927" in line and ">= 0.97" in line for line in failed)
    student = controls[(controls["control"] == "source_student") & (controls["metric"] == "oracle_in_domain")]
    assert "its teacher fails its own control" in student["detail"].iloc[0]
    assert "not meaningful" in controls_banner(controls)[0]


def test_the_student_must_stay_close_to_its_teacher_either_way(tidy):
    above = measure_controls(tidy, _report(0.80, 1.0), [_report(0.90, 1.0, seed=0, nfe=3)])
    assert _status(above, "source_student", "oracle_in_domain") == FAIL
    within = measure_controls(tidy, _report(0.80, 1.0), [_report(0.85, 1.0, seed=0, nfe=3)],
                              {"student_max_in_domain_gap": 0.05})
    assert _status(within, "source_student", "oracle_in_domain") == PASS


def test_missing_models_are_not_measured_not_passed(tidy):
    no_ft = make_tidy(methods=("unidad",), seeds=(0, 1), training_shots=False)
    controls = measure_controls(no_ft, {"timing": {"nfe": 25}}, [], targets=["near", "far", "other"])
    assert set(controls["status"]) == {NOT_MEASURED}
    assert set(controls.loc[controls["control"] == "ft", "dataset"]) == {"near", "far", "other"}
    student = controls[controls["control"] == "source_student"].iloc[0]
    assert "dmd2_ft and unidad_pre" in student["detail"]
    assert failed_controls(controls) == []
    assert "Controls not measured" in "\n".join(controls_banner(controls))


def test_unknown_threshold_keys_are_refused():
    with pytest.raises(ValueError, match=r"controls: unknown key\(s\) \['teacher_min'\]"):
        Thresholds.from_mapping({"teacher_min": 0.9})


def test_the_schema_defaults_are_the_libraries_defaults():
    defaults = {k: v["default"] for k, v in load_schema()["properties"]["controls"]["properties"].items()}
    assert defaults == Thresholds().__dict__
    demo = validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    assert Thresholds.from_mapping(demo["controls"]) == Thresholds()


# ------------------------------------------------------------------------------ seed spread
def test_seed_spread_flags_noisy_oracle_rates():
    tidy = make_tidy(seeds=(0, 1))
    noisy = (tidy["method"] == "ft_dmd2") & (tidy["dataset"] == "near") & (tidy["metric"] == "oracle_in_domain")
    tidy.loc[noisy, "value"] = tidy.loc[noisy, "seed"].map({0: 0.0, 1: 0.52})  # the README's fresh run
    spread = seed_spread(tidy, 0.10)
    flagged = spread[spread["flagged"]]
    assert list(zip(flagged["method"], flagged["dataset"], flagged["metric"])) == [("ft_dmd2", "near", "oracle_in_domain")]
    assert flagged["std"].iloc[0] == pytest.approx(0.3677, abs=1e-4)
    assert "training_shots" not in set(spread["method"])  # reference rows have no seeds
    assert set(spread["metric"]) == {"oracle_in_domain", "oracle_mode_coverage"}


def test_one_seed_has_no_spread_to_flag():
    spread = seed_spread(make_tidy(seeds=(0,)), 0.10)
    assert not spread["flagged"].any() and spread["std"].isna().all()
    assert "not judged" in spread_banner(spread, 0.10)[0]


# ------------------------------------------------------------------------------ the report
def test_a_failed_control_opens_the_report_and_marks_the_claims(tmp_path):
    tidy = make_tidy()
    tidy_path = tmp_path / "results_tidy.parquet"
    tidy.to_parquet(tidy_path, index=False)
    (tmp_path / "teacher.json").write_text(json.dumps(_report(0.927, 1.0)))
    students = []
    for i, report in enumerate(STUDENTS):
        students.append(tmp_path / f"student{i}.json")
        students[-1].write_text(json.dumps(report))
    thresholds = {**Thresholds().__dict__, "max_seed_std": 0.10}
    failed = build_controls(tidy_path, tmp_path / "teacher.json", students, ROOT / "config" / "methods.yaml",
                            thresholds, ["near", "far"], tmp_path / "controls.csv", tmp_path / "controls.md")
    assert len(failed) == 1 and "source teacher" in failed[0]
    page = (tmp_path / "controls.md").read_text()
    assert page.splitlines()[2].startswith("**CONTROLS FAILED (1)**") and "**Seed spread**" in page
    loaded = load_controls(tmp_path / "controls.csv")
    assert loaded["n"].dtype.kind == "i" and loaded.loc[0, "detail"] == ""
    assert failed_controls(loaded) == failed

    build_tables(tidy_path, ROOT / "config" / "methods.yaml", ["far"], tmp_path / "compiled",
                 controls=tmp_path / "controls.csv", thresholds=thresholds)
    index = (tmp_path / "compiled" / "all_tables.md").read_text()
    assert index.index("CONTROLS FAILED") < index.index("## controls") < index.index("## seed_spread") \
        < index.index("## main_final")
    claims = pd.read_csv(tmp_path / "compiled" / "claims.csv")
    assert set(claims["controls"]) == {"failed"}
    claims_md = (tmp_path / "compiled" / "claims.md").read_text()
    assert claims_md.startswith("**NOT MEANINGFUL") and "not meaningful" in claims_md
    assert (tmp_path / "compiled" / "controls.tex").read_text().count(r"\begin{table}") == 1


def test_claims_say_when_every_control_passed(tmp_path):
    tidy = make_tidy()
    controls = measure_controls(tidy, TEACHER, STUDENTS, targets=["near", "far"])
    controls.to_csv(tmp_path / "controls.csv", index=False)
    tidy.to_parquet(tmp_path / "tidy.parquet", index=False)
    build_tables(tmp_path / "tidy.parquet", ROOT / "config" / "methods.yaml", ["far"], tmp_path / "out",
                 controls=tmp_path / "controls.csv")
    claims = pd.read_csv(tmp_path / "out" / "claims.csv")
    assert set(claims["controls"]) == {"passed"}
    assert "Every positive control passed" in (tmp_path / "out" / "all_tables.md").read_text()


# ------------------------------------------------------------------------------ the plan
def _config(name):
    from unidad.config import load_config_file

    return load_config_file(ROOT / "config" / name)


def test_the_shared_source_distillation_is_evaluated_once_per_seed_and_never_retrained():
    plan = Plan(_config("config.yaml"))
    students = P.source_students(plan)
    assert len(students) == len(plan.config["seeds"])
    for slug in students:
        run = plan.runs[slug]
        assert run.shared and run.stage == "dmd2" and run.roles["teacher"] == SOURCE
        assert run.data["dataset"] == plan.config["source"]["dataset"]
        # the same run the methods train: dmd2_ft's and unidad_pre's first stage
        users = {mr.method for mr in plan.method_runs if slug in mr.stages}
        assert users == {"dmd2_ft", "unidad_pre"}
    job = P.student_report_job(plan, students[0])
    assert job["module"] == plan.runs[students[0]].product_module and job["sampling"]["kind"] == "few_step"
    assert job["seeds"] == P.report_seeds(plan) and job["source_domain"] == "source"
    assert job["weights"] == str(plan.final_weights(students[0]))
    inputs = P.controls_inputs(plan)
    assert inputs["students"] == [str(plan.path("student_report", slug=s)) for s in students]


def test_no_source_student_without_a_demo_source_or_a_distilling_method():
    cfg = copy.deepcopy(_config("config.yaml"))
    cfg["methods"] = ["ft", "unidad"]
    assert P.source_students(Plan(cfg)) == []
    assert P.source_students(Plan(_config("paper_fsig.yaml"))) == []
