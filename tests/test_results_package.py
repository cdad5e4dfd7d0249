"""The results package: its modules import each other without a cycle, the tidy schema is one, and
the methods file (order, single_stage, reference and quoted rows) drives the tables."""
import ast
import copy
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd
import pytest
import yaml

from test_tables import make_tidy
from unidad.config import ConfigError, validate_config
from unidad.results import (
    TIDY_COLUMNS,
    MethodCatalogue,
    compute_table,
    main_table,
    normalise_tidy,
    oracle_table,
    paper_comparison,
    tidy_row,
)
from unidad.results.schema import ROW_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "unidad" / "results"


# ------------------------------------------------------------------------------ import structure
def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_results_modules_import_each_other_without_a_cycle():
    modules = {p.stem: p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    graph = {name: {m.split(".")[2] for m in _imported_modules(path)
                    if m.startswith("unidad.results.") and m.split(".")[2] in modules} - {name}
             for name, path in modules.items()}
    done: set[str] = set()

    def visit(name, stack):
        assert name not in stack, f"import cycle: {' -> '.join(stack + [name])}"
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, stack + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert {"schema", "select", "aggregate", "methods", "tables", "paper", "claims", "render"} <= set(modules)


def test_the_library_never_imports_the_figures_or_the_old_modules():
    for path in (ROOT / "unidad").rglob("*.py"):
        if path.name == "reporting.py" and path.parent.name == "unidad":
            continue  # the DAG glue for the figures job (to be replaced); it imports them inside functions
        imported = _imported_modules(path)
        assert not any(m == "paper_figures" or m.startswith("paper_figures.") for m in imported), path
        assert not {"unidad.tables", "unidad.claims"} & imported, path


def test_no_results_module_is_long():
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 450, path


# ------------------------------------------------------------------------------ the tidy schema
def test_tidy_row_has_every_row_column_and_refuses_unknown_fields():
    row = tidy_row("demo", dataset="near", method="ft", metric="fid", value=1.5)
    assert tuple(row) == ROW_COLUMNS and len(ROW_COLUMNS) == 30 and ROW_COLUMNS[-1] == "standin"
    assert row["standin"] is False  # only a rehearsal stamps its numbers
    assert row["benchmark"] == "demo" and row["split"] == "test" and row["final"] is True
    assert row["shots"] == 0 and row["method_nfe"] == 0 and row["checkpoint"] == ""
    with pytest.raises(KeyError, match="selection"):
        tidy_row("demo", selection="final")  # with_selection adds it, the row builder does not
    assert TIDY_COLUMNS == ROW_COLUMNS + ("selection",)


def test_readers_fill_and_type_every_column_of_the_schema():
    frame = normalise_tidy(pd.DataFrame([tidy_row("demo", dataset="near", method="ft", seed=1, step=300,
                                                  metric="fid", value=2.0)]))
    assert set(TIDY_COLUMNS) <= set(frame.columns)
    assert frame.loc[0, "selection"] == "final" and frame.loc[0, "split"] == "test"
    assert frame["method_nfe"].dtype == float and frame["step"].dtype == float
    partial = normalise_tidy(pd.DataFrame({"dataset": ["near"], "method": ["ft"], "seed": [0], "metric": ["fid"],
                                           "value": [1.0]}))
    assert pd.isna(partial.loc[0, "method_nfe"]) and partial.loc[0, "checkpoint"] == ""


# ------------------------------------------------------------------------------ the methods file
CUSTOM = {
    "unidad": {"single_stage": "yes", "stages": [{"stage": "unidad"}]},
    "ft_dmd2": {"single_stage": "adaptation only", "note": "a footnote from the methods file."},
    "ft": {"stages": [{"stage": "ft"}]},  # no single_stage: "no"
    "dmd2_ft": {},
    "unidad_src": {},
    "unidad_pre": {"single_stage": True},  # YAML's unquoted yes
    "crdi": {"quoted": True, "description": "quoted"},
    "dmd2_ft_ref": {"reference": True, "description": "a reference row"},
}


def test_methods_file_order_single_stage_and_notes_drive_the_main_table():
    methods = MethodCatalogue.from_dict(CUSTOM)
    table = main_table(make_tidy(), methods=methods)
    assert list(table.index) == ["unidad", "ft_dmd2", "ft", "dmd2_ft", "unidad_src", "unidad_pre"]
    single = table[("", "single-stage")]
    assert (single["unidad"], single["ft_dmd2"], single["ft"], single["unidad_pre"]) == \
        ("yes", "adaptation only", "no", "yes")
    assert "ft_dmd2: a footnote from the methods file." in table.attrs["notes"]
    assert not any(n.startswith("unidad_pre:") for n in table.attrs["notes"])  # its note is not in this file


def test_reference_rows_come_from_the_methods_file():
    tidy = make_tidy(methods=("ft", "unidad"), ablations=(), training_shots=False)
    reference = tidy[tidy["method"] == "unidad"].assign(method="dmd2_ft_ref")
    reference["value"] = reference["value"] * 10  # would be "best" on every higher-is-better column
    frame = pd.concat([tidy, reference])
    methods = MethodCatalogue.from_dict(CUSTOM)
    assert "dmd2_ft_ref" not in main_table(frame, methods=methods).index
    assert "dmd2_ft_ref" not in compute_table(frame, methods=methods).index
    oracle = oracle_table(frame, methods=methods)
    assert list(oracle.index)[-1] == "dmd2_ft_ref"
    assert all(row != "dmd2_ft_ref" for row, _ in oracle.attrs["best_cells"])
    # without the reference mark, the same rows are an ordinary method and win columns
    plain = MethodCatalogue.from_dict({k: v for k, v in CUSTOM.items() if k != "dmd2_ft_ref"})
    assert any(row == "dmd2_ft_ref" for row, _ in oracle_table(frame, methods=plain).attrs["best_cells"])


def test_quoted_rows_come_from_the_methods_file():
    table = paper_comparison(make_tidy(), methods=MethodCatalogue.from_dict(CUSTOM))
    assert "crdi (quoted)" in table.index and "ddpm_pa" in table.index  # ddpm_pa is not quoted in this file
    project = paper_comparison(make_tidy())
    assert {"crdi (quoted)", "ddpm_pa (quoted)"} <= set(project.index)


def test_the_projects_methods_file_lists_reference_and_quoted_rows():
    methods = MethodCatalogue.default()
    assert methods.runnable == ("ft", "ft_dmd2", "dmd2_ft", "unidad_src", "unidad", "unidad_pre",
                                "ft_dpdmd", "dpdmd_ft", "ft_iflash", "iflash_ft", "unidad_dp")
    assert methods.references == ("training_shots", "source_teacher")
    assert set(methods.quoted) == {"ddpm_pa", "crdi", "turbo_pso"}
    assert methods.single_stage("ft") == "adaptation only" and methods.single_stage("source_teacher") is None


def test_bad_methods_file_entries_are_refused():
    with pytest.raises(ValueError, match="single_stage must be one of"):
        MethodCatalogue.from_dict({"x": {"single_stage": "maybe"}})
    with pytest.raises(ValueError, match="cannot have stages"):
        MethodCatalogue.from_dict({"x": {"reference": True, "stages": [{"stage": "ft"}]}})


def _demo_config():
    return validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))


def test_the_plan_skips_reference_and_quoted_rows():
    from unidad.plan import Plan, load_methods

    known = load_methods(_demo_config())
    assert "training_shots" not in known and "crdi" not in known and "unidad" in known
    assert {mr.method for mr in Plan(_demo_config()).method_runs} <= set(MethodCatalogue.default().runnable)


@pytest.mark.parametrize("row, kind", [("training_shots", "reference"), ("turbo_pso", "quoted")])
def test_choosing_a_reference_or_quoted_row_as_a_method_is_a_config_error(row, kind):
    from unidad.plan import Plan

    cfg = copy.deepcopy(_demo_config())
    cfg["methods"] = list(cfg["methods"]) + [row]
    with pytest.raises(ConfigError, match=f"'{row}' is a {kind} row") as err:
        Plan(cfg)
    assert "\n" not in str(err.value)
