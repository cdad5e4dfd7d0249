"""The SD1.5 backbone (diffusers) meets the denoiser contract: a latent, text-conditioned
eps-prediction model fits `VPEpsAdapter` without change. Tiny random-weight models, no downloads."""
from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from unidad.backbones.base import Conditioning
from unidad.backbones.sd15 import SD15_MODEL_ID, load_sd15, save_sd15
from unidad.edm import sample_euler, sampling_sigmas

from tiny_sd15 import tiny_sd15  # tests/tiny_sd15.py

PROMPTS = ["a photo of a prt dog", "a watercolour of a prt cat"]


@pytest.fixture(scope="module")
def sd():
    return tiny_sd15(seed=0)


@pytest.fixture(scope="module")
def cond(sd):
    return sd.encode_prompt(PROMPTS)


def latents(sd, batch=2, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *sd.latent_shape, generator=gen)


def sd_alphas_cumprod_by_hand():
    """SD's scaled_linear schedule written out independently of the library."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0)


def denoise_by_hand(sd, x, sigma, context):
    """x0 = x - sigma * eps(x / sqrt(1 + sigma^2), t, context), t = nearest step in abar."""
    abar = sd_alphas_cumprod_by_hand()
    t = torch.stack([(abar - 1.0 / (1.0 + float(s) ** 2)).abs().argmin() for s in sigma])
    scale = (1.0 / torch.sqrt(1.0 + sigma**2)).view(-1, 1, 1, 1)
    eps = sd.unet(x * scale, t, encoder_hidden_states=context).sample
    return x - sigma.view(-1, 1, 1, 1) * eps


# -- denoise ---------------------------------------------------------------------------------
@torch.no_grad()
def test_denoise_matches_the_eps_network_by_hand(sd, cond):
    x = latents(sd)
    sigma = torch.tensor([0.3, 5.0])
    out = sd.denoise(x, sigma, cond)
    assert out.shape == x.shape == (2, *sd.latent_shape)
    torch.testing.assert_close(out, denoise_by_hand(sd, x, sigma, cond.context), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_scalar_and_batched_sigma_agree(sd, cond):
    x = latents(sd)
    batched = sd.denoise(x, torch.tensor([2.0, 2.0]), cond)
    torch.testing.assert_close(sd.denoise(x, 2.0, cond), batched)
    torch.testing.assert_close(sd.denoise(x, torch.tensor(2.0), cond), batched)


@torch.no_grad()
def test_classifier_free_guidance_is_the_base_class_formula(sd, cond):
    x = latents(sd)
    sigma = torch.tensor([1.0, 3.0])
    plain = sd.denoise(x, sigma, cond)
    guided = sd.denoise(x, sigma, cond.with_guidance(7.5))
    assert not torch.allclose(plain, guided, atol=1e-4)

    x0_cond = denoise_by_hand(sd, x, sigma, cond.context)
    x0_uncond = denoise_by_hand(sd, x, sigma, cond.uncond_context)
    torch.testing.assert_close(guided, x0_uncond + 7.5 * (x0_cond - x0_uncond), rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_a_single_prompt_row_is_shared_and_a_wrong_batch_is_refused(sd, cond):
    x = latents(sd)
    one = Conditioning(context=cond.context[:1])
    shared = sd.denoise(x, 1.0, one)
    torch.testing.assert_close(shared, sd.denoise(x, 1.0, Conditioning(context=cond.context[:1].expand(2, -1, -1))))
    with pytest.raises(ValueError, match="rows for a batch of 3"):
        sd.denoise(latents(sd, batch=3), 1.0, cond)
    with pytest.raises(ValueError, match="encode_prompt"):
        sd.denoise(x, 1.0, None)


# -- feature taps ----------------------------------------------------------------------------
def test_taps_are_every_down_block_plus_mid_with_config_channels(sd):
    taps = sd.feature_taps()
    assert len(taps) == len(sd.unet.down_blocks) + 1
    assert taps == ["down0", "down1", "mid"] and sd.bottleneck_tap() == "mid"
    widths = list(sd.unet.config.block_out_channels)
    assert sd.feature_channels() == {"down0": widths[0], "down1": widths[1], "mid": widths[-1]}


@torch.no_grad()
def test_features_equal_hooked_plain_forward(sd, cond):
    x = latents(sd)
    sigma = torch.tensor([0.7, 9.0])
    feats = sd.features(x, sigma, cond)

    seen = {}

    def record(name):
        def hook(_module, _inputs, out):  # returns None: a hook that returns a value replaces the output
            seen[name] = out[0] if isinstance(out, tuple) else out

        return hook

    blocks = {"down0": sd.unet.down_blocks[0], "down1": sd.unet.down_blocks[1], "mid": sd.unet.mid_block}
    handles = [block.register_forward_hook(record(name)) for name, block in blocks.items()]
    try:
        denoise_by_hand(sd, x, sigma, cond.context)
    finally:
        for handle in handles:
            handle.remove()

    assert list(feats) == ["down0", "down1", "mid"]
    for name, channels in sd.feature_channels().items():
        assert feats[name].shape[:2] == (2, channels)
        torch.testing.assert_close(feats[name], seen[name])


@torch.no_grad()
def test_features_stop_after_the_deepest_requested_tap(sd, cond):
    calls = []
    handles = [
        sd.unet.mid_block.register_forward_hook(lambda *_: calls.append("mid")),
        sd.unet.conv_out.register_forward_hook(lambda *_: calls.append("conv_out")),
    ]
    try:
        feats = sd.features(latents(sd), 1.0, cond, taps=["down0"])
    finally:
        for handle in handles:
            handle.remove()
    assert list(feats) == ["down0"] and calls == []
    assert not sd.unet.down_blocks[0]._forward_hooks  # the tap hooks were removed
    with pytest.raises(KeyError, match="unknown feature taps"):
        sd.features(latents(sd), 1.0, cond, taps=["enc0"])


def test_features_carry_gradients_for_the_discriminator(sd, cond):
    x = latents(sd).requires_grad_(True)
    sd.features(x, 2.0, cond, taps=["mid"])["mid"].square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in sd.vae.parameters())  # frozen parts stay frozen
    sd.unet.zero_grad(set_to_none=True)


# -- pixels, latents, prompts ----------------------------------------------------------------
@torch.no_grad()
def test_encode_decode_shapes_and_deterministic_scaled_mean(sd):
    images = torch.rand(2, *sd.image_shape, generator=torch.Generator().manual_seed(3)) * 2 - 1
    assert sd.image_shape == (3, 64, 64) and sd.latent_shape == (4, 8, 8)
    z = sd.encode(images)
    assert z.shape == (2, *sd.latent_shape)
    torch.testing.assert_close(z, sd.encode(images))
    assert sd.vae.config.scaling_factor == pytest.approx(0.18215)
    torch.testing.assert_close(z, sd.vae.encode(images).latent_dist.mean * 0.18215)
    decoded = sd.decode(z)
    assert decoded.shape == images.shape
    assert decoded.min() >= -1 and decoded.max() <= 1


def test_encode_prompt_shapes_and_empty_prompt_uncond(sd, cond):
    length = sd.tokenizer.model_max_length
    assert cond.context.shape == cond.uncond_context.shape == (2, length, 32)
    assert cond.guidance_scale == 1.0
    empty = sd.encode_prompt([""])
    torch.testing.assert_close(cond.uncond_context[:1], empty.context)
    assert not torch.allclose(cond.context[0], cond.context[1])
    assert sd.encode_prompt(PROMPTS, guidance_scale=7.5).guidance_scale == 7.5
    with pytest.raises(TypeError, match="list of prompts"):
        sd.encode_prompt("one string")


def test_parts_left_out_say_so_and_global_rng_is_untouched():
    state = torch.random.get_rng_state()
    bare = tiny_sd15(seed=0, with_vae=False, with_text=False)
    assert torch.equal(state, torch.random.get_rng_state())
    assert bare.image_shape == (3, 64, 64)
    assert len(bare.feature_taps()) == len(bare.unet.down_blocks) + 1
    with pytest.raises(RuntimeError, match="without a vae"):
        bare.encode(torch.zeros(1, 3, 64, 64))
    with pytest.raises(RuntimeError, match="without a tokenizer"):
        bare.encode_prompt(["x"])


# -- sampling through the contract -----------------------------------------------------------
def test_edm_euler_sampling_runs_through_the_wrapper(sd, cond):
    sigmas = sampling_sigmas(3, sd.sigma_min, sd.sigma_max)
    x_init = latents(sd) * float(sigmas[0])
    out = sample_euler(sd.denoise, x_init, sigmas, cond.with_guidance(7.5))
    assert out.shape == x_init.shape and torch.isfinite(out).all()
    with torch.no_grad():
        assert sd.decode(out).shape == (2, *sd.image_shape)


# -- loading staged weights ------------------------------------------------------------------
def test_load_missing_dir_names_path_and_fix(tmp_path):
    missing = tmp_path / "no-such-sd15"
    with pytest.raises(FileNotFoundError) as err:
        load_sd15(missing)
    message = str(err.value)
    assert str(missing) in message and "unidad weights fetch sd15" in message and SD15_MODEL_ID in message
    assert "\n" not in message


def test_load_missing_subfolder_and_wrong_schedule(tmp_path):
    for sub in ("unet", "vae", "text_encoder"):
        (tmp_path / sub).mkdir()
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        load_sd15(tmp_path)
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"beta_schedule": "scaled_linear", "prediction_type": "v_prediction"})
    )
    with pytest.raises(ValueError, match="v_prediction"):
        load_sd15(tmp_path)
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps({"prediction_type": "epsilon"}))
    with pytest.raises(FileNotFoundError, match="unet"):  # empty folders: a partial staging
        load_sd15(tmp_path)


@torch.no_grad()
def test_save_then_load_round_trips(sd, cond, tmp_path):
    save_sd15(sd, tmp_path)
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
                    "num_train_timesteps": 1000, "prediction_type": "epsilon"})
    )
    loaded = load_sd15(tmp_path)
    assert loaded.backbone_id == "sd15" and loaded.latent_shape == sd.latent_shape
    torch.testing.assert_close(loaded.alphas_cumprod, sd.alphas_cumprod)
    reloaded_cond = loaded.encode_prompt(PROMPTS)
    torch.testing.assert_close(reloaded_cond.context, cond.context)
    x = latents(sd)
    torch.testing.assert_close(loaded.denoise(x, 1.5, reloaded_cond), sd.denoise(x, 1.5, cond))
    images = torch.zeros(1, *sd.image_shape)
    torch.testing.assert_close(loaded.encode(images), sd.encode(images))
