"""Exact resume after kill -9, checkpoint-and-exit on SIGTERM/SIGUSR1 and before the SLURM job's end time,
segmented == unsegmented."""
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from unidad.checkpoint import SNAPSHOTS_DIR, list_checkpoints
from unidad.train.deadline import DEFAULT_MARGIN_S, Deadline, job_deadline, slurm_job_end_time, stop_margin
from unidad.train.loop import PREEMPTED_EXIT_CODE, PREEMPTED_MARKER
from unidad.weights_file import read_weights

CHILD = Path(__file__).resolve().parent / "train_child.py"


def _run(script, run_dir, iterations, stop_at=0, **kw):
    if "env" not in kw:  # no deadline from a SLURM job the tests might run in
        kw["env"] = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return subprocess.Popen([sys.executable, str(script), str(run_dir), str(iterations), str(stop_at)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _final(run_dir, step):
    return read_weights(Path(run_dir) / "checkpoints" / f"step{step:08d}")


def _assert_equal(a, b):
    for module in a:
        for key in a[module]:
            assert torch.equal(a[module][key], b[module][key]), f"{module}.{key} differs"


def _wait_for_checkpoint(run_dir, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if list_checkpoints(run_dir):
            return
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.stdout.read()}")
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    base = tmp_path_factory.mktemp("straight")
    script = CHILD
    proc = _run(script, base / "run", 30)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    return base, script, _final(base / "run", 30)


def test_kill_9_then_resume_equals_a_straight_run(straight):
    base, script, expected = straight
    run_dir = base / "killed"
    proc = _run(script, run_dir, 30)
    _wait_for_checkpoint(run_dir, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    steps = [s for s, _ in list_checkpoints(run_dir)]
    assert steps and steps[-1] < 30, f"the kill came too late to test anything (checkpoints {steps})"
    proc = _run(script, run_dir, 30)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "resumed" in out, out
    _assert_equal(expected, _final(run_dir, 30))


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM])
def test_signal_checkpoints_exits_for_requeue_and_resumes(straight, sig):
    base, script, expected = straight
    run_dir = base / f"signalled_{sig.name}"
    proc = _run(script, run_dir, 30)
    _wait_for_checkpoint(run_dir, proc)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT_CODE, out
    assert f"{sig.name} received" in out
    steps = [s for s, _ in list_checkpoints(run_dir)]
    assert steps[-1] < 30 and not (run_dir / "summary.json").exists()
    proc = _run(script, run_dir, 30)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    _assert_equal(expected, _final(run_dir, 30))


def test_segmented_run_equals_unsegmented(straight):
    base, script, expected = straight
    run_dir = base / "segmented"
    for end in (10, 20, 30):
        proc = _run(script, run_dir, 30, stop_at=end)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        assert (run_dir / "summary.json").exists() == (end == 30)
    _assert_equal(expected, _final(run_dir, 30))


# ---------------------------------------------------------------------------------- the job's end time
def _slurm_clock(t):
    """A time as squeue and scontrol print it (local time, whole seconds)."""
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S")


def _runner(answers):
    """A fake command runner: the program's answer (str), or an exception to raise."""
    calls = []

    def run(cmd):
        calls.append(cmd[0])
        answer = answers[cmd[0]]
        if isinstance(answer, Exception):
            raise answer
        return answer

    run.calls = calls
    return run


def test_end_time_from_the_environment_then_squeue_then_scontrol():
    end = int(time.time()) + 3600
    never = _runner({})  # SLURM_JOB_END_TIME wins: no command runs
    assert slurm_job_end_time({"SLURM_JOB_END_TIME": str(end), "SLURM_JOB_ID": "7"}, never) == (end, "SLURM_JOB_END_TIME")
    assert never.calls == []

    run = _runner({"squeue": _slurm_clock(end) + "\n"})
    assert slurm_job_end_time({"SLURM_JOB_ID": "7"}, run) == (end, "squeue")

    run = _runner({"squeue": subprocess.CalledProcessError(1, "squeue"),
                   "scontrol": f"JobId=7 JobName=x\n   StartTime=2026-01-01T00:00:00 EndTime={_slurm_clock(end)} Deadline=N/A\n"})
    assert slurm_job_end_time({"SLURM_JOB_ID": "7"}, run) == (end, "scontrol")
    assert run.calls == ["squeue", "scontrol"]


def test_no_end_time_outside_slurm_or_without_a_time_limit():
    assert slurm_job_end_time({}, _runner({})) == (None, "not in a SLURM job")
    run = _runner({"squeue": "NONE\n", "scontrol": FileNotFoundError("scontrol")})
    end, why = slurm_job_end_time({"SLURM_JOB_ID": "7"}, run)
    assert end is None and "SLURM job 7 has no end time" in why and "NONE" in why


def test_stop_margin_from_the_environment():
    assert stop_margin({}) == DEFAULT_MARGIN_S
    assert stop_margin({"UNIDAD_STOP_MARGIN": "90"}) == 90
    for bad in ("-1", "ten", "nan"):
        with pytest.raises(ValueError, match="UNIDAD_STOP_MARGIN"):
            stop_margin({"UNIDAD_STOP_MARGIN": bad})


def test_deadline_is_the_end_time_less_the_margin():
    logged = []
    env = {"SLURM_JOB_END_TIME": "10000", "UNIDAD_STOP_MARGIN": "600"}
    deadline = job_deadline(log=logged.append, env=env, run=_runner({}), now=5000)
    assert deadline == Deadline(end=10000, margin=600) and deadline.stop_at == 9400
    assert not deadline.reached(now=9399.9) and deadline.reached(now=9400)
    assert "UNIDAD_STOP_MARGIN=600 s" in logged[0]
    # a job that ends within the margin already gets no deadline (it would never get anywhere), a warning
    assert job_deadline(log=logged.append, env=env, run=_runner({}), now=9500) is None
    assert "WARNING" in logged[-1]
    # outside SLURM: nothing to log
    assert job_deadline(log=logged.append, env={}, run=_runner({})) is None and len(logged) == 2


def test_job_end_time_checkpoints_exits_for_requeue_and_resumes(straight, tmp_path):
    """The deadline from a (fake) squeue in a (fake) SLURM job stops training exactly as a signal does."""
    base, script, expected = straight
    run_dir = base / "deadline"
    start, margin = 1_000_000_000, 600  # the fake clock: read once at start, then once per iteration
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    squeue = fake_bin / "squeue"
    squeue.write_text(f"#!/bin/sh\necho {_slurm_clock(start + margin + 12)}\n")  # deadline reached at step 11
    squeue.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(SLURM_JOB_ID="4242", UNIDAD_STOP_MARGIN=str(margin), TRAIN_CHILD_FAKE_CLOCK=f"{start},1",
               PATH=f"{fake_bin}{os.pathsep}{env.get('PATH', '')}")
    proc = _run(script, run_dir, 30, env=env)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == PREEMPTED_EXIT_CODE, out
    assert "end time from squeue" in out and "job end time near" in out, out
    # the full resume state of the newest checkpoint only; the evaluated steps keep their snapshots
    assert [s for s, _ in list_checkpoints(run_dir)] == [11]
    assert sorted(p.name for p in (run_dir / SNAPSHOTS_DIR).iterdir()) == [
        f"step{s:08d}.safetensors" for s in (5, 10)]
    marker = json.loads((run_dir / PREEMPTED_MARKER).read_text())
    assert marker["step"] == 11 and marker["signal"] is None and "job end time near" in marker["reason"]
    assert not (run_dir / "summary.json").exists()
    proc = _run(script, run_dir, 30)  # the retry, in a job that ends later
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "resumed" in out and "at step 11" in out, out
    assert not (run_dir / PREEMPTED_MARKER).exists()
    _assert_equal(expected, _final(run_dir, 30))
