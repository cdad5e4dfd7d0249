"""The process a job runs in: its log, its threads, its device, the code version and software
environment it ran with."""
from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import os
import platform
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import torch


def log(msg: str) -> None:
    print(msg, flush=True)


def resolve_device(want: str = "auto") -> torch.device:
    """The config's `device` (auto | cpu | cuda[:N]) as a torch device."""
    if want == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config key device is 'cuda' but no CUDA device is visible; use device: auto or cpu")
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(want)


def set_threads(threads: int | None) -> None:
    n = threads or int(os.environ.get("SLURM_CPUS_PER_TASK", "0")) or os.cpu_count() or 1
    torch.set_num_threads(max(1, int(n)))


REPO_ROOT = Path(__file__).resolve().parent.parent

# Distributions whose versions every run and metric record carries: record key -> distribution name.
ENVIRONMENT_PACKAGES = {
    "diffusers": "diffusers",
    "transformers": "transformers",
    "torch_fidelity": "torch-fidelity",
    "lpips": "lpips",
    "open_clip": "open-clip-torch",
    "numpy": "numpy",
    "snakemake": "snakemake",
}
# Untracked paths under these folders (workflow outputs) do not make the checkout dirty.
OUTPUT_FOLDERS = ("results/", "logs/", ".snakemake/")


def _git(*args: str, cwd: str | os.PathLike | None = None) -> str | None:
    """stdout of a git command in the checkout (or `cwd`); None when git or the repository is missing."""
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=cwd or REPO_ROOT)
    except Exception:
        return None
    return out.stdout if out.returncode == 0 else None


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    out = _git("rev-parse", "HEAD", cwd=cwd)
    return (out or "").strip() or "unknown"


def git_dirty(cwd: str | os.PathLike | None = None, ignore_untracked: tuple[str, ...] = OUTPUT_FOLDERS) -> bool | None:
    """Whether the checkout differs from its commit: `git status --porcelain` lists anything but
    untracked paths under the output folders (which .gitignore already hides unless it was changed).
    None when this is not a git checkout (e.g. an installed, non-editable package)."""
    out = _git("status", "--porcelain", "--untracked-files=all", cwd=cwd)
    if out is None:
        return None
    for line in out.splitlines():
        status, path = line[:2], line[3:].strip('"')
        if status == "??" and path.startswith(ignore_untracked):
            continue
        return True
    return False


def _distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _gpu_name(device: Any) -> str:
    """The GPU model of `device` ("cpu" for any non-CUDA device); device None = what the metric code
    picks by itself (the current CUDA device if one is visible)."""
    if device is None:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type != "cuda":
        return "cpu"
    try:
        return torch.cuda.get_device_name(device)
    except Exception as exc:  # a CUDA device named but not usable: say so instead of failing the job
        return f"cuda (name unavailable: {type(exc).__name__})"


@functools.lru_cache(maxsize=None)
def _software_record() -> dict[str, Any]:
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda,
        "cudnn": None if cudnn is None else str(cudnn),
        **{key: _distribution_version(dist) for key, dist in ENVIRONMENT_PACKAGES.items()},
        "platform": platform.platform(),
    }


@functools.lru_cache(maxsize=None)
def _code_record() -> dict[str, Any]:
    return {"git_commit": git_commit(), "git_dirty": git_dirty()}


def environment_record(device: Any = None) -> dict[str, Any]:
    """What a number was computed with: versions of python, torch (+ the CUDA and cuDNN it was built
    with), diffusers, transformers, torch-fidelity, lpips, open_clip, numpy and snakemake (None when a
    package is not installed), the GPU model of `device` (or "cpu"), the git commit and whether the
    checkout had uncommitted changes (None outside a git checkout). Run records (run.yaml) and metric
    records carry it; it is never part of a cache key. Versions and git state are read once per process."""
    return {**_software_record(), "gpu": _gpu_name(device), **_code_record()}


@contextlib.contextmanager
def job_log(snakemake):
    """Inside a rule script: the config's plugins are loaded (the rule's `params.plugins`); stdout/stderr
    go to the rule's log file; a failure also prints one line naming the rule, the error and the log to
    the terminal. (Each job's time and peak memory are in its Snakemake benchmark file.) A rehearsal
    config's jobs (`params.standins`) may load stand-in weights (unidad.standins); other jobs refuse them."""
    from unidad import standins
    from unidad.plugins import load_plugins

    load_plugins(getattr(snakemake.params, "plugins", None) or [])
    log_file = Path(snakemake.log[0]) if snakemake.log else None
    allow = standins.allowed(bool(getattr(snakemake.params, "standins", False)))
    if log_file is None:
        with allow:
            yield
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh), allow:
        try:
            yield
        except BaseException as exc:
            traceback.print_exc()
            fh.flush()
            sys.__stderr__.write(f"[{snakemake.rule}] failed: {exc} (log: {log_file})\n")
            raise
