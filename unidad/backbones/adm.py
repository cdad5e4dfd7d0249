"""The guided-diffusion ADM UNet (FFHQ-256 source model of the FSIG experiments) and its EDM wrapper.

`ADMUNet` reproduces the parameter layout of guided-diffusion's `UNetModel` exactly, so the public
`ffhq.pt` (yandex-research/ddpm-segmentation) loads with strict=True, and its forward matches the
reference numerically (tests/data/adm holds a parity case). `ADMDenoiser` puts it behind the EDM
denoiser contract through `VPEpsAdapter`: eps-prediction, linear beta schedule of 1000 steps,
sigma -> nearest-abar integer step, learned-variance channels dropped.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from unidad.backbones.base import (SIGMA_MAX, SIGMA_MIN, Conditioning, VPEpsAdapter, as_sigma_batch,
                                   linear_beta_alphas_cumprod)

FFHQ256_URL = "https://storage.yandexcloud.net/yandex-research/ddpm-segmentation/models/ddpm_checkpoints/ffhq.pt"
FETCH_HINT = f"fetch it with `unidad weights fetch adm_ffhq256` or download {FFHQ256_URL}"

# guided-diffusion's script_util picks the channel multipliers from the image size when none are given.
_DEFAULT_CHANNEL_MULT = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
}


def adm_config_ffhq256() -> dict:
    """Architecture and schedule of `ffhq.pt` (ddpm-segmentation's LSUN-style flags, resolved).

    dropout is 0.0 as in Uni-DAD (ddpm-segmentation trained with 0.1); it only matters in train mode.
    use_fp16 is not a model option here: the UNet runs in its parameters' dtype (float32), under
    autocast when bf16 is wanted, as Uni-DAD does.
    """
    return {
        "image_size": 256,
        "in_channels": 3,
        "model_channels": 256,
        "out_channels": 6,
        "learn_sigma": True,
        "num_res_blocks": 2,
        "attention_ds": [8, 16, 32],
        "channel_mult": [1, 1, 2, 2, 4, 4],
        "num_heads": 4,
        "num_head_channels": 64,
        "num_heads_upsample": -1,
        "dropout": 0.0,
        "conv_resample": True,
        "resblock_updown": True,
        "use_scale_shift_norm": True,
        "use_new_attention_order": False,
        "num_classes": None,
        "diffusion_steps": 1000,
        "noise_schedule": "linear",
    }


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of (integer or fractional) steps: cosines first, then sines."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps.float()[:, None] * freqs[None]
    emb = torch.cat([args.cos(), args.sin()], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32) computed in float32 whatever the activation dtype (as the reference does)."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


def _zero_(module: nn.Module) -> nn.Module:
    # The reference zero-initialises every residual branch's last layer; kept so that a freshly built
    # model behaves the same (real use always loads weights over it).
    for p in module.parameters():
        p.detach().zero_()
    return module


class Resample(nn.Module):
    """Parameter-free 2x nearest upsampling or 2x2 average pooling (used inside up/down ResBlocks)."""

    def __init__(self, up: bool):
        super().__init__()
        self.up = up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest") if self.up else F.avg_pool2d(x, 2)


class Downsample(nn.Module):
    """Stand-alone down-sampler (resblock_updown=False); `op` keeps the reference parameter name."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Stand-alone up-sampler (resblock_updown=False); `conv` keeps the reference parameter name."""

    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if use_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return x if self.conv is None else self.conv(x)


class ResBlock(nn.Module):
    """Residual block conditioned on the step embedding, optionally resampling (up or down)."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_scale_shift_norm: bool = True,
        up: bool = False,
        down: bool = False,
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.resample = Resample(up=True) if up else Resample(up=False) if down else None
        emb_out = 2 * out_channels if use_scale_shift_norm else out_channels
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_out))
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            _zero_(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        norm, act, conv = self.in_layers
        h = act(norm(x))
        if self.resample is not None:
            # resampling sits between the activation and the conv, on both branches
            h, x = self.resample(h), self.resample(x)
        h = conv(h)
        emb_out = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all spatial positions, with a residual connection.

    legacy_order=True splits the qkv projection per head first (q, k, v interleaved per head), which is
    how the FFHQ checkpoint was trained; False splits into q, k, v first, then into heads.
    """

    def __init__(self, channels: int, num_heads: int, legacy_order: bool = True):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"attention width {channels} is not divisible into {num_heads} heads")
        self.num_heads = num_heads
        self.legacy_order = legacy_order
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = _zero_(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        flat = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(flat))
        head_ch, length = c // self.num_heads, flat.shape[-1]
        if self.legacy_order:
            q, k, v = qkv.reshape(b, self.num_heads, 3 * head_ch, length).split(head_ch, dim=2)
        else:
            q, k, v = qkv.reshape(b, 3, self.num_heads, head_ch, length).unbind(1)
        # (b, heads, ch, T) -> (b, heads, T, ch); default scale 1/sqrt(ch) equals the reference's
        attn = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        h = self.proj_out(attn.transpose(-1, -2).reshape(b, c, length))
        return (flat + h).reshape(b, c, *spatial)


class EmbedSequential(nn.Sequential):
    """A Sequential that hands the step embedding to the ResBlocks among its layers."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


def _heads(channels: int, num_heads: int, num_head_channels: int) -> int:
    if num_head_channels == -1:
        return num_heads
    if channels % num_head_channels:
        raise ValueError(f"attention width {channels} is not divisible by num_head_channels={num_head_channels}")
    return channels // num_head_channels


def _numbers(value, name: str) -> list:
    """A list or a "1,2,4" string of numbers -> ints (floats where fractional, e.g. 0.5)."""
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"ADM config: {name}={value!r} is not a list of numbers (e.g. [1, 1, 2, 2, 4, 4])") from None
    return [int(n) if n.is_integer() else n for n in numbers]


def resolve_adm_config(config: Mapping) -> dict:
    """A guided-diffusion style config (script_util flags or resolved values) -> ADMUNet kwargs.

    Accepts `num_channels` for `model_channels`, the `attention_resolutions` pixel-resolution string
    for `attention_ds`, an empty `channel_mult` (picked from image_size) and `class_cond`. Absent
    network flags take their adm_config_ffhq256() values. Keys that do not describe the network
    (provenance, schedule, fp16) are ignored.
    """
    if "image_size" not in config:
        raise ValueError("ADM config has no image_size; start from adm_config_ffhq256()")
    image_size = int(config["image_size"])
    if int(config.get("dims", 2)) != 2:
        raise ValueError(f"ADM config: dims={config['dims']} is not supported; only 2-D images (dims=2)")
    model_channels = config.get("model_channels", config.get("num_channels"))
    if model_channels is None:
        raise ValueError("ADM config needs model_channels (or num_channels), e.g. 256")

    channel_mult = _numbers(config.get("channel_mult") or [], "channel_mult")
    if not channel_mult:
        if image_size not in _DEFAULT_CHANNEL_MULT:
            raise ValueError(f"ADM config: no default channel_mult for image_size {image_size}; set channel_mult")
        channel_mult = list(_DEFAULT_CHANNEL_MULT[image_size])

    if config.get("attention_ds") is not None:
        attention_ds = _numbers(config["attention_ds"], "attention_ds")
    else:
        resolutions = _numbers(config.get("attention_resolutions", ""), "attention_resolutions")
        attention_ds = [image_size // r for r in resolutions] if resolutions else [8, 16, 32]

    in_channels = int(config.get("in_channels", 3))
    learn_sigma = bool(config.get("learn_sigma", True))
    out_channels = int(config.get("out_channels") or (2 * in_channels if learn_sigma else in_channels))
    if out_channels != (2 * in_channels if learn_sigma else in_channels):
        raise ValueError(
            f"ADM config: out_channels={out_channels} contradicts learn_sigma={learn_sigma} with "
            f"in_channels={in_channels}; fix one of them"
        )
    num_classes = config.get("num_classes")
    if num_classes is None and config.get("class_cond"):
        num_classes = 1000  # guided-diffusion's ImageNet default

    return dict(
        image_size=image_size,
        in_channels=in_channels,
        model_channels=int(model_channels),
        out_channels=out_channels,
        num_res_blocks=int(config.get("num_res_blocks", 2)),
        attention_ds=attention_ds,
        dropout=float(config.get("dropout", 0.0)),
        channel_mult=channel_mult,
        conv_resample=bool(config.get("conv_resample", True)),
        num_classes=None if num_classes is None else int(num_classes),
        num_heads=int(config.get("num_heads", 4)),
        num_head_channels=int(config.get("num_head_channels", 64)),
        num_heads_upsample=int(config.get("num_heads_upsample", -1)),
        use_scale_shift_norm=bool(config.get("use_scale_shift_norm", True)),
        resblock_updown=bool(config.get("resblock_updown", True)),
        use_new_attention_order=bool(config.get("use_new_attention_order", False)),
    )


class ADMUNet(nn.Module):
    """guided-diffusion's UNetModel: x_t [B, C, S, S] and integer steps [B] -> eps (+ variance) channels.

    Encoder feature taps: "in{i}" is the output of input_blocks[i], "mid" that of middle_block.
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int = 3,
        model_channels: int = 256,
        out_channels: int = 6,
        num_res_blocks: int = 2,
        attention_ds: Sequence[int] = (8, 16, 32),
        dropout: float = 0.0,
        channel_mult: Sequence[float] = (1, 1, 2, 2, 4, 4),
        conv_resample: bool = True,
        num_classes: int | None = None,
        num_heads: int = 4,
        num_head_channels: int = 64,
        num_heads_upsample: int = -1,
        use_scale_shift_norm: bool = True,
        resblock_updown: bool = True,
        use_new_attention_order: bool = False,
    ):
        super().__init__()
        if image_size % 2 ** (len(channel_mult) - 1):
            raise ValueError(f"image_size {image_size} is not divisible by 2**{len(channel_mult) - 1} (channel_mult levels)")
        self.config = dict(
            image_size=image_size, in_channels=in_channels, model_channels=model_channels,
            out_channels=out_channels, num_res_blocks=num_res_blocks, attention_ds=list(attention_ds),
            dropout=dropout, channel_mult=list(channel_mult), conv_resample=conv_resample,
            num_classes=num_classes, num_heads=num_heads, num_head_channels=num_head_channels,
            num_heads_upsample=num_heads_upsample, use_scale_shift_norm=use_scale_shift_norm,
            resblock_updown=resblock_updown, use_new_attention_order=use_new_attention_order,
        )
        self.image_size, self.in_channels, self.out_channels = image_size, in_channels, out_channels
        self.model_channels, self.num_classes = model_channels, num_classes
        heads_up = num_heads if num_heads_upsample == -1 else num_heads_upsample
        legacy = not use_new_attention_order
        emb_dim = 4 * model_channels

        def res(ch_in: int, ch_out: int | None = None, **updown) -> ResBlock:
            return ResBlock(ch_in, emb_dim, dropout, ch_out, use_scale_shift_norm, **updown)

        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_dim)

        ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skip_channels = [ch]
        ds = 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_ds:
                    layers.append(AttentionBlock(ch, _heads(ch, num_heads, num_head_channels), legacy))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample)
                self.input_blocks.append(EmbedSequential(down))
                skip_channels.append(ch)
                ds *= 2

        self.middle_block = EmbedSequential(
            res(ch), AttentionBlock(ch, _heads(ch, num_heads, num_head_channels), legacy), res(ch)
        )
        self._tap_channels = {f"in{i}": c for i, c in enumerate(skip_channels)} | {"mid": ch}

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_ds:
                    layers.append(AttentionBlock(ch, _heads(ch, heads_up, num_head_channels), legacy))
                if level and i == num_res_blocks:
                    layers.append(res(ch, ch, up=True) if resblock_updown else Upsample(ch, conv_resample))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))

        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), _zero_(nn.Conv2d(ch, out_channels, 3, padding=1)))

    @classmethod
    def from_config(cls, config: Mapping) -> "ADMUNet":
        return cls(**resolve_adm_config(config))

    # -- forward ---------------------------------------------------------------------------------
    def embed(self, timesteps: torch.Tensor, batch: int, y: torch.Tensor | None = None) -> torch.Tensor:
        """The step (and class) embedding fed to every ResBlock, [B, 4 * model_channels]."""
        timesteps = torch.as_tensor(timesteps)
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(batch)
        if timesteps.shape != (batch,):
            raise ValueError(f"timesteps must have shape [{batch}] (one step per image), got {list(timesteps.shape)}")
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(self.time_embed[0].weight.dtype))
        if (y is None) != (self.num_classes is None):
            raise ValueError(
                "class labels are required by a class-conditional ADM and refused by an unconditional one "
                f"(num_classes={self.num_classes}, labels given: {y is not None})"
            )
        if y is not None:
            emb = emb + self.label_emb(y)
        return emb

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(timesteps, x.shape[0], y)
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)

    # -- encoder features ----------------------------------------------------------------------
    def feature_taps(self) -> list[str]:
        return list(self._tap_channels)

    def feature_channels(self) -> dict[str, int]:
        return dict(self._tap_channels)

    def encoder_features(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        taps: Sequence[str] | None = None,
        y: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """{tap: feature map} in the requested order; runs the encoder only as deep as the deepest tap."""
        taps = self.feature_taps() if taps is None else list(taps)
        unknown = [t for t in taps if t not in self._tap_channels]
        if unknown:
            raise KeyError(f"unknown ADM feature taps {unknown}; known taps: in0..in{len(self.input_blocks) - 1}, mid")
        wanted = set(taps)
        if "mid" in wanted:
            depth = len(self.input_blocks)
        else:
            depth = 1 + max((int(t[2:]) for t in wanted), default=-1)
        emb = self.embed(timesteps, x.shape[0], y)
        found = {}
        h = x
        for i in range(depth):
            h = self.input_blocks[i](h, emb)
            if f"in{i}" in wanted:
                found[f"in{i}"] = h
        if "mid" in wanted:
            found["mid"] = self.middle_block(h, emb)
        return {t: found[t] for t in taps}


class ADMDenoiser(VPEpsAdapter):
    """An ADMUNet as an EDM denoiser: D(x, sigma) = x - sigma * eps(x / sqrt(1 + sigma^2), t(sigma)).

    t(sigma) is the step of the linear schedule whose float32 abar is nearest 1 / (1 + sigma^2), so
    sigma < ~0.01265 all map to step 0 and sigma = 80 maps to step 930. The schedule's own range is
    (0.0100, 157.4) (`schedule_sigma_range`); `sigma_min`/`sigma_max` are nevertheless EDM's 0.002..80
    because Uni-DAD's FSIG code draws every sigma from that Karras grid and samples from 80: the top
    lies inside the schedule, and the bottom below 0.0127 maps to step 0 as in the reference adapter.
    """

    backbone_id = "adm"

    def __init__(self, unet: ADMUNet, diffusion_steps: int = 1000):
        super().__init__()
        if unet.out_channels not in (unet.in_channels, 2 * unet.in_channels):
            raise ValueError(f"ADM UNet has {unet.out_channels} output channels; expected eps (+ variance) of {unet.in_channels}")
        self.unet = unet
        self.image_shape = self.latent_shape = (unet.in_channels, unet.image_size, unet.image_size)
        # guided-diffusion scales the linear schedule's ends by 1000 / T
        scale = 1000.0 / diffusion_steps
        self.register_schedule(linear_beta_alphas_cumprod(diffusion_steps, 1e-4 * scale, 0.02 * scale))
        self.sigma_min, self.sigma_max = SIGMA_MIN, SIGMA_MAX

    def _labels(self, cond: Conditioning | None) -> torch.Tensor | None:
        return None if cond is None else cond.class_labels

    def _eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning | None) -> torch.Tensor:
        # the learned-variance channels are of no use to an x0 denoiser
        return self.unet(x_t, t, self._labels(cond))[:, : self.latent_shape[0]]

    def feature_taps(self) -> list[str]:
        return self.unet.feature_taps()

    def feature_channels(self) -> dict[str, int]:
        return self.unet.feature_channels()

    def features(self, x, sigma, cond: Conditioning | None = None, taps=None) -> dict[str, torch.Tensor]:
        sigma = as_sigma_batch(sigma, x)
        return self.unet.encoder_features(self.c_in(sigma, x) * x, self.sigma_to_t(sigma), taps, self._labels(cond))

    def describe(self) -> dict:
        return super().describe() | {"config": dict(self.unet.config)}


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a flat state_dict of tensors (as guided-diffusion saves it)")
    return dict(state)


def _check_layout(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], path: Path) -> None:
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong_shape = [
        f"{k} {list(found[k].shape)} != {list(v.shape)}"
        for k, v in expected.items()
        if k in found and found[k].shape != v.shape
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if items:
                parts.append(f"{len(items)} {label} (first: {', '.join(items[:4])})")
        raise ValueError(f"{path} does not fit the ADM config: {'; '.join(parts)}; check the config matches the checkpoint")


def load_adm_checkpoint(path: str | Path, config: Mapping | None = None, *, key_prefix: str = "") -> ADMDenoiser:
    """A guided-diffusion checkpoint (.pt state_dict or .safetensors) -> float32 ADMDenoiser on CPU.

    config defaults to adm_config_ffhq256(). key_prefix selects and strips a prefix (e.g. "model.")
    when the file holds more than the UNet.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ADM checkpoint {path} not found; {FETCH_HINT}")
    config = adm_config_ffhq256() if config is None else dict(config)
    if config.get("noise_schedule", "linear") != "linear":
        raise ValueError(f"ADM config: noise_schedule={config['noise_schedule']!r} is not supported; only 'linear'")
    state = _read_state_dict(path)
    if key_prefix:
        state = {k[len(key_prefix):]: v for k, v in state.items() if k.startswith(key_prefix)}
    # build without allocating, then adopt the checkpoint's tensors (552M parameters for FFHQ-256)
    with torch.device("meta"):
        unet = ADMUNet.from_config(config)
    _check_layout(unet.state_dict(), state, path)
    unet.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    return ADMDenoiser(unet, diffusion_steps=int(config.get("diffusion_steps", 1000)))
