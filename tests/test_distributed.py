"""Data-parallel training under torchrun (gloo on the CPU): replicas stay identical, only rank 0
writes, a 2-process run resumes exactly, and a resume with another process count is refused."""
import json
import subprocess
import sys
from pathlib import Path

import torch

from unidad.distributed import torchrun_command
from unidad.weights_file import read_weights

ROOT = Path(__file__).resolve().parent.parent

CHILD = ROOT / "tests" / "train_child.py"


def _torchrun(procs, run_dir, iterations, stop_at=0):
    args = [str(CHILD), str(run_dir), str(iterations), str(stop_at), "4", "2"]
    cmd = torchrun_command(procs, args, module=False) if procs > 1 else [sys.executable, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _weights(run_dir, step):
    return read_weights(Path(run_dir) / "checkpoints" / f"step{step:08d}")


def test_two_processes_train_one_model_and_only_rank0_writes(tmp_path):
    out = _torchrun(2, tmp_path / "ddp", 8)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["images_seen"] == 8 * 2 * 2  # iterations x per-rank batch x ranks
    steps = [json.loads(line)["step"] for line in (tmp_path / "ddp" / "stats.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8]  # one writer: no duplicated lines
    progress = [line for line in out.stdout.splitlines() if line.startswith("[train] step")]
    assert len(progress) == 4
    # the replicas were compared at every checkpoint (a divergence fails the run); the product differs
    # from its start, so the ranks really trained
    start = read_weights(tmp_path / "source.safetensors")["model"]
    final = _weights(tmp_path / "ddp", 8)["generator"]
    assert any(not torch.equal(start[k], final[k]) for k in start)


def test_two_process_run_resumes_exactly(tmp_path):
    straight = _torchrun(2, tmp_path / "straight", 8)
    assert straight.returncode == 0, straight.stderr
    first = _torchrun(2, tmp_path / "resumed", 8, stop_at=4)
    assert first.returncode == 0, first.stderr
    second = _torchrun(2, tmp_path / "resumed", 8)
    assert second.returncode == 0, second.stderr
    assert "resumed" in second.stdout
    a, b = _weights(tmp_path / "straight", 8), _weights(tmp_path / "resumed", 8)
    for module in a:
        for key in a[module]:
            assert torch.equal(a[module][key], b[module][key]), f"{module}.{key} differs after resume"


def test_resume_with_another_process_count_is_refused(tmp_path):
    first = _torchrun(2, tmp_path / "run", 8, stop_at=4)
    assert first.returncode == 0, first.stderr
    single = _torchrun(1, tmp_path / "run", 8)
    assert single.returncode != 0
    assert "written by 2 process(es) but this run has 1" in single.stderr
