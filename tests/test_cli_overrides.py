"""`snakemake --config` overrides: nested values arrive as strings and become the declared type."""
import dataclasses
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from snakemake.cli import parse_config

from unidad.config import ConfigError, coerce_strings, deep_merge, load_schema, parse_text, validate_config
from unidad.plan import Plan
from unidad.stages.base import StageConfigError, _coerce

ROOT = Path(__file__).resolve().parent.parent


def _demo():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


@pytest.mark.parametrize("text,kind,expected", [
    ("400", "int", 400), ("-3", "int", -3), (" 7 ", "int", 7),
    ("0.25", "float", 0.25), ("2e-6", "float", 2e-6), ("3", "float", 3.0),
    ("true", "bool", True), ("False", "bool", False), ("yes", "bool", True), ("off", "bool", False),
])
def test_parse_text_reads_the_declared_type(text, kind, expected):
    value = parse_text(text, kind)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text,kind", [
    ("abc", "int"), ("4.5", "int"), ("", "int"), ("0x10", "int"),
    ("abc", "float"), ("nan", "float"), ("inf", "float"), ("", "float"),
    ("maybe", "bool"), ("1", "bool"), ("", "bool"),
])
def test_parse_text_refuses_what_does_not_parse(text, kind):
    with pytest.raises(ValueError):
        parse_text(text, kind)


def test_what_snakemake_hands_over_is_strings():
    """The premise: Snakemake reads nested --config values with YAML's BaseLoader (all strings)."""
    assert parse_config(["stage_params={unidad: {dual_weight: 0.25, iterations: 400}}"]) == {
        "stage_params": {"unidad": {"dual_weight": "0.25", "iterations": "400"}}
    }


def test_schema_strings_become_integers_booleans_and_lists_of_them():
    schema = load_schema()
    config = {"evaluation": {"n_samples": "500", "nfe_sweep": ["1", "2"], "extractor": "demo"},
              "seeds": ["0", "1"], "resources": {"train": {"gpus": "1"}}, "benchmark": "123"}
    coerce_strings(config, schema)
    assert config == {"evaluation": {"n_samples": 500, "nfe_sweep": [1, 2], "extractor": "demo"},
                      "seeds": [0, 1], "resources": {"train": {"gpus": 1}}, "benchmark": "123"}
    number = {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"},
                                               "b": {"type": "boolean"}}}
    assert coerce_strings({"x": "0.5", "y": "2", "b": "true"}, number) == {"x": 0.5, "y": 2, "b": True}


def test_command_line_overrides_reach_the_plan_typed():
    overrides = parse_config([
        "stage_params={unidad: {dual_weight: 0.25, iterations: 400, flip_augment: false}}",
        "evaluation={n_samples: 500, nfe_sweep: [1, 2]}",
        "seeds=[0, 1]",
    ])
    config = validate_config(deep_merge(_demo(), overrides))
    assert config["evaluation"]["n_samples"] == 500 and config["evaluation"]["nfe_sweep"] == [1, 2]
    assert config["seeds"] == [0, 1]
    runs = [r for r in Plan(config).runs.values() if r.stage == "unidad"]
    assert runs
    for run in runs:
        assert run.params["dual_weight"] == 0.25 and isinstance(run.params["dual_weight"], float)
        assert run.params["iterations"] == 400 and run.params["flip_augment"] is False
    # the same value from a file and from the command line names the same run
    from_file = deep_merge(_demo(), {"stage_params": {"unidad": {"dual_weight": 0.25, "iterations": 400,
                                                                 "flip_augment": False}},
                                     "evaluation": {"n_samples": 500, "nfe_sweep": [1, 2]}, "seeds": [0, 1]})
    assert set(Plan(validate_config(from_file)).runs) == set(Plan(config).runs)


@pytest.mark.parametrize("override,message", [
    ("evaluation={n_samples: abc}", "config key evaluation.n_samples must be of type integer, got 'abc'"),
    ("seeds=[0, x]", "config key seeds.1 must be of type integer, got 'x'"),
    ("stage_params={unidad: {dual_weight: abc}}", "option 'dual_weight' of UniDADConfig must be float, got 'abc'"),
    ("stage_params={unidad: {iterations: 1.5}}", "option 'iterations' of UniDADConfig must be int, got '1.5'"),
])
def test_unparsable_overrides_fail_in_one_line(override, message):
    with pytest.raises(ConfigError) as err:
        Plan(validate_config(deep_merge(_demo(), parse_config([override]))))
    assert message in str(err.value) and "\n" not in str(err.value)


@dataclass
class _Options:
    a: float = 0.0
    b: int = 0
    c: bool = True
    d: "int | None" = None
    e: "list[float]" = dataclasses.field(default_factory=list)
    f: "tuple[int, ...]" = ()
    g: str = ""


_FIELDS = {f.name: f for f in dataclasses.fields(_Options)}


@pytest.mark.parametrize("name,value,expected", [
    ("a", "0.25", 0.25), ("a", 1, 1.0), ("b", "400", 400), ("b", 400, 400), ("c", "false", False),
    ("d", "null", None), ("d", None, None), ("d", "3", 3), ("e", ["1", "2.5"], [1.0, 2.5]),
    ("f", ["1", 2], (1, 2)), ("g", "0.25", "0.25"),
])
def test_stage_option_coercion(name, value, expected):
    out = _coerce("_Options", name, _FIELDS[name], value, "where: ")
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize("name,value,kind", [
    ("a", "abc", "float"), ("b", "4.5", "int"), ("b", True, "int"), ("b", 4.0, "int"), ("c", "maybe", "bool"),
    ("c", 1, "bool"), ("d", "x", "int|None"), ("e", "1", "list[float]"), ("e", ["x"], "list[float]"),
    ("g", 3, "str"),
])
def test_stage_option_coercion_refuses_in_one_line(name, value, kind):
    with pytest.raises(StageConfigError) as err:
        _coerce("_Options", name, _FIELDS[name], value, "where: ")
    assert str(err.value) == f"where: option '{name}' of _Options must be {kind}, got {value!r}"


def _dry_run(tmp_path, override):
    """A real `snakemake -n` of the demo config with one --config override; its .snakemake goes to tmp_path."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--quiet", "--snakefile", str(ROOT / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(ROOT / "config" / "config.yaml"), "--config", override],
        capture_output=True, text=True, timeout=300,
    )


@pytest.mark.parametrize("override", [
    "stage_params={unidad: {dual_weight: 0.25}}",
    "stage_params={unidad: {iterations: 400}}",
    "evaluation={n_samples: 500}",
])
def test_snakemake_dry_run_takes_nested_overrides(tmp_path, override):
    proc = _dry_run(tmp_path, override)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakemake_dry_run_refuses_an_unparsable_override(tmp_path):
    proc = _dry_run(tmp_path, "stage_params={unidad: {dual_weight: abc}}")
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "dual_weight" in line]
    assert len(lines) == 1 and lines[0].startswith("invalid config: ")
    assert lines[0].endswith("option 'dual_weight' of UniDADConfig must be float, got 'abc'")
