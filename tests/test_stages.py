"""Uni-DAD and baseline stages on a very small backbone: freezing, determinism, exact resume."""
import dataclasses

import pytest
import torch

from unidad.data.stream import TrainingImages
from unidad.stages import StageContext, get_stage
from unidad.train.loop import train
from unidad.weights_file import export_weights, read_weights


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def source_file(tmp_path, tiny_factory):
    path = tmp_path / "source.safetensors"
    export_weights(path, {"model": tiny_factory()})
    return path


def make_stage(stage_id, tiny_factory, source_file, **params):
    cls = get_stage(stage_id)
    base = dict(iterations=4, batch_size=2, lr=1e-3, warmup_iters=1, checkpoint_every=2, log_every=1)
    if stage_id in ("unidad", "dmd2"):
        base.update(ratio=2, gen_steps=2, precision="fp32")
    base.update(params)
    cfg = cls.config_cls.from_dict(base)
    torch.manual_seed(0)
    real = TrainingImages.from_pixels(torch.randint(0, 256, (5, 8, 8, 3), dtype=torch.uint8).numpy())
    weights = {role: (source_file, "model") for role in cls.roles}
    ctx = StageContext(backbone_factory=tiny_factory, weights=weights, real_images=real,
                       device=torch.device("cpu"), seed=3)
    return cls(cfg, ctx)


def test_uni_dad_updates_touch_only_their_modules(tiny_factory, source_file):
    stage = make_stage("unidad", tiny_factory, source_file, target_teacher="online")
    stage.build()
    ups = {u.name: u for u in stage.updates()}
    assert set(ups) == {"generator", "target_teacher", "critic"}
    from unidad.train.loop import build_optimizers, _set_trainable, make_batch

    optims = {o.update.name: o for o in build_optimizers(stage)}
    batch = make_batch(stage, 0, 0)

    def step(name):
        o = optims[name]
        _set_trainable(stage, set(o.update.modules))
        o.optimizer.zero_grad()
        o.update.loss(batch)["loss"].backward()
        o.optimizer.step()
        _set_trainable(stage, set())

    before = {k: _snapshot(m) for k, m in stage.modules.items()}
    step("generator")
    after = {k: _snapshot(m) for k, m in stage.modules.items()}
    assert not _same(before["generator"], after["generator"])
    for name in ("fake", "heads", "teacher", "target_teacher"):
        assert _same(before[name], after[name]), f"{name} changed during a generator step"
    step("critic")
    after2 = {k: _snapshot(m) for k, m in stage.modules.items()}
    assert _same(after["generator"], after2["generator"]), "G changed during a critic step"
    assert not _same(after["fake"], after2["fake"]) and not _same(after["heads"], after2["heads"])
    assert _same(after["teacher"], after2["teacher"])
    step("target_teacher")
    after3 = {k: _snapshot(m) for k, m in stage.modules.items()}
    assert not _same(after2["target_teacher"], after3["target_teacher"])
    assert _same(before["teacher"], after3["teacher"]), "the source teacher must never change"


def test_frozen_target_teacher_never_changes(tiny_factory, source_file, tmp_path):
    stage = make_stage("unidad", tiny_factory, source_file, target_teacher="frozen")
    train(stage, tmp_path / "run", log=lambda *_: None)
    tgt = read_weights(source_file)["model"]
    assert "target_teacher" not in stage.exported_modules()
    assert all(torch.equal(stage.modules["target_teacher"].state_dict()[k], v) for k, v in tgt.items())
    assert all(torch.equal(stage.modules["teacher"].state_dict()[k], v) for k, v in tgt.items())


def test_head_count_follows_the_backbone_taps(tiny_factory, source_file):
    stage = make_stage("unidad", tiny_factory, source_file)
    stage.build()
    assert len(stage.modules["heads"].heads) == len(stage.modules["fake"].feature_taps())
    single = make_stage("dmd2", tiny_factory, source_file)
    single.build()
    assert single.modules["heads"].taps == [single.modules["fake"].bottleneck_tap()]


@pytest.mark.parametrize("stage_id,params", [
    ("unidad", {"target_teacher": "online"}),
    ("unidad", {"target_teacher": "none", "gan_loss": "wgan-gp", "head_type": "patch"}),
    ("unidad", {"target_teacher": "online", "head_reduce": "sum_losses", "gan_loss": "hinge", "r1_gamma": 0.1}),
    ("dmd2", {}),
    ("ft", {}),
    ("student_ft", {}),
    ("pretrain", {"ema_decay": 0.9}),
])
def test_same_seed_gives_bitwise_identical_weights(tiny_factory, source_file, tmp_path, stage_id, params):
    results = []
    for i in range(2):
        stage = make_stage(stage_id, tiny_factory, source_file, **params)
        summary = train(stage, tmp_path / f"run{i}", log=lambda *_: None)
        assert summary["complete"] and summary["images_seen"] == 4 * 2
        results.append(read_weights(tmp_path / f"run{i}" / "checkpoints" / "step00000004"))
    for module in results[0]:
        for key, value in results[0][module].items():
            assert torch.equal(value, results[1][module][key]), f"{module}.{key} differs between identical runs"


def test_resume_equals_straight_run(tiny_factory, source_file, tmp_path):
    straight = make_stage("unidad", tiny_factory, source_file, iterations=6)
    train(straight, tmp_path / "straight", log=lambda *_: None)
    first = make_stage("unidad", tiny_factory, source_file, iterations=6)
    part = train(first, tmp_path / "resumed", stop_at=2, log=lambda *_: None)
    assert not part["complete"] and not (tmp_path / "resumed" / "summary.json").exists()
    second = make_stage("unidad", tiny_factory, source_file, iterations=6)
    train(second, tmp_path / "resumed", log=lambda *_: None)
    a = read_weights(tmp_path / "straight" / "checkpoints" / "step00000006")
    b = read_weights(tmp_path / "resumed" / "checkpoints" / "step00000006")
    for module in a:
        for key in a[module]:
            assert torch.equal(a[module][key], b[module][key]), f"{module}.{key}"


def test_stage_config_rejects_unknown_and_ill_typed_options():
    from unidad.stages.base import StageConfigError

    cls = get_stage("unidad").config_cls
    with pytest.raises(StageConfigError, match="dual_wieght"):
        cls.from_dict({"dual_wieght": 0.3})
    with pytest.raises(StageConfigError, match="'ratio'.*int"):
        cls.from_dict({"ratio": "five"})
    with pytest.raises(ValueError, match="target_teacher"):
        cls.from_dict({"target_teacher": "sometimes"})
    with pytest.raises(ValueError, match="dual_weight"):
        cls.from_dict({"dual_weight": 1.5})


def test_stage_configs_hold_exactly_the_option_groups_their_stage_uses():
    from unidad.stages.base import StageConfigError, TrainConfig
    from unidad.stages.options import (DenoiseOptions, DMDOptions, DreamBoothOptions, FewStepOptions, GANOptions,
                                       SpeedOptions, TargetTeacherOptions, TextOptions)

    def names(cls):
        return {f.name for f in dataclasses.fields(cls)}

    train = names(TrainConfig)
    distill = (train | names(FewStepOptions) | names(DMDOptions) | names(GANOptions) | names(SpeedOptions)
               | names(TextOptions))
    expected = {"pretrain": train | names(DenoiseOptions), "ft": train | names(DenoiseOptions),
                "dreambooth": train | names(DenoiseOptions) | names(DreamBoothOptions),
                "student_ft": train | names(FewStepOptions), "dmd2": distill,
                "unidad": distill | names(TargetTeacherOptions)}
    for stage_id, options in expected.items():
        assert names(get_stage(stage_id).config_cls) == options, stage_id
    # dmd2 has one teacher: the target-teacher options are unknown to it, not silently ignored
    with pytest.raises(StageConfigError, match="unknown option.*target_teacher"):
        get_stage("dmd2").config_cls.from_dict({"target_teacher": "none"})
    # a group's checks run in every config that composes it
    for stage_id in ("student_ft", "dmd2", "unidad"):
        with pytest.raises(StageConfigError, match="gen_steps"):
            get_stage(stage_id).config_cls.from_dict({"gen_steps": 9})


def test_per_term_grad_norms_match_each_terms_own_gradient():
    from unidad.train.loop import per_term_grad_norms

    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    frozen = torch.nn.Parameter(torch.tensor([5.0]), requires_grad=False)
    terms = {"a": (w ** 2).sum(), "b": 3.0 * w.sum(), "constant": torch.tensor(2.0)}
    terms["loss"] = terms["a"] + 0.1 * terms["b"]
    norms = per_term_grad_norms(terms, [w, frozen])
    assert set(norms) == {"a", "b"}  # no gradient for constants, 'loss' is the update's own norm
    assert norms["a"] == pytest.approx(float((2 * w.detach()).norm()))
    assert norms["b"] == pytest.approx(3.0 * 3 ** 0.5)
    assert w.grad is None  # reading the norms must not touch the accumulated gradients
    terms["loss"].backward()  # and the graph is still there for the real backward
    assert w.grad is not None


def test_every_update_reaches_the_log_whatever_ratio_and_log_every(tiny_factory, source_file, tmp_path):
    """The generator runs every `ratio` iterations; with ratio dividing log_every it never runs on a log
    step itself, and its terms must still be logged (each log line: the mean over the window)."""
    import json

    stage = make_stage("unidad", tiny_factory, source_file, iterations=8, ratio=2, log_every=4,
                       checkpoint_every=8, target_teacher="online")
    train(stage, tmp_path / "run", log=lambda msg: None)
    lines = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [4, 8]
    for r in lines:
        for update in ("generator", "critic", "target_teacher"):
            assert f"{update}/loss" in r and f"{update}/lr" in r, (update, sorted(r))
        assert any(k.startswith("generator/grad_norm/") for k in r)
