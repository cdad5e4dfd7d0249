"""Exact resume after kill -9, checkpoint-and-exit on SIGTERM/SIGUSR1, segmented == unsegmented."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from unidad.checkpoint import list_checkpoints
from unidad.train.loop import PREEMPTED_EXIT_CODE
from unidad.weights_file import read_weights

CHILD = Path(__file__).resolve().parent / "train_child.py"


def _run(script, run_dir, iterations, stop_at=0, **kw):
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
