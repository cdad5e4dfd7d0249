"""Backbone registry: what the harness knows about each backbone kind of the config's `backbone`
section ({kind, params}), so that no other module branches on the kind.

Each kind declares how to build it from its params, the pixel resolution its params imply, how staged
pretrained source weights at a path become a model, and the planning figures `unidad plan` and the
jobs' cluster requests (unidad.job_requests) start from before anything has been measured. The
functions below take the config's `backbone` section (`spec`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from unidad.backbones.base import Conditioning, Denoiser  # noqa: F401
from unidad.registry import Registry


@dataclass(frozen=True)
class BackboneKind:
    """One backbone kind. Every callable takes the config's `backbone.params` as keyword arguments."""

    #: **params -> the model (random weights, unless the kind's staged files are its weights: sd15)
    build: Callable[..., Denoiser]
    #: **params -> side of the square pixel images the model works on (datasets are read at it)
    image_size: Callable[..., int]
    #: (path, **params) -> the model with the staged pretrained source weights found at `path`
    load_source: Callable[..., Denoiser]
    #: stage id -> seconds per training iteration that `unidad plan` assumes before anything is measured
    step_seconds: Mapping[str, float] = field(default_factory=dict)
    #: trains on the CPU (`unidad plan` then assumes no GPU per training job unless resources say so)
    cpu_only: bool = False
    # What a job's cluster request starts from before finished jobs are measured (unidad.job_requests):
    #: sampling: seconds per image per network evaluation, at the config's evaluation batch size
    image_step_seconds: float = 0.02
    #: a metrics job: seconds per generated image and NFE for every metric but Intra-LPIPS (features)
    metric_image_seconds: float = 0.02
    #: a metrics job: seconds per generated image and NFE for Intra-LPIPS (assignment to the nearest shot
    #: and the pairs within clusters: about 25 distance evaluations per image)
    lpips_image_seconds: float = 1.5
    #: a job's fixed cost: interpreter, torch, building the model and loading its weights
    startup_seconds: float = 90.0
    #: peak host memory of a job's process beside the images it holds (torch, the model, its weights file)
    host_mem_mb: float = 7000.0


BACKBONES: Registry[BackboneKind] = Registry("backbone")


def register_backbone(name: str, kind: BackboneKind) -> BackboneKind:
    return BACKBONES.add(name, kind)


def backbone_kind(spec: Mapping[str, Any]) -> BackboneKind:
    """The registered kind of a config's `backbone` section (kind defaults to tiny, as in the schema)."""
    return BACKBONES.get(spec.get("kind", "tiny"))


def _params(spec: Mapping[str, Any]) -> dict[str, Any]:
    return dict(spec.get("params") or {})


def build_backbone(spec: Mapping[str, Any]) -> Denoiser:
    """spec = {"kind": name, "params": {...}} as in the config's `backbone` section."""
    return backbone_kind(spec).build(**_params(spec))


def backbone_image_size(spec: Mapping[str, Any]) -> int:
    """Side of the square pixel images of the backbone `spec` describes."""
    return int(backbone_kind(spec).image_size(**_params(spec)))


def load_source_weights(spec: Mapping[str, Any], path: str | Path) -> Denoiser:
    """The backbone `spec` describes, with the staged pretrained weights at `path` (ADM: a
    guided-diffusion .pt/.safetensors state_dict; SD1.5: a diffusers folder; tiny: a unidad weights file)."""
    return backbone_kind(spec).load_source(Path(path), **_params(spec))


# ------------------------------------------------------------------------------------- tiny (demo)
def _tiny_build(**params: Any) -> Denoiser:
    from unidad.backbones.tiny import TinyUNet

    return TinyUNet(**params)


def _tiny_load_source(path: Path, **params: Any) -> Denoiser:
    """A unidad weights file (the first module in it) into a freshly built tiny UNet."""
    from unidad.weights_file import read_weights

    model = _tiny_build(**params)
    model.load_state_dict(next(iter(read_weights(path).values())), strict=True)
    return model


# seconds per iteration: the demo's tiny UNet as measured by `make demo` on a 2-core CPU (1 thread per
# job, the teacher 2); sampling and metrics from the same run (README: 40 sampling jobs 234 s for
# 348,000 image-steps, 40 metric jobs 137 s for 100,000 images, a few seconds of each job start-up)
register_backbone("tiny", BackboneKind(
    build=_tiny_build,
    image_size=lambda image_size=16, **unused: image_size,
    load_source=_tiny_load_source,
    step_seconds={"pretrain": 0.066, "ft": 0.04, "student_ft": 0.04, "dmd2": 0.13, "unidad": 0.13},
    cpu_only=True,
    image_step_seconds=0.0004, metric_image_seconds=0.0006, lpips_image_seconds=0.0003,
    startup_seconds=5.0, host_mem_mb=1000.0,
))


# --------------------------------------------------------------------------- guided-diffusion ADM
def _adm_unet_config(config: dict | str = "ffhq256", **unused: Any) -> dict:
    """`config` is "ffhq256" or a dict of script_util flags / settled values -> ADMUNet arguments."""
    from unidad.backbones.adm import adm_config_ffhq256, resolve_adm_config

    return resolve_adm_config(adm_config_ffhq256() if config == "ffhq256" else config)


def _adm_build(**params: Any) -> Denoiser:
    """Random weights: the source teacher's weights are loaded by the stage that needs them."""
    from unidad.backbones.adm import ADMDenoiser, ADMUNet

    return ADMDenoiser(ADMUNet(**_adm_unet_config(**params)))


def _adm_load_source(path: Path, **params: Any) -> Denoiser:
    from unidad.backbones.adm import load_adm_checkpoint

    return load_adm_checkpoint(path, _adm_unet_config(**params))


# seconds per iteration: rough single-GPU (H100-class) figures at the paper's batch sizes. Sampling:
# the 550M-parameter FFHQ-256 UNet, about 1 TFLOP per image-step. Intra-LPIPS: LPIPS-VGG runs on the
# job's CPUs (about 40 GFLOP per image at 256 px, 25 of them per generated image, 8 cores); the other
# metrics' features run on the GPU. Rough until measured: finished jobs' benchmark files replace them.
register_backbone("adm", BackboneKind(
    build=_adm_build,
    image_size=lambda **params: _adm_unet_config(**params)["image_size"],
    load_source=_adm_load_source,
    step_seconds={"pretrain": 1.0, "ft": 0.25, "student_ft": 0.25, "dmd2": 0.22, "unidad": 0.26},
    image_step_seconds=0.02, metric_image_seconds=0.02, lpips_image_seconds=1.5,
    startup_seconds=90.0, host_mem_mb=7000.0,
))


# ------------------------------------------------------------------------------- Stable Diffusion 1.5
def _sd15_build(model_dir: str = "", **unused: Any) -> Denoiser:
    """Stable Diffusion 1.5 from a local diffusers folder (staged with `unidad weights fetch sd15`)."""
    from unidad.weights import resolve

    return _sd15_load_source(Path(model_dir) if model_dir else resolve("sd15"))


def _sd15_load_source(path: Path, **unused: Any) -> Denoiser:
    from unidad.backbones.sd15 import load_sd15

    return load_sd15(path)


# seconds per iteration: rough single-GPU (H100-class) figures at the paper's batch sizes; sampling and
# metrics as for ADM, at 512 px (Intra-LPIPS on the CPU: 4x the pixels of 256 px)
register_backbone("sd15", BackboneKind(
    build=_sd15_build,
    image_size=lambda image_size=512, **unused: image_size,
    load_source=_sd15_load_source,
    step_seconds={"pretrain": 1.0, "ft": 0.35, "student_ft": 0.35, "dmd2": 0.9, "unidad": 1.1},
    image_step_seconds=0.06, metric_image_seconds=0.05, lpips_image_seconds=6.0,
    startup_seconds=150.0, host_mem_mb=12000.0,
))


# ------------------------------------------------------------- miniature SD1.5 (text-conditioned demo)
def _tiny_sd_build(**params: Any) -> Denoiser:
    """SD1.5's classes at demo size, built offline (a fitted VAE from params['vae_dir'] when given)."""
    from unidad.backbones.tiny_sd import build_tiny_sd

    return build_tiny_sd(**params)


def _tiny_sd_load_source(path: Path, **unused: Any) -> Denoiser:
    """A pretrained miniature: a diffusers-format folder like SD1.5's (unidad.backbones.sd15.save_sd15)."""
    from unidad.backbones.tiny_sd import load_tiny_sd

    return load_tiny_sd(path)


# seconds per iteration: rough, from one UNet forward+backward at batch 16 on a loaded 2-core machine
# (about 0.8 s, 32 px images, 16x16 latents); replaced by measurements once the demo has run
register_backbone("tiny_sd", BackboneKind(
    build=_tiny_sd_build,
    image_size=lambda image_size=32, **unused: image_size,
    load_source=_tiny_sd_load_source,
    step_seconds={"pretrain": 0.3, "ft": 0.3, "student_ft": 0.3, "dmd2": 1.0, "unidad": 1.2},
    cpu_only=True,
    image_step_seconds=0.005, metric_image_seconds=0.002, lpips_image_seconds=0.001,
    startup_seconds=20.0, host_mem_mb=1500.0,
))
