"""Exact resume after kill -9, checkpoint-and-exit on SIGTERM/SIGUSR1, segmented == unsegmented."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from unidad.checkpoint import list_checkpoints, read_weights
from unidad.train.loop import PREEMPTED_EXIT_CODE

CHILD = r"""
import sys, torch
sys.path.insert(0, {root!r})
from pathlib import Path
import baselines
from unidad.backbones.tiny import TinyUNet
from unidad.checkpoint import export_weights
from unidad.stages import STAGES, StageContext
from unidad.train.loop import train
torch.set_num_threads(1)
def factory():
    torch.manual_seed(1234)
    return TinyUNet(image_size=8, channels=(8, 16), emb_dim=16)
run_dir, iterations, stop_at = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) or None
src = run_dir.parent / "source.safetensors"
if not src.exists():
    export_weights(src, {{"model": factory()}})
cls = STAGES.get("unidad")
cfg = cls.config_cls.from_dict(dict(iterations=iterations, batch_size=2, lr=1e-3, warmup_iters=1, ratio=2, gen_steps=2,
                                    precision="fp32", checkpoint_every=5, log_every=1, target_teacher="online"))
torch.manual_seed(0)
real = torch.rand(5, 3, 8, 8) * 2 - 1
ctx = StageContext(backbone_factory=factory, weights={{r: (src, "model") for r in cls.roles}}, real_images=real,
                   device=torch.device("cpu"), seed=3)
train(cls(cfg, ctx), run_dir, stop_at=stop_at, log=lambda m: print(m, flush=True))
"""


def _script(tmp_path):
    path = tmp_path / "child.py"
    path.write_text(CHILD.format(root=str(Path(__file__).resolve().parent.parent)))
    return path


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
    script = _script(base)
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
