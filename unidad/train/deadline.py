"""When the SLURM job a training run is in ends, so that the loop stops for requeue before it.

The loop saves and exits 75 on SIGUSR1/SIGTERM, but a signal has to get through the plugin's
sbatch -> snakemake -> srun -> snakemake -> script chain first (README, "Preemption and resume"). The
end time needs nothing from that chain: the loop checks it between iterations and stops `margin`
seconds before it (env UNIDAD_STOP_MARGIN, seconds, default 300), exactly as on a signal.

Where the end time comes from, first that answers: SLURM_JOB_END_TIME (Unix seconds; newer SLURM
sets it in the batch environment), `squeue -h -j $SLURM_JOB_ID -o %e`, `scontrol show job`. Outside
a SLURM job, or for a job without a time limit, there is no end time and no deadline.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

MARGIN_ENV = "UNIDAD_STOP_MARGIN"
DEFAULT_MARGIN_S = 300.0  # enough to finish an iteration and write a checkpoint of a large model
_QUERY_TIMEOUT_S = 30

Runner = Callable[[list[str]], str]  # runs a command, returns its stdout; raises on failure


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=_QUERY_TIMEOUT_S).stdout


def parse_slurm_time(text: str) -> float | None:
    """A SLURM timestamp (`2026-11-26T14:24:41`, the controller's local time, as squeue and scontrol
    print it) as Unix seconds; None for what is not a time (N/A, NONE, Unknown, empty)."""
    try:
        return _dt.datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M:%S").timestamp()
    except ValueError:
        return None


def slurm_job_end_time(env: Mapping[str, str] | None = None, run: Runner = _run) -> tuple[float | None, str]:
    """(end time in Unix seconds or None, where it came from or why there is none)."""
    env = os.environ if env is None else env
    raw = env.get("SLURM_JOB_END_TIME", "").strip()
    if raw:
        try:
            return float(raw), "SLURM_JOB_END_TIME"
        except ValueError:
            pass  # not a number: ask the controller instead
    job_id = env.get("SLURM_JOB_ID", "").strip()
    if not job_id:
        return None, "not in a SLURM job"
    errors = []
    for cmd, parse in (
        (["squeue", "-h", "-j", job_id, "-o", "%e"], parse_slurm_time),
        (["scontrol", "show", "job", job_id], _end_time_in_scontrol),
    ):
        try:
            out = run(cmd)
        except (OSError, subprocess.SubprocessError) as err:
            errors.append(f"{cmd[0]}: {err}")
            continue
        end = parse(out)
        if end is not None:
            return end, cmd[0]
        errors.append(f"{cmd[0]}: no end time in {out.strip()[:80]!r}")
    return None, f"SLURM job {job_id} has no end time ({'; '.join(errors)})"


def _end_time_in_scontrol(text: str) -> float | None:
    m = re.search(r"\bEndTime=(\S+)", text)
    return parse_slurm_time(m.group(1)) if m else None


def stop_margin(env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    raw = env.get(MARGIN_ENV, "").strip()
    if not raw:
        return DEFAULT_MARGIN_S
    try:
        margin = float(raw)
    except ValueError:
        margin = -1.0
    if not margin >= 0:  # also rejects nan
        raise ValueError(f"{MARGIN_ENV}={raw!r}: must be a number of seconds >= 0")
    return margin


@dataclass(frozen=True)
class Deadline:
    """Stop training at `stop_at` (Unix seconds): `margin` before the job's `end`."""

    end: float
    margin: float

    @property
    def stop_at(self) -> float:
        return self.end - self.margin

    def reached(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.stop_at

    def describe(self) -> str:
        return (f"job ends at {_clock(self.end)}, stopping for requeue from {_clock(self.stop_at)} "
                f"({MARGIN_ENV}={self.margin:g} s)")


def _clock(t: float) -> str:
    return _dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def job_deadline(log=print, env: Mapping[str, str] | None = None, run: Runner = _run,
                 now: float | None = None) -> Deadline | None:
    """The deadline of the SLURM job this process runs in, or None (logged) when there is none.

    A job that ends within the margin already (a runtime shorter than the margin) gets no deadline
    and a warning: stopping at once would requeue it forever without progress; the signal from
    SLURM (`--signal`) or its end still stops it."""
    margin = stop_margin(env)
    end, source = slurm_job_end_time(env, run)
    if end is None:
        if source != "not in a SLURM job":
            log(f"[train] no deadline: {source}")
        return None
    deadline = Deadline(end=end, margin=margin)
    now = time.time() if now is None else now
    if deadline.reached(now):
        log(f"[train] WARNING: the job ends in {end - now:.0f} s, within {MARGIN_ENV}={margin:g} s; not "
            f"stopping early (ask for a longer runtime or a smaller margin)")
        return None
    log(f"[train] {deadline.describe()} (end time from {source})")
    return deadline
