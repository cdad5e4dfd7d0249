"""The backbone registry: every kind says how it is built, the image size its params imply and how
staged source weights load, behind build_backbone, backbone_image_size and load_source_weights."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from unidad.backbones import backbone_image_size, build_backbone, load_source_weights
from unidad.weights_file import export_weights
from unidad.registry import UnknownNameError

ADM_DATA = Path(__file__).resolve().parent / "data" / "adm"
TINY = {"kind": "tiny", "params": {"image_size": 8, "channels": [8, 16], "emb_dim": 16}}


@pytest.fixture(scope="module")
def tiny_adm():
    return {"kind": "adm", "params": {"config": json.loads((ADM_DATA / "tiny_parity_config.json").read_text())}}


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_image_size_comes_from_each_kinds_params(tiny_adm):
    assert backbone_image_size(TINY) == 8
    assert backbone_image_size({"kind": "tiny"}) == 16  # TinyUNet's default
    assert backbone_image_size({"kind": "adm", "params": {"config": "ffhq256"}}) == 256
    assert backbone_image_size({"kind": "adm", "params": {}}) == 256
    assert backbone_image_size(tiny_adm) == 32
    assert backbone_image_size({"kind": "sd15", "params": {}}) == 512
    assert backbone_image_size({"kind": "sd15", "params": {"image_size": 256}}) == 256


def test_image_size_is_that_of_the_built_model(tiny_adm):
    for spec in (TINY, tiny_adm):
        assert build_backbone(spec).image_shape[1:] == (backbone_image_size(spec),) * 2


def test_tiny_source_weights_are_a_unidad_weights_file(tmp_path):
    torch.manual_seed(0)
    source = build_backbone(TINY)
    export_weights(tmp_path / "source.safetensors", {"model": source})
    assert _same_state(load_source_weights(TINY, tmp_path / "source.safetensors"), source)


def test_adm_source_weights_are_a_guided_diffusion_state_dict(tmp_path, tiny_adm):
    from unidad.backbones.adm import load_adm_checkpoint

    parity = load_file(str(ADM_DATA / "tiny_parity.safetensors"))
    unet_only = {k.removeprefix("model."): v for k, v in parity.items() if k.startswith("model.")}
    save_file(unet_only, str(tmp_path / "adm.safetensors"))
    loaded = load_source_weights(tiny_adm, str(tmp_path / "adm.safetensors"))
    assert _same_state(loaded, load_adm_checkpoint(tmp_path / "adm.safetensors", tiny_adm["params"]["config"]))
    assert _same_state(loaded.unet, load_adm_checkpoint(ADM_DATA / "tiny_parity.safetensors",
                                                        tiny_adm["params"]["config"], key_prefix="model.").unet)


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="known backbones: adm, sd15, tiny"):
        backbone_image_size({"kind": "dit"})
