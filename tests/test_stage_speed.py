"""The unidad stage does no duplicated work, and its speed switches keep its numbers."""
import torch

from unidad.train.loop import build_optimizers, make_batch, run_update, train
from unidad.weights_file import read_weights

from test_stages import make_stage, source_file  # noqa: F401  (the fixture, reused)


def _generator_calls(stage):
    calls = []
    stage.modules["generator"].register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_the_critic_trains_on_the_generator_updates_sample(tiny_factory, source_file):  # noqa: F811
    stage = make_stage("unidad", tiny_factory, source_file, target_teacher="online", ratio=2, gen_steps=2)
    stage.build()
    optims = {o.update.name: o for o in build_optimizers(stage)}
    calls = _generator_calls(stage)
    seen = []
    critic_loss = stage.critic_loss

    def spy(batch):
        seen.append(list(stage._shared_samples))
        return critic_loss(batch)

    optims["critic"].update.loss = spy
    run_update(stage, optims["generator"], 0)
    assert len(calls) == 2, "the generator update unrolls K = 2 steps"
    shared = stage._shared_samples[0]
    run_update(stage, optims["target_teacher"], 0)
    run_update(stage, optims["critic"], 0)
    assert len(calls) == 2, "on a generator iteration the critic draws no unroll of its own"
    assert len(seen[0]) == 1 and seen[0][0] is shared and not stage._shared_samples
    assert not shared.requires_grad
    run_update(stage, optims["critic"], 1)
    assert len(calls) == 4, "on the other iterations the critic draws its own K-step sample"


def test_one_critic_pass_over_real_and_fake_equals_two(tiny_factory, source_file):  # noqa: F811
    stage = make_stage("unidad", tiny_factory, source_file, head_type="patch")
    stage.build()
    torch.manual_seed(0)
    real, fake = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    sr, sf = torch.tensor([0.1, 3.0]), torch.tensor([20.0, 0.7])
    both = stage._logits(torch.cat([real, fake]), torch.cat([sr, sf]))
    for apart, joint in ((stage._logits(real, sr), [b[:2] for b in both]), (stage._logits(fake, sf), [b[2:] for b in both])):
        for a, j in zip(apart, joint):
            torch.testing.assert_close(a, j, rtol=1e-5, atol=1e-6)


def test_checkpointed_unroll_gives_the_generator_the_same_gradient(tiny_factory, source_file):  # noqa: F811
    grads = []
    for checkpoint in (False, True):
        stage = make_stage("unidad", tiny_factory, source_file, checkpoint_unroll=checkpoint)
        stage.build()
        torch.manual_seed(5)
        stage.generator_loss(make_batch(stage, 0, 0))["loss"].backward()
        grads.append([p.grad.clone() for p in stage.modules["generator"].parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_channels_last_and_tf32_keep_the_losses_and_gradients(tiny_factory, source_file, tmp_path):  # noqa: F811
    from unidad.train.loop import apply_speed_options

    results = []
    for options in ({}, {"channels_last": True, "tf32": True}):
        stage = make_stage("unidad", tiny_factory, source_file, **options)
        stage.build()
        apply_speed_options(stage)
        torch.manual_seed(7)
        terms = stage.critic_loss(make_batch(stage, 0, 0))
        terms["loss"].backward()
        results.append((terms, [p.grad.clone() for p in stage.modules["fake"].parameters()]))
    (plain, g_plain), (fast, g_fast) = results
    for key in plain:
        torch.testing.assert_close(plain[key], fast[key], rtol=1e-4, atol=1e-6, msg=key)
    for a, b in zip(g_plain, g_fast):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)
    # and a run with them trains, checkpoints and ends like any other
    stage = make_stage("unidad", tiny_factory, source_file, channels_last=True, tf32=True)
    assert train(stage, tmp_path / "fast", log=lambda *_: None)["complete"]
    for tensors in read_weights(tmp_path / "fast" / "checkpoints" / "step00000004").values():
        assert all(torch.isfinite(t).all() for t in tensors.values())


def test_every_optimiser_is_fused_and_steps_as_the_per_tensor_adamw(tiny_factory, source_file):  # noqa: F811
    stage = make_stage("unidad", tiny_factory, source_file, target_teacher="online", ratio=2, gen_steps=2)
    stage.build()
    optims = build_optimizers(stage)
    assert optims and all(o.optimizer.defaults["fused"] for o in optims)

    # the loop's own optimiser against the per-tensor kernel with its hyperparameters (Adam with
    # decoupled weight decay is AdamW; the group's lr is the scheduled one)
    built = optims[0].optimizer
    params = optims[0].params
    reference = [p.detach().clone().requires_grad_(True) for p in params]
    per_tensor = torch.optim.Adam(reference, **{**built.defaults, "fused": False, "lr": built.param_groups[0]["lr"]})
    grads = [torch.randn_like(p) for p in params]
    for _ in range(3):
        for p, r, g in zip(params, reference, grads):
            p.grad, r.grad = g.clone(), g.clone()
        built.step()
        per_tensor.step()
    for p, r in zip(params, reference):
        torch.testing.assert_close(p.detach(), r.detach(), rtol=1e-6, atol=1e-7)
