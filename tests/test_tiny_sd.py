"""The miniature text-to-image backbone: a word-level CLIPTokenizer written offline, the SD1.5 classes
built from config with no network, the SD adapter round trip, and the VAE fit."""
from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from unidad.backbones.sd15 import SD15Denoiser, save_sd15
from unidad.backbones.tiny_sd import (
    build_tiny_sd,
    default_vocabulary,
    fit_tiny_vae,
    load_tiny_sd,
    reconstruction_loss,
    whole_word_merges,
    word_level_clip_tokenizer,
)

SMALL = dict(image_size=32, vae_channels=(8, 16), unet_channels=(16, 32), attention_head_dim=8, text_width=16,
             text_heads=2, max_length=16)


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_sd(**SMALL)


def test_every_vocabulary_word_is_one_token():
    words = default_vocabulary()
    assert {"prt", "sks", "square", "snow", "jungle", "stuffed", "animal", "monocle"} <= set(words)
    tokenizer = word_level_clip_tokenizer(words, max_length=16)
    assert type(tokenizer).__name__ == "CLIPTokenizer"
    ids = [tokenizer(w, add_special_tokens=False).input_ids for w in words]
    assert all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == len(words)
    batch = tokenizer(["a prt square in the snow"], padding="max_length", max_length=16).input_ids[0]
    assert batch[0] == tokenizer.bos_token_id and batch[7] == tokenizer.eos_token_id
    assert tokenizer.convert_ids_to_tokens(batch[1:7]) == ["a</w>", "prt</w>", "square</w>", "in</w>", "the</w>",
                                                          "snow</w>"]
    # a word outside the list is spelled in characters, not dropped or mapped to one unknown id
    assert tokenizer.convert_ids_to_tokens(tokenizer("zebu", add_special_tokens=False).input_ids) == ["z", "e", "b",
                                                                                                      "u</w>"]
    with pytest.raises(ValueError, match="lower-case letters"):
        word_level_clip_tokenizer(["ok", "not-ok"], 8)


def test_appended_merges_never_split_an_earlier_word():
    merges = whole_word_merges(["ab", "abc", "bc", "cab"])
    assert len(set(merges)) == len(merges)
    tokenizer = word_level_clip_tokenizer(["ab", "abc", "bc", "cab"], 8)
    for word in ("ab", "abc", "bc", "cab"):
        assert tokenizer.convert_ids_to_tokens(tokenizer(word, add_special_tokens=False).input_ids) == [word + "</w>"]


def test_built_offline_with_the_sd15_classes(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the tiny text-to-image model tried to open a network connection")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    model = build_tiny_sd(**SMALL, seed=3)
    assert isinstance(model, SD15Denoiser)
    assert [type(m).__name__ for m in (model.unet, model.vae, model.text_encoder, model.tokenizer)] == [
        "UNet2DConditionModel", "AutoencoderKL", "CLIPTextModel", "CLIPTokenizer"]
    assert model.latent_shape == (12, 16, 16) and model.image_shape == (3, 32, 32)  # 12 latent channels at /2
    again = build_tiny_sd(**SMALL, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ValueError, match="does not divide"):
        build_tiny_sd(**{**SMALL, "image_size": 30})
    with pytest.raises(ValueError, match="one flag per UNet level"):
        build_tiny_sd(**SMALL, cross_attention=(True,))


def test_prompts_condition_the_denoiser_through_the_adapter(tiny):
    cond = tiny.encode_prompt(["a prt square in the snow", "a prt square on the beach"])
    assert cond.context.shape == (2, 16, 16)
    assert not torch.allclose(cond.context[0], cond.context[1])  # the context words reach the encoder
    torch.manual_seed(0)
    x = torch.randn(1, *tiny.latent_shape).expand(2, -1, -1, -1)
    with torch.no_grad():
        out = tiny(x, torch.tensor([1.0, 1.0]), cond)
    assert out.shape == (2, *tiny.latent_shape) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])  # same input, different prompts -> different predictions
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    assert tiny.encode(images).shape == (2, *tiny.latent_shape)
    assert tiny.decode(tiny.encode(images)).shape == (2, 3, 32, 32)


def test_saved_folder_loads_back_through_the_sd15_loader(tiny, tmp_path):
    save_sd15(tiny, tmp_path / "model")
    loaded = load_tiny_sd(tmp_path / "model")
    for a, b in zip(tiny.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    prompt = ["a prt circle floating on top of water"]
    assert tiny.tokenizer(prompt).input_ids == loaded.tokenizer(prompt).input_ids


def test_vae_fit_learns_to_reconstruct_and_sets_the_scaling_factor():
    from unidad.data.scenes import sample_source

    images, _, _ = sample_source(200, seed=0)
    vae = build_tiny_sd(**SMALL).vae
    before = fit_tiny_vae(vae, images, steps=1, batch_size=8, lr=1e-9)["heldout_mae_pixels"]
    summary = fit_tiny_vae(vae, images, steps=80, batch_size=8, lr=5e-3)
    assert summary["heldout_mae_pixels"] < 0.75 * before
    assert vae.config.scaling_factor == pytest.approx(summary["scaling_factor"]) and summary["scaling_factor"] > 0
    assert not any(p.requires_grad for p in vae.parameters())  # frozen again, as the adapter expects
    with pytest.raises(ValueError, match="needs steps"):
        fit_tiny_vae(vae, images[:1], steps=5)
    assert np.isfinite(summary["train_seconds"])


def test_vae_fit_saves_the_weight_average_and_can_start_from_zeroed_residual_branches():
    from diffusers.models.resnet import ResnetBlock2D

    from unidad.data.scenes import sample_source

    images, _, _ = sample_source(40, seed=0)
    start = build_tiny_sd(**SMALL).vae.state_dict()
    fits = {}
    for decay in (0.0, 0.5):
        vae = build_tiny_sd(**SMALL).vae
        fits[decay] = (vae, fit_tiny_vae(vae, images, steps=1, batch_size=4, lr=1e-2, ema_decay=decay,
                                         zero_residuals=False))
    trained, averaged = fits[0.0][0].state_dict(), fits[0.5][0].state_dict()
    # one step of decay 0.5 from the initial weights: the saved weights are halfway, not the last step's
    for key in start:
        assert torch.allclose(averaged[key], 0.5 * (start[key] + trained[key]), atol=1e-6), key
    assert not torch.equal(trained["decoder.conv_out.weight"], start["decoder.conv_out.weight"])
    assert fits[0.5][1]["ema_decay"] == 0.5 and fits[0.5][1]["train_cpu_seconds"] >= 0
    with pytest.raises(ValueError, match="ema_decay"):
        fit_tiny_vae(build_tiny_sd(**SMALL).vae, images, steps=1, ema_decay=1.0)

    vae = build_tiny_sd(**SMALL).vae
    fit_tiny_vae(vae, images, steps=1, batch_size=4, lr=1e-12, zero_residuals=True)
    blocks = [m for m in vae.modules() if isinstance(m, ResnetBlock2D)]
    assert blocks and all(float(b.conv2.weight.abs().max()) < 1e-9 for b in blocks)
    with torch.no_grad():  # each block is its shortcut: identity where the channels stay
        x = torch.randn(2, blocks[0].in_channels, 8, 8)
        assert torch.allclose(blocks[0](x, None), x, atol=1e-5)


def test_reconstruction_loss_weights_pixels_and_their_differences():
    target = torch.zeros(1, 3, 4, 4)
    shifted = target + 0.5  # a uniform error has no differences
    assert reconstruction_loss(shifted, target, l1=1.0, mse=0.0, edge=5.0).item() == pytest.approx(0.5)
    assert reconstruction_loss(shifted, target, l1=0.0, mse=2.0).item() == pytest.approx(0.5)
    edge = target.clone()
    edge[..., 2:] = 1.0  # a step the reconstruction missed: 1/2 of the pixels, 1/3 of the row differences
    assert reconstruction_loss(edge, target, l1=1.0, edge=0.0).item() == pytest.approx(0.5)
    assert reconstruction_loss(edge, target, l1=0.0, edge=1.0).item() == pytest.approx(1 / 3)


def test_registered_as_a_backbone_kind(tiny, tmp_path):
    from unidad.backbones import backbone_image_size, load_source_weights

    spec = {"kind": "tiny_sd", "params": dict(SMALL)}
    assert backbone_image_size(spec) == 32
    save_sd15(tiny, tmp_path / "teacher")
    loaded = load_source_weights(spec, tmp_path / "teacher")
    assert isinstance(loaded, SD15Denoiser)
    assert torch.equal(next(loaded.unet.parameters()), next(tiny.unet.parameters()))
