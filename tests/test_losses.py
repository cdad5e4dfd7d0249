"""Uni-DAD losses against hand computations."""
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from unidad.losses import (
    GAN_LOSSES,
    critic_loss,
    denoising_loss,
    dmd_loss,
    dual_dmd_loss,
    generator_loss,
    gradient_penalty,
    multihead_critic_loss,
    multihead_generator_loss,
    r1_penalty,
)


def _dmd_case(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    shape = (3, 2, 4, 5)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    x0_teacher = torch.randn(shape, generator=gen, dtype=torch.float64)
    x0_fake = torch.randn(shape, generator=gen, dtype=torch.float64)
    return x, x0_teacher, x0_fake


# --------------------------------------------------------------------------------------------- DMD
def test_dmd_gradient_matches_hand_formula():
    x, x0_teacher, x0_fake = _dmd_case()
    x = x.requires_grad_(True)
    loss = dmd_loss(x, x0_teacher, x0_fake)
    (grad,) = torch.autograd.grad(loss, x)

    p_real = x.detach() - x0_teacher
    p_fake = x.detach() - x0_fake
    w = p_real.abs().mean(dim=(1, 2, 3), keepdim=True)
    expected = (p_real - p_fake) / (w * x.numel())
    assert grad.dtype == torch.float64
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-15)
    # the loss value is 0.5 * mean(g^2)
    g = (p_real - p_fake) / w
    torch.testing.assert_close(loss.detach(), 0.5 * g.pow(2).mean(), rtol=1e-12, atol=0)


def test_dmd_does_not_backprop_into_teacher_or_fake():
    x, x0_teacher, x0_fake = _dmd_case(1)
    x0_teacher.requires_grad_(True)
    x0_fake.requires_grad_(True)
    x.requires_grad_(True)
    dmd_loss(x, x0_teacher, x0_fake).backward()
    assert x0_teacher.grad is None and x0_fake.grad is None
    assert x.grad is not None


def test_dmd_zero_normaliser_is_finite():
    x = torch.zeros(2, 1, 2, 2, requires_grad=True)
    loss = dmd_loss(x, torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2))  # p_real == 0 -> w clamped
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_dmd_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="x0_fake"):
        dmd_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))


def test_dual_dmd_combination():
    x, t_src, fake = _dmd_case(2)
    _, t_tgt, _ = _dmd_case(3)
    loss_src = dmd_loss(x, t_src, fake)
    loss_tgt = dmd_loss(x, t_tgt, fake)
    a = 0.25
    torch.testing.assert_close(dual_dmd_loss(loss_src, loss_tgt, a), 0.75 * loss_src + 0.25 * loss_tgt)
    assert torch.equal(dual_dmd_loss(loss_src, loss_tgt, 0.0), loss_src)
    assert torch.equal(dual_dmd_loss(loss_src, loss_tgt, 1.0), loss_tgt)
    assert dual_dmd_loss(loss_src, None, 0.75) is loss_src


def test_dual_dmd_gradient_is_the_mix_of_directions():
    x, t_src, fake = _dmd_case(4)
    _, t_tgt, _ = _dmd_case(5)
    x.requires_grad_(True)
    a = 0.75
    (grad,) = torch.autograd.grad(dual_dmd_loss(dmd_loss(x, t_src, fake), dmd_loss(x, t_tgt, fake), a), x)
    (g_src,) = torch.autograd.grad(dmd_loss(x, t_src, fake), x)
    (g_tgt,) = torch.autograd.grad(dmd_loss(x, t_tgt, fake), x)
    torch.testing.assert_close(grad, (1 - a) * g_src + a * g_tgt)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_dual_dmd_rejects_weight_outside_unit_interval(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dual_dmd_loss(torch.tensor(1.0), torch.tensor(2.0), bad)


# --------------------------------------------------------------------------------------- denoising
def test_denoising_loss_weighting_by_hand():
    x0 = torch.zeros(2, 1, 1, 2, dtype=torch.float64)
    x0_pred = torch.tensor([[[[1.0, 2.0]]], [[[3.0, 0.0]]]], dtype=torch.float64)
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float64)
    # lambda(0.5) = 4 + 4 = 8 ; lambda(2) = 0.25 + 4 = 4.25
    expected = (8 * (1 + 4) + 4.25 * (9 + 0)) / 4
    assert denoising_loss(x0_pred, x0, sigma).item() == pytest.approx(expected, rel=1e-12)
    # another sigma_data: lambda(0.5) = 4 + 1 = 5 ; lambda(2) = 0.25 + 1 = 1.25
    expected_sd1 = (5 * 5 + 1.25 * 9) / 4
    assert denoising_loss(x0_pred, x0, sigma, sigma_data=1.0).item() == pytest.approx(expected_sd1, rel=1e-12)


def test_denoising_loss_rejects_mismatched_sigma():
    with pytest.raises(ValueError, match="one sigma per sample"):
        denoising_loss(torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2), torch.ones(3))


# --------------------------------------------------------------------------------------------- GAN
REAL = torch.tensor([2.0, -1.0], dtype=torch.float64)
FAKE = torch.tensor([0.5, -3.0], dtype=torch.float64)


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))


CLOSED_FORM = {
    # (critic, generator) on REAL / FAKE
    "bce": (
        (_softplus(-2) + _softplus(1)) / 2 + (_softplus(0.5) + _softplus(-3)) / 2,
        (_softplus(-0.5) + _softplus(3)) / 2,
    ),
    "hinge": ((0 + 2) / 2 + (1.5 + 0) / 2, -(0.5 - 3) / 2),
    "lsgan": (0.5 * ((1 + 4) / 2 + (0.25 + 9) / 2), 0.5 * (0.25 + 16) / 2),
    "wgan-gp": ((0.5 - 3) / 2 - (2 - 1) / 2, -(0.5 - 3) / 2),
}


@pytest.mark.parametrize("kind", GAN_LOSSES)
def test_gan_losses_closed_form(kind):
    d_expected, g_expected = CLOSED_FORM[kind]
    assert critic_loss(kind, REAL, FAKE).item() == pytest.approx(d_expected, rel=1e-12)
    assert generator_loss(kind, FAKE).item() == pytest.approx(g_expected, rel=1e-12)


def test_bce_equals_binary_cross_entropy_with_targets():
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(REAL, torch.ones_like(REAL)) + bce(FAKE, torch.zeros_like(FAKE))
    torch.testing.assert_close(critic_loss("bce", REAL, FAKE), expected)
    torch.testing.assert_close(generator_loss("bce", FAKE), bce(FAKE, torch.ones_like(FAKE)))


def test_unknown_loss_and_reduction_are_errors():
    with pytest.raises(ValueError, match="bce, hinge, lsgan, wgan-gp"):
        critic_loss("vanilla", REAL, FAKE)
    with pytest.raises(ValueError, match="bce, hinge, lsgan, wgan-gp"):
        generator_loss("vanilla", FAKE)
    with pytest.raises(ValueError, match="mean_logits, sum_losses"):
        multihead_critic_loss("bce", [REAL], [FAKE], reduce="max")
    with pytest.raises(ValueError, match="mean_logits, sum_losses"):
        multihead_generator_loss("bce", [FAKE], reduce="max")
    with pytest.raises(ValueError, match="same, non-zero number"):
        multihead_critic_loss("bce", [REAL, REAL], [FAKE], reduce="sum_losses")


def test_multihead_reductions_by_hand():
    # head 1: global logits [B=2]; head 2: patch logits [B=2, N=2] with spatial means (1, -1) / (0, 2)
    real = [torch.tensor([3.0, -1.0], dtype=torch.float64), torch.tensor([[0.0, 2.0], [-3.0, 1.0]], dtype=torch.float64)]
    fake = [torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([[-1.0, 1.0], [2.0, 2.0]], dtype=torch.float64)]

    # mean_logits: per-sample averaged logits real = ((3+1)/2, (-1-1)/2) = (2, -1), fake = (0.5, 1)
    assert multihead_critic_loss("hinge", real, fake, "mean_logits").item() == pytest.approx(
        (0 + 2) / 2 + (1.5 + 2) / 2)
    assert multihead_generator_loss("hinge", fake, "mean_logits").item() == pytest.approx(-(0.5 + 1) / 2)
    assert multihead_generator_loss("lsgan", fake, "mean_logits").item() == pytest.approx(0.5 * (0.25 + 0) / 2)

    # sum_losses: each head's loss over all its elements, summed
    head1 = (0 + 2) / 2 + (2 + 1) / 2
    head2 = (1 + 0 + 4 + 0) / 4 + (0 + 2 + 3 + 3) / 4
    assert multihead_critic_loss("hinge", real, fake, "sum_losses").item() == pytest.approx(head1 + head2)
    assert multihead_generator_loss("hinge", fake, "sum_losses").item() == pytest.approx(
        -(1 + 0) / 2 - (-1 + 1 + 2 + 2) / 4)


def test_single_head_reductions_agree_for_global_logits():
    for kind in GAN_LOSSES:
        a = multihead_critic_loss(kind, [REAL], [FAKE], "mean_logits")
        b = multihead_critic_loss(kind, [REAL], [FAKE], "sum_losses")
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, critic_loss(kind, REAL, FAKE))


def test_gradient_penalty_zero_for_unit_gradient_critic():
    torch.manual_seed(0)
    u = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    u = u / u.norm()
    real = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    fake = torch.randn(5, 3, 4, 4, dtype=torch.float64)

    def unit_critic(v):
        return (v * u).sum(dim=(1, 2, 3))

    assert gradient_penalty(unit_critic, real, fake).item() == pytest.approx(0.0, abs=1e-10)

    # gradient norm 3 everywhere -> weight * (3 - 1)^2
    def steep_critic(v):
        return 3 * unit_critic(v)

    assert gradient_penalty(steep_critic, real, fake, weight=10).item() == pytest.approx(40.0, rel=1e-9)


def test_gradient_penalty_reaches_critic_parameters():
    torch.manual_seed(1)
    scale = torch.tensor(2.0, requires_grad=True)
    real, fake = torch.randn(4, 2, 2, 2), torch.randn(4, 2, 2, 2)
    penalty = gradient_penalty(lambda v: scale * v.pow(2).sum(dim=(1, 2, 3)), real, fake)
    penalty.backward()
    assert penalty.item() > 0 and scale.grad is not None and scale.grad.abs() > 0


def test_r1_penalty_on_a_quadratic_by_hand():
    x = torch.tensor([[1.0, 2.0], [0.0, -3.0]], dtype=torch.float64, requires_grad=True)
    logits = x.pow(2).sum(dim=1)  # grad = 2x, ||grad||^2 = 4 * sum x^2 = (20, 36)
    gamma = 0.5
    assert r1_penalty(logits, x, gamma).item() == pytest.approx(gamma / 2 * (20 + 36) / 2)


def test_r1_needs_inputs_with_grad():
    x = torch.ones(2, 2)
    with pytest.raises(ValueError, match="requires_grad_"):
        r1_penalty(x.sum(dim=1), x, 1.0)
