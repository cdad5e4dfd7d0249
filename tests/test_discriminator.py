"""Discriminator heads: tap selection, head counts and logit shapes."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from unidad.backbones.base import Conditioning
from unidad.backbones.tiny import TinyUNet
from unidad.discriminator import (
    MultiHeadDiscriminator,
    SingleHeadDiscriminator,
    build_discriminator,
    critic_logits,
    select_taps,
)
from unidad.losses import multihead_critic_loss

TAPS = ["enc0", "enc1", "enc2", "mid"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TinyUNet(image_size=16, channels=(32, 64, 64)).eval()


@pytest.fixture(scope="module")
def tiny_batch():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, 16, 16, generator=gen), torch.tensor([0.5, 10.0])


# ----------------------------------------------------------------------------------- tap selection
def test_select_taps_variants():
    assert select_taps(TAPS, "all") == TAPS
    assert select_taps(TAPS, "last_k:2") == ["enc2", "mid"]
    assert select_taps(TAPS, "last_k:4") == TAPS
    assert select_taps(TAPS, ["mid", "enc0"]) == ["enc0", "mid"]  # backbone order, shallow to deep
    assert select_taps(TAPS, "enc1, mid") == ["enc1", "mid"]


@pytest.mark.parametrize(
    "selection, message",
    [
        (["enc0", "dec0"], r"unknown feature taps \['dec0'\]"),
        ("last_k:0", "1..4"),
        ("last_k:5", "1..4"),
        ("last_k:two", "1..4"),
        ([], "empty tap selection"),
        (["mid", "mid"], "more than once"),
    ],
)
def test_select_taps_errors(selection, message):
    with pytest.raises(ValueError, match=message):
        select_taps(TAPS, selection)


# ------------------------------------------------------------------------------ heads on TinyUNet
def test_one_head_per_tap_of_tiny_unet(tiny, tiny_batch):
    assert tiny.feature_taps() == TAPS
    disc = build_discriminator(tiny)
    assert isinstance(disc, MultiHeadDiscriminator)
    assert disc.taps == TAPS and len(disc.heads) == 4
    x, sigma = tiny_batch
    logits = critic_logits(tiny, disc, x, sigma)
    assert len(logits) == 4
    assert all(tuple(l.shape) == (2,) for l in logits)


def test_last_k_and_explicit_selection_build_those_heads(tiny):
    last_two = build_discriminator(tiny, taps="last_k:2")
    assert last_two.taps == ["enc2", "mid"] and len(last_two.heads) == 2
    explicit = build_discriminator(tiny, taps=["enc1"])
    assert explicit.taps == ["enc1"] and len(explicit.heads) == 1
    with pytest.raises(ValueError, match="unknown feature taps"):
        build_discriminator(tiny, taps=["bottleneck"])


def test_patch_heads_give_one_logit_per_position(tiny, tiny_batch):
    disc = build_discriminator(tiny, head_type="patch")
    x, sigma = tiny_batch
    logits = critic_logits(tiny, disc, x, sigma)
    # resolutions: enc0 16x16, enc1 8x8, enc2 4x4, mid 4x4
    assert [tuple(l.shape) for l in logits] == [(2, 256), (2, 64), (2, 16), (2, 16)]
    for reduce in ("mean_logits", "sum_losses"):
        loss = multihead_critic_loss("bce", logits, [l.detach() * 0 for l in logits], reduce)
        assert loss.ndim == 0 and torch.isfinite(loss)


def test_global_head_is_mean_of_a_1x1_conv():
    disc = MultiHeadDiscriminator({"a": 3}, ["a"], head_type="global")
    feature = torch.randn(2, 3, 5, 7)
    conv = disc.heads[0].to_logit
    expected = (torch.einsum("bchw,c->bhw", feature, conv.weight.reshape(3)) + conv.bias).mean(dim=(1, 2))
    torch.testing.assert_close(disc({"a": feature})[0], expected)


def test_gradients_reach_the_heads_and_the_generator_input(tiny, tiny_batch):
    disc = build_discriminator(tiny)
    x, sigma = tiny_batch
    x = x.clone().requires_grad_(True)
    loss = sum(l.sum() for l in critic_logits(tiny, disc, x, sigma))
    loss.backward()
    assert all(p.grad is not None for p in disc.parameters())
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_head_type_kind_and_missing_features(tiny):
    with pytest.raises(ValueError, match="global, patch"):
        build_discriminator(tiny, head_type="pixel")
    with pytest.raises(ValueError, match="multi, single"):
        build_discriminator(tiny, kind="triple")
    disc = build_discriminator(tiny, taps="last_k:2")
    with pytest.raises(KeyError, match="taps=disc.taps"):
        disc({"enc2": torch.zeros(1, 64, 4, 4)})


# ----------------------------------------------------------------------------------- single head
def test_single_head_reads_only_the_bottleneck(tiny, tiny_batch):
    disc = build_discriminator(tiny, kind="single")
    assert isinstance(disc, SingleHeadDiscriminator)
    assert disc.taps == [tiny.bottleneck_tap()] == ["mid"]
    x, sigma = tiny_batch
    logits = critic_logits(tiny, disc, x, sigma)
    assert len(logits) == 1 and tuple(logits[0].shape) == (2,)
    # the other feature maps are never looked at
    mid = tiny.features(x, sigma, taps=["mid"])["mid"]
    torch.testing.assert_close(disc({"mid": mid})[0], logits[0])


@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_single_head_works_for_any_bottleneck_size(size):
    disc = SingleHeadDiscriminator(16, "mid")
    logits = disc({"mid": torch.randn(3, 16, size, size)})
    assert len(logits) == 1 and tuple(logits[0].shape) == (3,)


# --------------------------------------------------------------------------- SD1.5 (diffusers UNet)
def test_sd15_one_head_per_down_block_plus_mid():
    from tiny_sd15 import tiny_sd15  # tests/tiny_sd15.py

    torch.manual_seed(0)
    denoiser = tiny_sd15()
    unet = denoiser.unet
    disc = build_discriminator(denoiser)
    assert len(disc.heads) == len(unet.down_blocks) + 1
    assert disc.taps == denoiser.feature_taps()
    assert disc.taps[-1] == denoiser.bottleneck_tap()

    # the heads run on the wrapper's features (text-conditioned UNet: a random context)
    c, h, w = denoiser.latent_shape
    x = torch.randn(1, c, h, w)
    cond = Conditioning(context=torch.randn(1, 4, unet.config.cross_attention_dim))
    with torch.no_grad():
        logits = critic_logits(denoiser, disc, x, 1.0, cond)
    assert len(logits) == len(unet.down_blocks) + 1
    assert all(tuple(l.shape) == (1,) for l in logits)
