"""The extension guide, executed: a new stage file registered through the config's `plugins` key + a
methods entry in a copy of the workflow, then `snakemake -n` and a tiny real run, without touching any
.smk file."""
import re
import subprocess
import sys

import pytest
import yaml
from guides import ROOT, code_blocks, copy_workflow, snakemake

GUIDE = ROOT / "docs" / "adding_a_baseline.md"


def _code_blocks(lang):
    return code_blocks(GUIDE, lang)


def _yaml_block(first_key):
    """The guide's yaml block that starts with `first_key` (the methods entry, the config's plugins)."""
    return next(yaml.safe_load(b) for b in _code_blocks("yaml") if b.startswith(first_key))


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory):
    dst = copy_workflow(tmp_path_factory.mktemp("wf"))
    (dst / "ft_fixed_sigma.py").write_text(_code_blocks("python")[0])  # next to the Snakefile
    methods = yaml.safe_load((dst / "config" / "methods.yaml").read_text())
    methods.update(_yaml_block("ft_fixed_sigma:"))
    (dst / "config" / "methods.yaml").write_text(yaml.safe_dump(methods, sort_keys=False))
    smk_before = {p: p.read_bytes() for p in (dst / "workflow").rglob("*.smk")}
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg.update(benchmark="ext", methods=["ft_fixed_sigma"], targets=["near"])
    cfg.update(_yaml_block("plugins:"))
    cfg["source"]["params"]["iterations"] = 10
    cfg["source"]["params"]["checkpoint_every"] = 10
    cfg["stage_params"]["ft_fixed_sigma"] = {"iterations": 4, "checkpoint_every": 4, "batch_size": 4, "sample_steps": 3}
    cfg["evaluation"].update(n_samples=16, metrics=["oracle", "speed"], nfe_sweep=[1])
    cfg["tracking"] = {"kind": "none"}
    (dst / "config" / "ext.yaml").write_text(yaml.safe_dump(cfg))
    return dst, smk_before


def _snakemake(cwd, *args):
    return snakemake(cwd, "config/ext.yaml", *args)


def test_the_stage_exists_only_through_the_plugins_key(workflow_copy):
    dst, _ = workflow_copy
    cfg = yaml.safe_load((dst / "config" / "ext.yaml").read_text())
    assert cfg["plugins"] == ["ft_fixed_sigma"]
    cfg["plugins"] = []
    (dst / "config" / "no_plugin.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--configfile", "config/no_plugin.yaml", "-n"],
                          cwd=dst, capture_output=True, text=True, timeout=900)
    assert proc.returncode != 0 and "unknown stage 'ft_fixed_sigma'" in proc.stdout + proc.stderr


def test_dry_run_lists_the_new_method_under_the_generic_rule(workflow_copy):
    dst, _ = workflow_copy
    proc = _snakemake(dst, "-n")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"near-k10__ft_fixed_sigma-[0-9a-f]{8}__seed0", proc.stdout)
    rules = set(re.findall(r"^rule (\w+):", proc.stdout, flags=re.M))
    assert "train_stage" in rules and not any("fixed" in r for r in rules)


@pytest.mark.slow
def test_tiny_real_run_of_the_new_method(workflow_copy):
    dst, smk_before = workflow_copy
    proc = _snakemake(dst, "results/ext/tables/results_tidy.csv")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summaries = list((dst / "results" / "ext" / "runs").glob("near-k10__ft_fixed_sigma-*__seed0/summary.json"))
    assert len(summaries) == 1
    tidy = (dst / "results" / "ext" / "tables" / "results_tidy.csv").read_text()
    assert "ft_fixed_sigma" in tidy and "oracle_in_domain" in tidy
    assert {p: p.read_bytes() for p in (dst / "workflow").rglob("*.smk")} == smk_before
