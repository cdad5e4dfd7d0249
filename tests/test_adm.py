"""ADM (guided-diffusion UNet) backbone: numeric parity, FFHQ-256 layout, EDM wrapper, loader errors."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from unidad.backbones.adm import (  # noqa: E402
    AttentionBlock,
    ADMDenoiser,
    ADMUNet,
    adm_config_ffhq256,
    load_adm_checkpoint,
    resolve_adm_config,
    timestep_embedding,
)
from unidad.edm import karras_grid  # noqa: E402

DATA = Path(__file__).parent / "data" / "adm"
TINY_WEIGHTS = DATA / "tiny_parity.safetensors"
TOL = 1e-4


@pytest.fixture(scope="module")
def tiny_config() -> dict:
    return json.loads((DATA / "tiny_parity_config.json").read_text())


@pytest.fixture(scope="module")
def parity() -> dict[str, torch.Tensor]:
    return load_file(str(TINY_WEIGHTS))


@pytest.fixture(scope="module")
def tiny_unet(tiny_config, parity) -> ADMUNet:
    unet = ADMUNet.from_config(tiny_config)
    weights = {k.removeprefix("model."): v for k, v in parity.items() if k.startswith("model.")}
    unet.load_state_dict(weights, strict=True)
    return unet.eval()


@pytest.fixture(scope="module")
def tiny_denoiser(tiny_config) -> ADMDenoiser:
    return load_adm_checkpoint(TINY_WEIGHTS, tiny_config, key_prefix="model.").eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


# -- parity with the reference implementation ----------------------------------------------------
def test_tiny_parity_outputs(tiny_unet, parity):
    assert sum(p.numel() for p in tiny_unet.parameters()) == 841_222
    with torch.no_grad():
        out1 = tiny_unet(parity["io.x1"], parity["io.t1"])
        out2 = tiny_unet(parity["io.x2"], parity["io.t2"])
    assert out1.shape == (2, 6, 32, 32)
    assert max_diff(out1, parity["io.out1"]) <= TOL
    assert max_diff(out2, parity["io.out2"]) <= TOL


def test_tiny_parity_intermediates(tiny_unet, parity):
    x, t = parity["io.x1"], parity["io.t1"]
    with torch.no_grad():
        assert max_diff(timestep_embedding(t, 32), parity["dbg1.temb_sin"]) <= 1e-5
        assert max_diff(tiny_unet.embed(t, x.shape[0]), parity["dbg1.emb"]) <= TOL
        mid = tiny_unet.encoder_features(x, t, taps=["mid"])["mid"]
    assert max_diff(mid, parity["dbg1.mid"]) <= TOL


@pytest.mark.parametrize("legacy_order", [True, False])
def test_attention_head_split_orders(legacy_order):
    """Both qkv layouts against the attention written out with explicit matmuls."""
    torch.manual_seed(0)
    block = AttentionBlock(64, num_heads=4, legacy_order=legacy_order)
    torch.nn.init.normal_(block.proj_out.weight, std=0.1)
    x = torch.randn(2, 64, 4, 4)
    b, c, heads, ch = 2, 64, 4, 16
    with torch.no_grad():
        qkv = block.qkv(block.norm(x.reshape(b, c, -1)))
        if legacy_order:
            q, k, v = qkv.reshape(b * heads, 3 * ch, 16).split(ch, dim=1)
        else:
            q, k, v = (part.reshape(b * heads, ch, 16) for part in qkv.chunk(3, dim=1))
        weight = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(ch), dim=-1)
        attended = torch.einsum("bts,bcs->bct", weight, v).reshape(b, c, 16)
        expected = x + block.proj_out(attended).reshape(b, c, 4, 4)
        assert max_diff(block(x), expected) <= 1e-5


# -- FFHQ-256 layout ---------------------------------------------------------------------------
def test_ffhq256_state_dict_layout():
    reference = json.loads((DATA / "ffhq256_state_dict_shapes.json").read_text())
    config = json.loads((DATA / "ffhq256_config.json").read_text())
    with torch.device("meta"):
        unet = ADMUNet.from_config(config)
    layout = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in unet.state_dict().items()]
    assert layout == reference["state_dict"]
    assert sum(p.numel() for p in unet.parameters()) == reference["total_params"] == 552_814_086
    assert len(unet.input_blocks) == 18
    assert unet.feature_taps() == [f"in{i}" for i in range(18)] + ["mid"]
    assert unet.feature_channels()["mid"] == 1024


def test_builtin_ffhq256_config_matches_reference():
    reference = resolve_adm_config(json.loads((DATA / "ffhq256_config.json").read_text()))
    builtin = resolve_adm_config(adm_config_ffhq256())
    assert builtin.pop("dropout") == 0.0  # Uni-DAD's value; the reference flags say 0.1
    reference.pop("dropout")
    assert builtin == reference
    # the script_util form (pixel resolutions, auto channel_mult) resolves to the same network
    flags = {"image_size": 256, "num_channels": 256, "attention_resolutions": "32,16,8", "channel_mult": "",
             "num_head_channels": 64, "num_heads": 4, "learn_sigma": True, "num_res_blocks": 2}
    assert resolve_adm_config(flags)["attention_ds"] == [8, 16, 32]
    assert resolve_adm_config(flags)["channel_mult"] == [1, 1, 2, 2, 4, 4]


# -- the EDM wrapper ----------------------------------------------------------------------------
def test_denoise_is_vp_eps_by_hand(tiny_denoiser, tiny_unet):
    torch.manual_seed(3)
    x = torch.randn(2, 3, 32, 32)
    sigma = torch.tensor([0.5, 80.0])
    with torch.no_grad():
        x_t = x / torch.sqrt(1 + sigma**2)[:, None, None, None]
        eps = tiny_unet(x_t, torch.tensor([144, 930]))[:, :3]
        # compared as the implied eps: at sigma = 80 float32 rounding in eps is magnified 80 times in x0
        for sigma_shape in [(2,), (2, 1, 1, 1)]:
            x0 = tiny_denoiser.denoise(x, sigma.reshape(sigma_shape))
            assert max_diff((x - x0) / sigma[:, None, None, None], eps) <= TOL
    assert tiny_denoiser.backbone_id == "adm"
    assert tiny_denoiser.image_shape == tiny_denoiser.latent_shape == (3, 32, 32)


def test_sigma_to_step_matches_uni_dad_table(tiny_denoiser):
    table = {0.002: 0, 0.5: 144, 1.0: 258, 6.32: 604, 80.0: 930, 0.0126: 0, 0.0127: 1}
    steps = tiny_denoiser.sigma_to_t(torch.tensor(list(table), dtype=torch.float32))
    assert steps.tolist() == list(table.values())
    grid = karras_grid().float()
    on_grid = tiny_denoiser.sigma_to_t(grid)
    assert on_grid[[0, 20, 100, 250, 500, 750, 980, 999]].tolist() == [0, 0, 1, 48, 442, 752, 918, 930]
    assert int((on_grid == 0).sum()) == 85 and len(set(on_grid.tolist())) == 718
    # the schedule's own range; Uni-DAD's sigmas still come from the Karras grid 0.002..80
    lo, hi = tiny_denoiser.schedule_sigma_range()
    assert lo == pytest.approx(0.0100005, rel=1e-3) and hi == pytest.approx(157.41, rel=1e-3)
    assert (tiny_denoiser.sigma_min, tiny_denoiser.sigma_max) == (0.002, 80.0)


def test_features_at_vp_input(tiny_denoiser, tiny_unet):
    torch.manual_seed(4)
    x = torch.randn(2, 3, 32, 32)
    sigma = torch.tensor([1.0, 6.32])
    taps = tiny_denoiser.feature_taps()
    assert len(taps) == len(tiny_unet.input_blocks) + 1 and taps[-1] == "mid"
    with torch.no_grad():
        feats = tiny_denoiser.features(x, sigma)
        reference = tiny_unet.encoder_features(x / torch.sqrt(1 + sigma**2)[:, None, None, None], torch.tensor([258, 604]))
    sizes = {"in0": 32, "in1": 32, "in2": 16, "in3": 16, "mid": 16}
    assert list(feats) == taps
    for tap, h in feats.items():
        assert h.shape == (2, tiny_denoiser.feature_channels()[tap], sizes[tap], sizes[tap])
        assert max_diff(h, reference[tap]) <= TOL


def test_features_run_only_as_deep_as_needed(tiny_denoiser):
    unet = tiny_denoiser.unet
    calls = []
    hooks = [m.register_forward_hook(lambda *_, name=name: calls.append(name))
             for name, m in [("in1", unet.input_blocks[1]), ("in2", unet.input_blocks[2]), ("mid", unet.middle_block)]]
    try:
        with torch.no_grad():
            feats = tiny_denoiser.features(torch.randn(1, 3, 32, 32), 1.0, taps=["in1", "in0"])
    finally:
        for hook in hooks:
            hook.remove()
    assert list(feats) == ["in1", "in0"] and calls == ["in1"]
    with pytest.raises(KeyError, match="unknown ADM feature taps"):
        tiny_denoiser.features(torch.randn(1, 3, 32, 32), 1.0, taps=["enc0"])


# -- loader errors ------------------------------------------------------------------------------
def test_missing_checkpoint_says_how_to_fetch(tmp_path):
    with pytest.raises(FileNotFoundError, match="unidad weights fetch adm_ffhq256") as err:
        load_adm_checkpoint(tmp_path / "ffhq.pt")
    assert "ddpm-segmentation/models/ddpm_checkpoints/ffhq.pt" in str(err.value)
    assert "\n" not in str(err.value)


def test_key_mismatch_lists_keys(tmp_path, tiny_config, parity):
    weights = {k.removeprefix("model."): v for k, v in parity.items() if k.startswith("model.")}
    weights["extra.weight"] = weights.pop("out.2.weight")
    broken = tmp_path / "broken.pt"
    torch.save(weights, broken)
    with pytest.raises(ValueError, match=r"1 missing \(first: out\.2\.weight\).*1 unexpected \(first: extra\.weight\)"):
        load_adm_checkpoint(broken, tiny_config)


def test_pt_checkpoint_round_trip(tmp_path, tiny_config, parity, tiny_denoiser):
    weights = {k.removeprefix("model."): v for k, v in parity.items() if k.startswith("model.")}
    path = tmp_path / "tiny.pt"
    torch.save(weights, path)
    loaded = load_adm_checkpoint(path, tiny_config).eval()
    assert all(p.requires_grad and p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert max_diff(loaded.denoise(x, 2.0), tiny_denoiser.denoise(x, 2.0)) <= TOL
    # safetensors with only the UNet's keys loads without a prefix too
    save_file(weights, str(tmp_path / "tiny.safetensors"))
    assert isinstance(load_adm_checkpoint(tmp_path / "tiny.safetensors", tiny_config), ADMDenoiser)
