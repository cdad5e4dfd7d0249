"""Backbone registry: a config `backbone: {kind, params}` -> a Denoiser factory."""
from __future__ import annotations

from typing import Any, Callable

from unidad.backbones.base import Conditioning, Denoiser  # noqa: F401
from unidad.registry import Registry

BACKBONES: Registry[Callable[..., Denoiser]] = Registry("backbone")


@BACKBONES.register("tiny")
def _tiny(**params: Any) -> Denoiser:
    from unidad.backbones.tiny import TinyUNet

    return TinyUNet(**params)


@BACKBONES.register("adm")
def _adm(config: dict | str = "ffhq256", **unused: Any) -> Denoiser:
    """guided-diffusion ADM; `config` is "ffhq256" or a dict of script_util flags / settled values.
    Random weights: the source teacher's weights are loaded by the stage that needs them."""
    from unidad.backbones.adm import ADMDenoiser, ADMUNet, adm_config_ffhq256, resolve_adm_config

    cfg = adm_config_ffhq256() if config == "ffhq256" else resolve_adm_config(config)
    return ADMDenoiser(ADMUNet.from_config(cfg))


@BACKBONES.register("sd15")
def _sd15(model_dir: str = "", **unused: Any) -> Denoiser:
    """Stable Diffusion 1.5 from a local diffusers folder (staged with `unidad weights fetch sd15`)."""
    from unidad.backbones.sd15 import load_sd15
    from unidad.weights import resolve

    return load_sd15(model_dir or resolve("sd15"))


def build_backbone(spec: dict[str, Any]) -> Denoiser:
    """spec = {"kind": name, "params": {...}} as in the config's `backbone` section."""
    factory = BACKBONES.get(spec.get("kind", "tiny"))
    return factory(**(spec.get("params") or {}))


def backbone_image_size(spec: dict[str, Any]) -> int:
    kind = spec["kind"]
    params = spec.get("params") or {}
    if kind == "tiny":
        return int(params.get("image_size", 16))
    if kind == "adm":
        return 256 if params.get("config", "ffhq256") == "ffhq256" else int(params["config"]["image_size"])
    return int(params.get("image_size", 512))


def load_source_weights(spec: dict[str, Any], path) -> Denoiser:
    from pathlib import Path

    kind = spec["kind"]
    if kind == "adm":
        from unidad.backbones.adm import load_adm_checkpoint

        return load_adm_checkpoint(path, build_backbone(spec).unet.config)
    if kind == "sd15":
        from unidad.backbones.sd15 import load_sd15

        return load_sd15(path)
    from unidad.weights_file import read_weights

    model = build_backbone(spec)
    model.load_state_dict(next(iter(read_weights(Path(path)).values())), strict=True)
    return model
