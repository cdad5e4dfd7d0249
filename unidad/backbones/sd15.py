"""Stable Diffusion 1.5 (diffusers) behind the denoiser contract.

SD1.5 is a latent, text-conditioned eps-prediction VP model on the "scaled_linear" schedule, so it
is wrapped by `VPEpsAdapter` unchanged: the diffusion runs on VAE latents (scaled by the VAE's
scaling factor), the text encoder's last hidden state is the cross-attention context, and
classifier-free guidance comes from the base class (`Conditioning.uncond_context` + `guidance_scale`).

Feature taps for the discriminator heads: the output of every UNet down block ("down0".."down{n-1}",
the hidden state after the block, i.e. after its downsampler) and the mid block ("mid").

The VAE and text encoder are frozen on construction: no stage trains them, and freezing keeps them
out of any optimizer built from `parameters()` with `requires_grad` filtering or grad-is-None skipping.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from unidad.backbones.base import Conditioning, VPEpsAdapter, as_sigma_batch, scaled_linear_alphas_cumprod

SD15_MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD15_SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer")
# SD1.5's training schedule; a staged scheduler config may restate the betas, and one that is not
# scaled_linear/epsilon is rejected in `load_sd15`.
SD15_BETA_START, SD15_BETA_END, SD15_TRAIN_STEPS = 0.00085, 0.012, 1000


class _StopForward(Exception):
    """Raised from a feature hook once the deepest requested tap is computed (early exit)."""


class SD15Denoiser(VPEpsAdapter):
    """A diffusers UNet2DConditionModel (+ optional AutoencoderKL, CLIP text encoder and tokenizer)
    seen as an EDM x0 denoiser in SD latent space."""

    backbone_id = "sd15"

    def __init__(
        self,
        unet: nn.Module,
        vae: nn.Module | None = None,
        text_encoder: nn.Module | None = None,
        tokenizer=None,
        alphas_cumprod: torch.Tensor | None = None,
    ):
        super().__init__()
        if (text_encoder is None) != (tokenizer is None):
            raise ValueError("text_encoder and tokenizer come together: pass both or neither")
        self.unet = unet
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        for frozen in (vae, text_encoder):
            if frozen is not None:
                frozen.requires_grad_(False)
                frozen.eval()
        self.register_schedule(scaled_linear_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod)

        size = unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        self.latent_shape = (int(unet.config.in_channels), int(h), int(w))
        factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 8
        self.image_shape = (3, factor * h, factor * w)

        channels = list(unet.config.block_out_channels)
        self._tap_channels = {f"down{i}": ch for i, ch in enumerate(channels)} | {"mid": channels[-1]}

    # -- the network ---------------------------------------------------------------------------
    def _context(self, cond: Conditioning | None, batch: int) -> torch.Tensor:
        if cond is None or cond.context is None:
            raise ValueError(
                "SD1.5 is text-conditioned: pass cond=backbone.encode_prompt(prompts) "
                "(use encode_prompt(['']) for the unconditional model)"
            )
        context = cond.context
        if context.shape[0] == 1 and batch > 1:
            context = context.expand(batch, -1, -1)
        if context.shape[0] != batch:
            raise ValueError(
                f"text context has {context.shape[0]} rows for a batch of {batch}; "
                "give one row per sample (or a single row to share)"
            )
        return context.to(device=self.unet.device, dtype=self.unet.dtype)

    def _eps(self, x_t, t, cond):
        context = self._context(cond, x_t.shape[0])
        return self.unet(x_t.to(self.unet.dtype), t, encoder_hidden_states=context).sample

    # -- feature taps --------------------------------------------------------------------------
    def feature_taps(self) -> list[str]:
        return list(self._tap_channels)

    def feature_channels(self) -> dict[str, int]:
        return dict(self._tap_channels)

    def _tap_modules(self) -> dict[str, nn.Module]:
        modules = {f"down{i}": block for i, block in enumerate(self.unet.down_blocks)}
        modules["mid"] = self.unet.mid_block
        return modules

    def features(self, x, sigma, cond: Conditioning | None = None, taps: Sequence[str] | None = None):
        """Tap outputs of the UNet at (x, sigma) with the CONDITIONAL context (no guidance: the heads
        read one network evaluation). The UNet stops after the deepest requested tap."""
        order = self.feature_taps()
        taps = order if taps is None else list(taps)
        unknown = [name for name in taps if name not in self._tap_channels]
        if unknown:
            raise KeyError(f"unknown feature taps {unknown}; this backbone has {order}")
        deepest = max(taps, key=order.index)
        modules = self._tap_modules()
        collected: dict[str, torch.Tensor] = {}

        def make_hook(name: str):
            def hook(_module, _inputs, output):
                # down blocks return (hidden_states, skip_states); the mid block a tensor
                collected[name] = output[0] if isinstance(output, tuple) else output
                if name == deepest:
                    raise _StopForward

            return hook

        handles = [modules[name].register_forward_hook(make_hook(name)) for name in taps]
        sigma = as_sigma_batch(sigma, x)
        try:
            self._eps(self.c_in(sigma, x) * x, self.sigma_to_t(sigma), cond)
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return {name: collected[name] for name in taps}

    # -- pixels <-> latents, text -> conditioning ---------------------------------------------
    def _require(self, part: str):
        module = getattr(self, part)
        if module is None:
            raise RuntimeError(f"this SD15Denoiser was built without a {part}; load it with load_sd15(model_dir)")
        return module

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (B, 3, H, W) -> scaled latents (deterministic: the posterior mean)."""
        vae = self._require("vae")
        posterior = vae.encode(images.to(device=vae.device, dtype=vae.dtype)).latent_dist
        return posterior.mean * vae.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images clamped to [-1, 1] (the contract's pixel range)."""
        vae = self._require("vae")
        scaled = latents.to(device=vae.device, dtype=vae.dtype) / vae.config.scaling_factor
        return vae.decode(scaled).sample.clamp(-1.0, 1.0)

    @torch.no_grad()
    def _embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        tokenizer, text_encoder = self._require("tokenizer"), self._require("text_encoder")
        ids = tokenizer(
            list(prompts),
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return text_encoder(ids.to(text_encoder.device))[0]

    def encode_prompt(self, prompts: Sequence[str], guidance_scale: float = 1.0) -> Conditioning:
        """Prompts -> Conditioning(context (B, L, D), uncond_context = empty-prompt embeddings)."""
        if isinstance(prompts, str):
            raise TypeError("encode_prompt takes a list of prompts, got a single string; wrap it: [prompt]")
        context = self._embed_text(prompts)
        uncond = self._embed_text([""] * len(prompts))
        return Conditioning(context=context, uncond_context=uncond, guidance_scale=float(guidance_scale))


# ---------------------------------------------------------------------------------------------
# loading staged weights
def _missing_weights_error(path: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"SD1.5 {what} not found at {path}; stage the weights with `unidad weights fetch sd15` on a machine "
        f"with internet (model id {SD15_MODEL_ID}) and point model_dir at the diffusers-format folder"
    )


def _has_safetensors(folder: Path) -> bool:
    return any(folder.glob("*.safetensors"))


def _staged_schedule(model_dir: Path) -> torch.Tensor:
    """The training schedule, checked against the staged scheduler config when one is there."""
    config_file = model_dir / "scheduler" / "scheduler_config.json"
    start, end, steps = SD15_BETA_START, SD15_BETA_END, SD15_TRAIN_STEPS
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        schedule = config.get("beta_schedule", "scaled_linear")
        prediction = config.get("prediction_type", "epsilon")
        if schedule != "scaled_linear" or prediction != "epsilon":
            raise ValueError(
                f"{config_file} describes a {schedule}/{prediction} model; the sd15 backbone needs "
                "scaled_linear/epsilon (Stable Diffusion 1.x weights)"
            )
        start = config.get("beta_start", start)
        end = config.get("beta_end", end)
        steps = config.get("num_train_timesteps", steps)
    return scaled_linear_alphas_cumprod(steps, start, end)


def load_sd15(model_dir: str | Path, dtype: torch.dtype = torch.float32) -> SD15Denoiser:
    """SD1.5 from a LOCAL diffusers-format folder (unet/, vae/, text_encoder/, tokenizer/). Never downloads."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    model_dir = Path(model_dir).expanduser()
    if not model_dir.is_dir():
        raise _missing_weights_error(model_dir, "model folder")
    for sub in SD15_SUBFOLDERS:
        if not (model_dir / sub).is_dir():
            raise _missing_weights_error(model_dir / sub, f"'{sub}' subfolder")
    from unidad import standins

    standins.check(model_dir, None, "SD1.5 folder")  # a stamped stand-in only in a rehearsal config
    alphas_cumprod = _staged_schedule(model_dir)  # validate before the slow weight loading

    def load_part(loader, sub: str, **kwargs):
        folder = model_dir / sub
        try:
            return loader.from_pretrained(folder, local_files_only=True, **kwargs)
        except OSError as err:  # a folder without its weight/config files: a partial staging
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise _missing_weights_error(folder, f"'{sub}' files ({reason})") from err

    def weights(sub: str) -> dict:
        return dict(use_safetensors=_has_safetensors(model_dir / sub), torch_dtype=dtype)

    unet = load_part(UNet2DConditionModel, "unet", **weights("unet"))
    vae = load_part(AutoencoderKL, "vae", **weights("vae"))
    text_encoder = load_part(CLIPTextModel, "text_encoder", **weights("text_encoder"))
    tokenizer = load_part(CLIPTokenizer, "tokenizer")
    return SD15Denoiser(unet, vae, text_encoder, tokenizer, alphas_cumprod=alphas_cumprod)


def save_sd15(backbone: SD15Denoiser, model_dir: str | Path) -> None:
    """Write a backbone as a diffusers-format folder that `load_sd15` reads back."""
    model_dir = Path(model_dir)
    backbone.unet.save_pretrained(model_dir / "unet")
    for sub in ("vae", "text_encoder", "tokenizer"):
        part = getattr(backbone, sub)
        if part is None:
            raise ValueError(f"cannot save an SD1.5 folder without its {sub}")
        part.save_pretrained(model_dir / sub)


def read_unet_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A UNet state dict from a .safetensors file or a torch state-dict file (.bin/.pt, read with
    weights_only=True); a `feedforward_model.` or `unet.` key prefix (DMD2's generator) is dropped."""
    path = Path(path)
    if path.suffix == ".safetensors":
        import safetensors.torch

        state = safetensors.torch.load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a UNet state dict (a mapping of tensor names to tensors)")
    for prefix in ("feedforward_model.", "unet."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def replace_unet(backbone: SD15Denoiser, path: str | Path) -> SD15Denoiser:
    """`backbone` with its UNet weights read from `path` (e.g. the public one-step DMD2 SD1.5 student:
    same UNet architecture, the VAE and text encoder stay SD1.5's). Every key must match."""
    state = read_unet_state(path)
    expected = backbone.unet.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path} does not fit the SD1.5 UNet: {len(missing)} missing key(s) {missing[:3]}, "
                         f"{len(unexpected)} unexpected key(s) {unexpected[:3]}; give a diffusers "
                         "UNet2DConditionModel state dict of the same architecture")
    backbone.unet.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)
    return backbone
