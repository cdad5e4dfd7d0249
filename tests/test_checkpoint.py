"""Checkpoints: bitwise round trips, strict loading, atomic writes, pruning, exact RNG resume."""
import hashlib
import json
import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from torch import nn

from unidad.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    list_checkpoints,
    load_state,
    read_meta,
    restore_rng_state,
    save_checkpoint,
    verify_checkpoint,
)
from unidad.weights_file import CheckpointError, export_weights, load_weights, read_weights, sha256_file


class TiedNet(nn.Module):
    """Tied weights (one storage under two keys), a BatchNorm (float and int64 buffers)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 4, bias=False)
        self.norm = nn.BatchNorm1d(4)
        self.head = nn.Linear(4, 4, bias=False)
        self.head.weight = self.embed.weight


def make_modules(seed: int) -> dict[str, nn.Module]:
    torch.manual_seed(seed)
    generator = nn.Sequential(nn.Linear(3, 5), nn.SiLU(), nn.Linear(5, 2))
    critic = TiedNet()
    critic.norm.train()(torch.randn(8, 4))  # non-trivial running stats and num_batches_tracked
    half = nn.Linear(2, 2).to(torch.bfloat16)
    return {"generator": generator, "critic": critic, "head-bf16": half}


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


def test_round_trip_is_bitwise_and_meta_is_complete(tmp_path):
    saved = make_modules(0)
    ckpt = save_checkpoint(tmp_path, 12, saved, {"step": 12}, meta={"stage": "unidad", "extra": [1, 2]})
    assert ckpt == tmp_path / "checkpoints" / "step00000012"
    assert sorted(p.name for p in ckpt.iterdir()) == ["meta.json", "state.pt", "weights.safetensors"]

    fresh = make_modules(1)
    assert not torch.equal(fresh["generator"][0].weight, saved["generator"][0].weight)
    report = load_weights(ckpt, fresh)
    assert report.clean
    for name in saved:
        assert_same_state(saved[name], fresh[name])
    assert fresh["critic"].head.weight is fresh["critic"].embed.weight  # tying survives the load

    meta = read_meta(ckpt)
    assert meta["step"] == 12 and meta["stage"] == "unidad" and meta["extra"] == [1, 2]
    assert meta["modules"] == ["generator", "critic", "head-bf16"]
    weights_bytes = (ckpt / "weights.safetensors").read_bytes()
    assert meta["weights_sha256"] == hashlib.sha256(weights_bytes).hexdigest()
    assert sha256_file(ckpt / "weights.safetensors", chunk_bytes=7) == meta["weights_sha256"]
    verify_checkpoint(ckpt)

    by_module = read_weights(ckpt / "weights.safetensors")
    assert set(by_module) == {"generator", "critic", "head-bf16"}
    assert set(by_module["critic"]) == set(saved["critic"].state_dict())
    assert by_module["critic"]["norm.num_batches_tracked"].dtype == torch.int64
    assert by_module["head-bf16"]["weight"].dtype == torch.bfloat16


def test_strict_loading_names_the_problem(tmp_path):
    save_checkpoint(tmp_path, 1, {"generator": nn.Linear(3, 2)}, {})
    ckpt = latest_checkpoint(tmp_path)

    with pytest.raises(CheckpointError, match=r"modules not in the file: critic \(file has: generator\)"):
        load_weights(ckpt, {"generator": nn.Linear(3, 2), "critic": nn.Linear(3, 2)})
    with pytest.raises(CheckpointError, match=r"'generator' has extra keys bias"):
        load_weights(ckpt, {"generator": nn.Linear(3, 2, bias=False)})
    with pytest.raises(CheckpointError, match=r"'generator' lacks keys 1\.bias, 1\.weight"):
        load_weights(ckpt, {"generator": nn.Sequential(nn.Identity(), nn.Linear(3, 2))})

    target = nn.Linear(3, 2, bias=False)
    report = load_weights(ckpt, {"generator": target, "critic": nn.Linear(1, 1)}, strict=False)
    assert report.absent_modules == ["critic"]
    assert report.unexpected_keys == {"generator": ["bias"]}
    assert torch.equal(target.weight, read_weights(ckpt)["generator"]["weight"])

    with pytest.raises(CheckpointError, match="does not fit the stored weights"):
        load_weights(ckpt, {"generator": nn.Linear(4, 2)}, strict=False)
    with pytest.raises(ValueError, match="module name 'gen.a' is not allowed"):
        save_checkpoint(tmp_path, 2, {"gen.a": nn.Linear(1, 1)}, {})
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_weights(tmp_path / "nowhere", {"generator": target})


def test_a_crash_during_the_rename_leaves_no_step_folder(tmp_path, monkeypatch):
    modules = make_modules(0)
    first = save_checkpoint(tmp_path, 1, modules, {"step": 1})

    def crash(*args, **kwargs):
        raise OSError("simulated crash")

    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", crash)
        patched.setattr(os, "rename", crash)
        with pytest.raises(OSError, match="simulated crash"):
            save_checkpoint(tmp_path, 2, modules, {"step": 2})
        # the same step again: the existing checkpoint must survive a failed replacement
        with pytest.raises(OSError, match="simulated crash"):
            save_checkpoint(tmp_path, 1, make_modules(5), {"step": 1})

    root = tmp_path / "checkpoints"
    assert [p.name for p in root.iterdir()] == ["step00000001"]
    assert latest_checkpoint(tmp_path) == first
    verify_checkpoint(first)
    fresh = make_modules(3)
    load_weights(first, fresh)
    assert_same_state(modules["generator"], fresh["generator"])


def test_leftovers_of_a_killed_save_are_ignored_then_cleaned(tmp_path):
    modules = {"generator": nn.Linear(2, 2)}
    save_checkpoint(tmp_path, 4, modules, {})
    root = tmp_path / "checkpoints"
    killed = root / ".tmp-step00000008-x1y2"  # a save killed before its rename
    killed.mkdir()
    (killed / "weights.safetensors").write_bytes(b"partial")
    incomplete = root / "step00000009"  # e.g. a half-copied folder: no meta.json
    incomplete.mkdir()
    (root / "notes.txt").write_text("not a checkpoint")

    assert [step for step, _ in list_checkpoints(tmp_path)] == [4]
    assert latest_checkpoint(tmp_path) == root / "step00000004"

    save_checkpoint(tmp_path, 5, modules, {})
    assert not killed.exists()
    assert latest_checkpoint(tmp_path) == root / "step00000005"
    assert list_checkpoints(tmp_path / "no-such-run") == [] and latest_checkpoint(tmp_path / "no-such-run") is None


def test_keep_last_prunes_oldest_and_same_step_is_replaced(tmp_path):
    modules = {"generator": nn.Linear(2, 2)}
    for step in (10, 20, 30, 40, 100_000_000):
        save_checkpoint(tmp_path, step, modules, {"step": step}, keep_last=2)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [40, 100_000_000]
    assert latest_checkpoint(tmp_path).name == "step100000000"

    with torch.no_grad():
        modules["generator"].weight.fill_(7.0)
    save_checkpoint(tmp_path, 40, modules, {"step": 40, "note": "again"})
    assert read_weights(tmp_path / "checkpoints" / "step00000040")["generator"]["weight"].eq(7.0).all()
    assert load_state(tmp_path / "checkpoints" / "step00000040")["note"] == "again"
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")] == []

    with pytest.raises(ValueError, match="keep_last must be >= 1"):
        save_checkpoint(tmp_path, 50, modules, {}, keep_last=0)
    with pytest.raises(ValueError, match="meta may not set step"):
        save_checkpoint(tmp_path, 50, modules, {}, meta={"step": 3})
    with pytest.raises(TypeError, match="meta must be JSON-serialisable"):
        save_checkpoint(tmp_path, 50, modules, {}, meta={"device": torch.device("cpu")})
    assert [step for step, _ in list_checkpoints(tmp_path)] == [40, 100_000_000]


def _train_steps(model, optimizer, scheduler, n, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(4, 3, generator=gen)
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


def _model_and_optimizer(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 5))
    return model, optimizer, scheduler


def test_resume_of_optimizer_and_scheduler_is_exact(tmp_path):
    model, optimizer, scheduler = _model_and_optimizer(0)
    _train_steps(model, optimizer, scheduler, 3, seed=1)
    state = {"step": 3, "optimizers": [optimizer.state_dict()], "schedulers": [scheduler.state_dict()],
             "rng": capture_rng_state()}
    ckpt = save_checkpoint(tmp_path, 3, {"model": model}, state)

    loaded = torch.load(ckpt / "state.pt", weights_only=True)  # the strict loader, explicitly
    assert loaded["step"] == 3
    resumed, resumed_opt, resumed_sched = _model_and_optimizer(9)
    load_weights(ckpt, {"model": resumed})
    resumed_state = load_state(ckpt)
    resumed_opt.load_state_dict(resumed_state["optimizers"][0])
    resumed_sched.load_state_dict(resumed_state["schedulers"][0])

    _train_steps(model, optimizer, scheduler, 4, seed=2)
    _train_steps(resumed, resumed_opt, resumed_sched, 4, seed=2)
    assert_same_state(model, resumed)
    assert scheduler.get_last_lr() == resumed_sched.get_last_lr()


def test_state_that_weights_only_cannot_load_is_refused_at_save_time(tmp_path):
    modules = {"generator": nn.Linear(2, 2)}
    with pytest.raises(TypeError, match=r"state\['data'\]\['order'\] is a numpy.ndarray"):
        save_checkpoint(tmp_path, 1, modules, {"data": {"order": np.arange(3)}})
    with pytest.raises(TypeError, match=r"numpy.float64"):
        save_checkpoint(tmp_path, 1, modules, {"loss": np.float64(0.5)})
    assert latest_checkpoint(tmp_path) is None
    assert not (tmp_path / "checkpoints").exists()


def _draws():
    return (
        [random.random() for _ in range(3)] + [random.gauss(0, 1)],
        np.random.rand(3).tolist() + [float(np.random.standard_normal())],
        torch.rand(3).tolist() + torch.randn(1).tolist(),
    )


def test_rng_restore_reproduces_the_next_draws(tmp_path):
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    random.gauss(0, 1)  # leave a cached second gaussian in both generators
    np.random.standard_normal()
    modules = {"generator": nn.Linear(2, 2)}
    save_checkpoint(tmp_path, 1, modules, {"rng": capture_rng_state()})
    expected = _draws()

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    assert _draws() != expected
    restore_rng_state(load_state(latest_checkpoint(tmp_path))["rng"])
    assert _draws() == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_rng_restore():
    torch.cuda.manual_seed_all(5)
    state = capture_rng_state()
    assert len(state["torch_cuda"]) == torch.cuda.device_count()
    expected = torch.rand(4, device="cuda").cpu()
    torch.cuda.manual_seed_all(6)
    restore_rng_state(state)
    assert torch.equal(torch.rand(4, device="cuda").cpu(), expected)


def test_export_weights_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "final" / "generator.safetensors"
    original = {"generator": nn.Linear(3, 3)}
    export_weights(target, original, metadata={"method": "unidad"})
    fresh = {"generator": nn.Linear(3, 3)}
    load_weights(target, fresh)
    assert_same_state(original["generator"], fresh["generator"])

    def crash(*args, **kwargs):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        export_weights(target, {"generator": nn.Linear(3, 3)})
    assert [p.name for p in target.parent.iterdir()] == ["generator.safetensors"]
    assert torch.equal(read_weights(target)["generator"]["weight"], original["generator"].weight)


def test_corruption_is_detected(tmp_path):
    ckpt = save_checkpoint(tmp_path, 1, {"generator": nn.Linear(2, 2)}, {})
    data = bytearray((ckpt / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (ckpt / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="is corrupt"):
        verify_checkpoint(ckpt)
    assert json.loads((ckpt / "meta.json").read_text())["step"] == 1
