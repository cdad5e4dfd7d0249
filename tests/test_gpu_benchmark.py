"""The GPU benchmark (benchmarks/gpu_check.sh and the two scripts it runs) at test size on the CPU: the
figures it prints are there and well-formed, and its FLOP count is exact on known layers."""
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_side_by_side import flop_counter  # noqa: E402


def test_flop_counter_counts_matmul_and_conv_forward_and_backward():
    lin = torch.nn.Linear(8, 4, bias=False)
    conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=False)
    x = torch.randn(5, 8, requires_grad=True)
    img = torch.randn(1, 2, 6, 6)
    with flop_counter() as fc:
        lin(x)
    assert fc.total == 2 * 5 * 8 * 4
    with flop_counter() as fc:
        conv(img)
    assert fc.total == 2 * 36 * 3 * 2 * 9
    with flop_counter() as fc:
        lin(x).sum().backward()  # forward, then the input and weight gradients: 3x the forward
    assert fc.total == 3 * 2 * 5 * 8 * 4


def _run(cmd, env=None):
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env=os.environ | {"HF_HUB_OFFLINE": "1"} | (env or {}))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_side_by_side_project_alone_prints_passes_times_and_work():
    out = _run([sys.executable, "benchmarks/bench_side_by_side.py", "--scale", "tiny", "--batch", "1",
                "--rounds", "1", "--iters", "5"])
    assert re.search(r"generator iteration generator\s+3 / 0", out)
    m = re.search(r"project\s+per iteration ([\d.]+)\s+generator iterations ([\d.]+)\s+other ([\d.]+)\s+peak ([\d.]+) GB", out)
    assert m and all(float(g) > 0 for g in m.groups()), out
    assert re.search(r"per update: generator [\d.]+, target_teacher [\d.]+, critic [\d.]+", out)
    work = re.search(r"work per iteration ([\d.]+) TFLOP \(generator iterations ([\d.]+), other ([\d.]+)\); "
                     r"achieved ([\d.e+-]+) TFLOP/s", out)
    assert work and float(work.group(2)) > float(work.group(3)) > 0, out


def test_gpu_check_script_runs_its_sampling_step_at_test_size(tmp_path):
    log = tmp_path / "gpu_check.log"
    _run(["bash", "benchmarks/gpu_check.sh"], env={"SCALE": "tiny", "DEVICE": "cpu", "PRECISION": "fp32",
                                                   "STEPS": "2", "LOG": str(log), "PY": sys.executable})
    text = log.read_text()
    assert "-- sampling, fp32: exit 0" in text, text
    rates = re.findall(r"fp32\s+(student, 3 NFE|FT, Euler 25 NFE)\s+([\d.]+) img/s\s+5000 images in\s+([\d.]+) s "
                       r"\(projected\)", text)
    assert [r[0] for r in rates] == ["student, 3 NFE", "FT, Euler 25 NFE"], text
    assert all(float(r[1]) > 0 and float(r[2]) > 0 for r in rates)
    assert "side by side" not in text  # STEPS picks the steps


def test_sampling_benchmark_refuses_an_unknown_scale():
    out = subprocess.run([sys.executable, "benchmarks/bench_sampling.py", "--scale", "adm512"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode != 0 and "--scale adm512 is not one of adm256, reduced, tiny" in out.stderr
