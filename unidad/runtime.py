"""The process a job runs in: its log, its threads, its device, the code version it ran."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import traceback
from pathlib import Path

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


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent.parent)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


@contextlib.contextmanager
def job_log(snakemake):
    """Inside a rule script: the config's plugins are loaded (the rule's `params.plugins`); stdout/stderr
    go to the rule's log file; a failure also prints one line naming the rule, the error and the log to
    the terminal. (Each job's time and peak memory are in its Snakemake benchmark file.)"""
    from unidad.plugins import load_plugins

    load_plugins(getattr(snakemake.params, "plugins", None) or [])
    log_file = Path(snakemake.log[0]) if snakemake.log else None
    if log_file is None:
        yield
        return
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        try:
            yield
        except BaseException as exc:
            traceback.print_exc()
            fh.flush()
            sys.__stderr__.write(f"[{snakemake.rule}] failed: {exc} (log: {log_file})\n")
            raise
