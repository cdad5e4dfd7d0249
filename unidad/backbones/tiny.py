"""A small pixel-space UNet with EDM preconditioning: the demo's and the tests' backbone.

Same shape as the real backbones where it matters to the methods: an encoder of resolution levels
(each level's output is a feature tap for the discriminator heads), a middle block (the bottleneck
tap), a decoder with skip connections, a noise-level embedding with scale-shift norm.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from unidad.backbones.base import Conditioning, Denoiser, bcast


def _groups(ch: int) -> int:
    for g in (8, 4, 2, 1):
        if ch % g == 0:
            return g
    return 1


class NoiseEmbedding(nn.Module):
    """Sinusoidal embedding of c_noise = ln(sigma) / 4, then an MLP."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.SiLU(), nn.Linear(dim * 2, dim * 2))

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=c_noise.device, dtype=torch.float32) / half)
        args = (c_noise.float() * 250.0)[:, None] * freqs[None]  # c_noise ~ [-1.6, 1.1] -> spread it out
        return self.mlp(torch.cat([args.cos(), args.sin()], dim=1))


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class TinyUNet(Denoiser):
    """EDM-preconditioned UNet for small RGB images.

    channels[i] is the width of encoder level i (resolution image_size / 2**i). Taps: `enc{i}` for
    every level, then `mid`.
    """

    backbone_id = "tiny"

    def __init__(
        self,
        image_size: int = 16,
        in_channels: int = 3,
        channels: Sequence[int] = (32, 64, 64),
        emb_dim: int = 64,
        sigma_data: float = 0.5,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
    ):
        super().__init__()
        if image_size % (2 ** (len(channels) - 1)):
            raise ValueError(f"image_size {image_size} is not divisible by 2**{len(channels) - 1}")
        self.config = dict(
            image_size=image_size, in_channels=in_channels, channels=list(channels), emb_dim=emb_dim,
            sigma_data=sigma_data, sigma_min=sigma_min, sigma_max=sigma_max,
        )
        self.sigma_data, self.sigma_min, self.sigma_max = sigma_data, sigma_min, sigma_max
        self.image_shape = self.latent_shape = (in_channels, image_size, image_size)
        self.embed = NoiseEmbedding(emb_dim)
        e = emb_dim * 2
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.enc = nn.ModuleList()
        prev = channels[0]
        for ch in channels:
            self.enc.append(ResBlock(prev, ch, e))
            prev = ch
        self.mid = ResBlock(prev, prev, e)
        self.dec = nn.ModuleList()
        for ch in reversed(channels):
            self.dec.append(ResBlock(prev + ch, ch, e))
            prev = ch
        self.norm_out = nn.GroupNorm(_groups(prev), prev)
        self.conv_out = nn.Conv2d(prev, in_channels, 3, padding=1)
        self._taps = [f"enc{i}" for i in range(len(channels))] + ["mid"]
        self._tap_channels = {f"enc{i}": ch for i, ch in enumerate(channels)} | {"mid": channels[-1]}

    # -- EDM preconditioning -------------------------------------------------------------------
    def _precond(self, sigma: torch.Tensor, x: torch.Tensor):
        sd = self.sigma_data
        s = bcast(sigma, x)
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1 / (s**2 + sd**2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def _encode(self, h: torch.Tensor, emb: torch.Tensor, upto: int | None = None):
        """Encoder levels (downsampling between levels). Returns the list of level outputs."""
        skips = []
        h = self.conv_in(h)
        for i, block in enumerate(self.enc):
            if i > 0:
                h = F.avg_pool2d(h, 2)
            h = block(h, emb)
            skips.append(h)
            if upto is not None and i >= upto:
                break
        return skips

    def _network(self, x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        emb = self.embed(c_noise)
        skips = self._encode(x_in, emb)
        h = self.mid(skips[-1], emb)
        for i, block in enumerate(self.dec):
            skip = skips[len(skips) - 1 - i]
            if h.shape[-1] != skip.shape[-1]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))

    def _denoise(self, x, sigma, cond):
        c_skip, c_out, c_in, c_noise = self._precond(sigma, x)
        f = self._network(c_in * x, c_noise)
        return c_skip * x + c_out * f.to(x.dtype)

    # -- feature taps --------------------------------------------------------------------------
    def feature_taps(self) -> list[str]:
        return list(self._taps)

    def feature_channels(self) -> dict[str, int]:
        return dict(self._tap_channels)

    def features(self, x, sigma, cond: Conditioning | None = None, taps=None):
        from unidad.backbones.base import as_sigma_batch

        taps = list(taps) if taps is not None else self.feature_taps()
        unknown = [t for t in taps if t not in self._tap_channels]
        if unknown:
            raise KeyError(f"unknown feature taps {unknown}; this backbone has {self.feature_taps()}")
        sigma = as_sigma_batch(sigma, x)
        _, _, c_in, c_noise = self._precond(sigma, x)
        emb = self.embed(c_noise)
        need_mid = "mid" in taps
        deepest = len(self.enc) - 1 if need_mid else max(int(t[3:]) for t in taps)
        skips = self._encode(c_in * x, emb, upto=deepest)
        out = {f"enc{i}": h for i, h in enumerate(skips) if f"enc{i}" in taps}
        if need_mid:
            out["mid"] = self.mid(skips[-1], emb)
        return out
