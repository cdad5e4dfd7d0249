"""Every method's composition as config/methods.yaml states it: stages, data, and where every weights
role comes from. A change here changes what a method measures, so it must be deliberate."""
from pathlib import Path

import pytest
import yaml

from unidad.config import ConfigError, validate_config
from unidad.plan import SOURCE, Plan
from unidad.results.methods import MethodCatalogue

ROOT = Path(__file__).resolve().parent.parent
METHODS_FILE = ROOT / "config" / "methods.yaml"

# method -> [(stage name, stage kind, data, {role: source of its weights}, stage params set by the method)]
COMPOSITIONS = {
    "ft": [("adapt", "ft", "target", {"init": "source"}, {})],
    "ft_dmd2": [
        ("adapt", "ft", "target", {"init": "source"}, {}),
        # Adapt-then-Distill: the student starts from the adapted teacher it distils (DMD2, official code)
        ("distill", "dmd2", "target", {"init": "adapt", "teacher": "adapt"}, {}),
    ],
    "dmd2_ft": [
        ("distill", "dmd2", "source", {"init": "source", "teacher": "source"}, {}),
        ("adapt", "student_ft", "target", {"init": "distill"}, {}),
    ],
    "unidad_src": [("unidad", "unidad", "target", {"init": "source", "source": "source"},
                    {"target_teacher": "none"})],
    "unidad": [("unidad", "unidad", "target", {"init": "source", "source": "source"},
                {"target_teacher": "online"})],
    "unidad_pre": [
        ("distill", "dmd2", "source", {"init": "source", "teacher": "source"}, {}),
        ("adapt", "ft", "target", {"init": "source"}, {}),
        ("unidad", "unidad", "target", {"init": "distill", "source": "source", "target_teacher": "adapt"},
         {"target_teacher": "frozen"}),
    ],
    "ft_dpdmd": [
        ("adapt", "ft", "target", {"init": "source"}, {}),
        ("distill", "dpdmd", "target", {"init": "adapt", "teacher": "adapt"}, {}),
    ],
    "dpdmd_ft": [
        ("distill", "dpdmd", "source", {"init": "source", "teacher": "source"}, {}),
        ("adapt", "student_ft", "target", {"init": "distill"}, {}),
    ],
    "ft_iflash": [
        ("adapt", "ft", "target", {"init": "source"}, {}),
        ("distill", "imagine_flash", "target", {"init": "adapt", "teacher": "adapt"}, {}),
    ],
    "iflash_ft": [
        ("distill", "imagine_flash", "source", {"init": "source", "teacher": "source"}, {}),
        ("adapt", "student_ft", "target", {"init": "distill"}, {}),
    ],
    "unidad_dp": [("unidad", "unidad_dp", "target", {"init": "source", "source": "source"},
                   {"target_teacher": "online"})],
}
ROLE_KEYS = ("init", "teacher", "source", "target_teacher")


def _methods():
    return yaml.safe_load(METHODS_FILE.read_text())


def test_every_runnable_method_is_pinned():
    assert set(MethodCatalogue.from_file(METHODS_FILE).runnable) == set(COMPOSITIONS)


@pytest.mark.parametrize("method", sorted(COMPOSITIONS))
def test_methods_file_states_each_stage_and_every_roles_source(method):
    stages = _methods()[method]["stages"]
    found = [(s["name"], s["stage"], s["data"], {r: s[r] for r in ROLE_KEYS if r in s}, s.get("params", {}))
             for s in stages]
    assert found == COMPOSITIONS[method]
    for s in stages:  # every stage says where its weights come from and why
        assert isinstance(s.get("why"), str) and len(s["why"]) > 20, f"{method}/{s['name']} lacks a 'why'"


@pytest.mark.parametrize("method", sorted(COMPOSITIONS))
def test_plan_resolves_every_role_to_the_stated_run(method):
    config = validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    config["methods"] = [method]
    plan = Plan(config)
    mr = next(m for m in plan.method_runs if m.method == method)
    by_name = {plan.runs[slug].stage_name: slug for slug in mr.stages}
    for (name, kind, data, roles, params), slug in zip(COMPOSITIONS[method], mr.stages):
        run = plan.runs[slug]
        assert (run.stage_name, run.stage) == (name, kind)
        assert run.data["split"] == ("train" if data == "source" else "shots")
        expected = {r: SOURCE if src == SOURCE else by_name[src] for r, src in roles.items()}
        # roles the methods file leaves out default to the source teacher
        assert {r: v for r, v in run.roles.items() if r in expected} == expected
        assert all(v == SOURCE for r, v in run.roles.items() if r not in expected)
        assert all(run.params[k] == v for k, v in params.items())


def test_adapt_then_distill_student_and_teacher_are_the_shared_fine_tune():
    config = validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    plan = Plan(config)
    for mr in (m for m in plan.method_runs if m.method == "ft_dmd2"):
        adapt, distill = mr.stages
        assert plan.runs[distill].roles == {"init": adapt, "teacher": adapt}
        ft = next(m for m in plan.method_runs if (m.method, m.target, m.seed) == ("ft", mr.target, mr.seed))
        assert ft.stages == [adapt]  # one fine-tune serves ft and ft_dmd2


def test_a_why_that_is_not_text_is_refused():
    config = validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    config["methods"] = ["mine"]
    config["extra_methods"] = {"mine": {"stages": [{"stage": "ft", "why": ["a", "list"]}]}}
    with pytest.raises(ConfigError, match="'why' must be text"):
        Plan(config)
