"""Checkpoint retention: full resume state for the newest N checkpoints, a product snapshot at every
checkpoint step (fp32 or bf16) that sampling loads by key prefix, and the pruning of evaluated
snapshots that no selection chose."""
import pandas as pd
import pytest
import torch

from unidad.checkpoint import SNAPSHOTS_DIR, checkpoint_weights_file, list_checkpoints, save_snapshot
from unidad.snapshots import prune_snapshots, snapshots_to_keep
from unidad.train.loop import train
from unidad.weights_file import read_weights
from test_stages import make_stage, source_file  # noqa: F401  (fixture)


@pytest.mark.parametrize("keep_full", [1, 2])
def test_full_state_for_the_newest_n_and_a_snapshot_per_checkpoint(tiny_factory, source_file, tmp_path,  # noqa: F811
                                                                  keep_full):
    stage = make_stage("unidad", tiny_factory, source_file, target_teacher="online", iterations=6)
    run_dir = tmp_path / "run"
    train(stage, run_dir, log=lambda *_: None, keep_full=keep_full)
    assert [s for s, _ in list_checkpoints(run_dir)] == [2, 4, 6][-keep_full:]
    assert sorted(p.name for p in (run_dir / SNAPSHOTS_DIR).iterdir()) == [
        f"step{s:08d}.safetensors" for s in (2, 4, 6)]
    snap = read_weights(checkpoint_weights_file(run_dir, 6))
    assert list(snap) == ["generator"]  # the product only: no fake score, heads, teachers, optimiser
    full = read_weights(list_checkpoints(run_dir)[-1][1])
    assert all(torch.equal(snap["generator"][k], full["generator"][k]) for k in snap["generator"])


def test_resume_after_pruning_equals_a_straight_run(tiny_factory, source_file, tmp_path):  # noqa: F811
    straight = make_stage("unidad", tiny_factory, source_file, target_teacher="online", iterations=6)
    train(straight, tmp_path / "straight", log=lambda *_: None)
    first = make_stage("unidad", tiny_factory, source_file, target_teacher="online", iterations=6)
    train(first, tmp_path / "resumed", stop_at=4, log=lambda *_: None)
    assert [s for s, _ in list_checkpoints(tmp_path / "resumed")] == [4]
    second = make_stage("unidad", tiny_factory, source_file, target_teacher="online", iterations=6)
    train(second, tmp_path / "resumed", log=lambda *_: None)
    for step in (2, 4, 6):
        a = read_weights(checkpoint_weights_file(tmp_path / "straight", step))["generator"]
        b = read_weights(checkpoint_weights_file(tmp_path / "resumed", step))["generator"]
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_bf16_snapshot_loads_into_the_fp32_backbone(tiny_factory, tmp_path):
    model = tiny_factory()
    path = save_snapshot(tmp_path, 10, {"generator": model}, dtype="bf16")
    stored = read_weights(path)["generator"]
    assert all(t.dtype == torch.bfloat16 for t in stored.values() if t.is_floating_point())
    fp32 = save_snapshot(tmp_path / "b", 10, {"generator": model}, dtype="fp32")
    assert path.stat().st_size < 0.6 * fp32.stat().st_size
    loaded = tiny_factory()  # as sampling loads a product: the module's keys, into an fp32 backbone
    loaded.load_state_dict(read_weights(path)["generator"], strict=True)
    for k, v in loaded.state_dict().items():
        assert v.dtype == model.state_dict()[k].dtype
        assert torch.allclose(v, model.state_dict()[k], rtol=1e-2, atol=1e-2)
    with pytest.raises(ValueError, match="snapshot dtype"):
        save_snapshot(tmp_path, 10, {"generator": model}, dtype="fp16")


def _tidy():
    rows = []
    for step in (2, 4, 6):
        for sel in ("all",) + (("final",) if step == 6 else ()) + (("best_test",) if step == 2 else ()):
            rows.append({"slug": "a", "step": step, "selection": sel})
    rows.append({"slug": "b", "step": 6, "selection": "all"})  # no selection row: b keeps its final only
    return pd.DataFrame(rows)


def test_pruning_keeps_final_and_selected_snapshots(tmp_path):
    run_dirs = {"a": tmp_path / "a", "b": tmp_path / "b"}
    for slug, steps in (("a", (2, 4, 6)), ("b", (3, 6))):
        for step in steps:
            save_snapshot(run_dirs[slug], step, {"generator": torch.nn.Linear(2, 2)})
    keep = snapshots_to_keep(_tidy(), final_steps={"a": 6, "b": 6})
    assert keep == {"a": [2, 6], "b": [6]}
    report = prune_snapshots({s: str(d) for s, d in run_dirs.items()}, {"a": [2, 4, 6], "b": [3, 6]}, keep)
    assert sorted(p.name for p in (run_dirs["a"] / SNAPSHOTS_DIR).iterdir()) == [
        "step00000002.safetensors", "step00000006.safetensors"]
    assert [p.name for p in (run_dirs["b"] / SNAPSHOTS_DIR).iterdir()] == ["step00000006.safetensors"]
    assert report["removed"] == 2 and report["bytes_removed"] > 0
    again = prune_snapshots({s: str(d) for s, d in run_dirs.items()}, {"a": [2, 4, 6], "b": [3, 6]}, keep)
    assert again["removed"] == 0  # idempotent
