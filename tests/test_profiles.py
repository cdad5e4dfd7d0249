"""The Snakemake profiles parse the way Snakemake parses them and set the keys the
workflow, the Makefile and the CI SLURM check rely on."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.profiles import ProfileConfigFileParser

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "profiles"
PROFILE_NAMES = ["local", "slurm", "slurm-ci"]


def parse_profile(name):
    """The profile as Snakemake turns it into command-line defaults (YTE rendered)."""
    path = PROFILES / name / "config.yaml"
    with open(path) as stream:
        return ProfileConfigFileParser().parse(stream)


def render_profile(name):
    """The profile as a nested mapping after YTE templating."""
    import yte

    with open(PROFILES / name / "config.yaml") as stream:
        return yte.process_yaml(stream, require_use_yte=True)


@pytest.fixture(scope="module")
def snakemake_options():
    """Every long option the installed Snakemake and its SLURM plugin accept."""
    help_text = subprocess.run(
        [sys.executable, "-m", "snakemake", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    ).stdout
    return {word.rstrip(",") for word in help_text.split() if word.startswith("--")}


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_profile_is_plain_yaml_mapping(name):
    loaded = yaml.safe_load((PROFILES / name / "config.yaml").read_text())
    assert isinstance(loaded, dict) and loaded


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_every_profile_key_is_a_snakemake_option(name, snakemake_options):
    unknown = [key for key in parse_profile(name) if f"--{key}" not in snakemake_options]
    assert not unknown, f"profiles/{name}: not Snakemake options: {unknown}"


def test_local_profile():
    profile = render_profile("local")
    assert profile["cores"] in ("all", 2)
    assert profile["rerun-incomplete"] is True
    assert profile["printshellcmds"] is True
    assert profile["keep-going"] is False
    assert "executor" not in profile


def test_slurm_profile_keys():
    profile = render_profile("slurm")
    assert profile["executor"] == "slurm"
    assert profile["jobs"] == 100
    assert profile["retries"] == 2
    assert profile["rerun-incomplete"] is True
    assert profile["latency-wait"] > 0
    assert profile["printshellcmds"] is True
    assert profile["slurm-logdir"] == "logs/slurm"
    assert profile["slurm-status-command"] == "squeue"
    resources = profile["default-resources"]
    for key in ("slurm_partition", "slurm_account", "qos", "runtime", "mem_mb"):
        assert key in resources, key
    assert profile["group-components"] == {"sample": 4, "metrics": 8}


def test_slurm_group_members_are_counted_one_after_another():
    """The plugin runs a group's members one after another; every rule asks for `step_slot: 1` from a
    pool of 1 per job, so Snakemake sums their runtimes and takes the largest member's memory, CPUs and
    GPU (also where GPUs are asked for as gres, which no pool counts)."""
    profile = render_profile("slurm")
    assert profile["set-resource-scopes"] == {"gpu": "local", "step_slot": "local"}
    assert profile["resources"] == {"gpu": 1, "step_slot": 1}
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert '"step_slot": 1' in common


def test_slurm_signal_lead_is_the_one_requests_leave():
    """Training jobs ask for the lead before SLURM's USR1 on top of their work (unidad.job_requests)."""
    from unidad.job_requests import SIGNAL_LEAD_SECONDS

    extra = render_profile("slurm")["default-resources"]["slurm_extra"]
    assert f"--signal=USR1@{SIGNAL_LEAD_SECONDS}" in extra


def test_slurm_profile_documents_the_gres_option():
    text = (PROFILES / "slurm" / "config.yaml").read_text()
    assert "gpu_request: gres" in text and "--gres=gpu:N" in text


def test_small_jobs_are_local_rules():
    """Tables, figures and the tidy table run where snakemake runs, not through the queue; none of them
    is in a group (a group with a local rule would run locally as a whole)."""
    snakefile = (REPO / "Snakefile").read_text()
    local = snakefile.split("localrules:")[1].split("\n\n")[0].replace(",", " ").split()
    assert set(local) == {"all", "demo_split", "domain_grids", "tidy_results", "controls", "tables", "figures",
                          "qualitative_grid"}
    report = (REPO / "workflow" / "rules" / "report.smk").read_text()
    assert "group:" not in report


def test_slurm_plugin_is_pinned_to_a_tested_range():
    """pyproject.toml pins the SLURM executor plugin to a range that holds the installed (tested) one."""
    from importlib.metadata import version

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    from packaging.requirements import Requirement

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    plugin = next(Requirement(d) for d in deps if d.startswith("snakemake-executor-plugin-slurm"))
    assert plugin.specifier.contains(version("snakemake-executor-plugin-slurm"))
    assert any(spec.operator == "<" for spec in plugin.specifier), "no upper bound"


def test_slurm_profile_reads_partition_account_qos_from_environment(monkeypatch):
    monkeypatch.delenv("UNIDAD_SLURM_PARTITION", raising=False)
    monkeypatch.delenv("UNIDAD_SLURM_ACCOUNT", raising=False)
    monkeypatch.delenv("UNIDAD_SLURM_QOS", raising=False)
    fallback = render_profile("slurm")["default-resources"]
    assert fallback["slurm_partition"] == "gpu"
    # None keeps the flag out of the sbatch call.
    assert fallback["slurm_account"] is None and fallback["qos"] is None

    monkeypatch.setenv("UNIDAD_SLURM_PARTITION", "a100")
    monkeypatch.setenv("UNIDAD_SLURM_ACCOUNT", "proj42")
    monkeypatch.setenv("UNIDAD_SLURM_QOS", "short")
    from_env = render_profile("slurm")["default-resources"]
    assert (from_env["slurm_partition"], from_env["slurm_account"], from_env["qos"]) == (
        "a100",
        "proj42",
        "short",
    )
    # What Snakemake hands to --default-resources.
    assert "slurm_partition=a100" in parse_profile("slurm")["default-resources"]


def test_slurm_ci_profile_fits_the_ci_node():
    profile = render_profile("slurm-ci")
    assert profile["executor"] == "slurm"
    assert profile["jobs"] == 2
    assert profile["group-components"] == {"sample": 4, "metrics": 16}
    assert profile["slurm-status-command"] == "squeue"
    # check_jobs_went_through_slurm.py counts one kept log per SLURM job.
    assert profile["slurm-keep-successful-logs"] is True
    resources = profile["default-resources"]
    assert resources["slurm_partition"] == "debug"
    assert resources["gpu"] == 0
    # An account would make the plugin validate it with sacctmgr/sshare, which
    # fail without an accounting database.
    assert "slurm_account" not in resources
    # The workflow's schema rejects unknown top-level config keys.
    assert "config" not in profile


def test_pytest_skips_are_written_for_make_test(tmp_path):
    """`make test-unit` sets UNIDAD_SKIPS_FILE; tests/conftest.py writes one line per skip reason there,
    which `make test` prints at its end."""
    (tmp_path / "test_some.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.skipif(True, reason='no pdflatex here')\ndef test_latex():\n    pass\n\n"
        "@pytest.mark.parametrize('i', [1, 2])\ndef test_weights(i):\n    pytest.skip('weights\\nnot staged')\n\n"
        "def test_runs():\n    pass\n"
    )
    skips = tmp_path / "skips"
    env = {**os.environ, "UNIDAD_SKIPS_FILE": str(skips),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_some.py")],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert skips.read_text().splitlines() == [
        "pytest test_some.py::test_latex: no pdflatex here",
        "pytest test_some.py::test_weights[1] and 1 more: weights not staged",
    ]
