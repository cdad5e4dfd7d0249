"""The environment record every run (run.yaml) and metric record carries: package versions, the GPU
model, the git commit and whether the checkout was dirty."""
import importlib.metadata
import platform
import subprocess

import pytest
import torch

from unidad import runtime
from unidad.runtime import ENVIRONMENT_PACKAGES, environment_record, git_commit, git_dirty


def test_the_record_names_every_version_the_numbers_depend_on():
    env = environment_record("cpu")
    assert set(env) == {"python", "torch", "cuda", "cudnn", *ENVIRONMENT_PACKAGES, "platform", "gpu",
                        "git_commit", "git_dirty"}
    assert set(ENVIRONMENT_PACKAGES) == {"diffusers", "transformers", "torch_fidelity", "lpips", "open_clip",
                                         "numpy", "snakemake"}
    assert env["python"] == platform.python_version() and env["torch"] == torch.__version__
    assert env["cuda"] == torch.version.cuda
    for key, dist in ENVIRONMENT_PACKAGES.items():
        assert env[key] == importlib.metadata.version(dist), key
    assert env["gpu"] == "cpu"
    assert env["git_commit"] == git_commit() and len(env["git_commit"]) == 40
    assert isinstance(env["git_dirty"], bool)


def test_gpu_is_the_model_of_the_device_used(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert environment_record()["gpu"] == "cpu"  # no device given: what the metric code picks itself
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert environment_record("cuda:0")["gpu"] == "NVIDIA H100 80GB HBM3"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert environment_record()["gpu"] == "NVIDIA H100 80GB HBM3"
    assert environment_record(torch.device("cpu"))["gpu"] == "cpu"


def test_a_package_that_is_not_installed_is_none(monkeypatch):
    monkeypatch.setitem(ENVIRONMENT_PACKAGES, "nothing", "no-such-distribution-unidad")
    runtime._software_record.cache_clear()
    try:
        assert environment_record("cpu")["nothing"] is None
    finally:
        runtime._software_record.cache_clear()


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.fixture
def repo(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    _git(tmp_path, "add", "code.py")
    _git(tmp_path, "commit", "-qm", "first")
    return tmp_path


def test_dirty_flag_ignores_untracked_results_only(repo, tmp_path_factory):
    assert git_dirty(repo) is False
    (repo / "results" / "demo").mkdir(parents=True)
    (repo / "results" / "demo" / "run.yaml").write_text("a: 1\n")
    (repo / "logs").mkdir()
    (repo / "logs" / "job.log").write_text("")
    assert git_dirty(repo) is False  # workflow outputs, even without a .gitignore
    (repo / "new_stage.py").write_text("")
    assert git_dirty(repo) is True  # untracked code runs too
    (repo / "new_stage.py").unlink()
    (repo / "code.py").write_text("x = 2\n")
    assert git_dirty(repo) is True
    _git(repo, "commit", "-qam", "second")
    assert git_dirty(repo) is False
    assert git_commit(repo) != "unknown" and len(git_commit(repo)) == 40
    elsewhere = tmp_path_factory.mktemp("not-a-repo")
    assert git_dirty(elsewhere) is None and git_commit(elsewhere) == "unknown"
