"""Discriminator heads on the fake-score network's encoder features.

Uni-DAD's critic reads several feature maps of `fake`'s encoder, one small head per tap
(`MultiHeadDiscriminator`); the single-head ablation is DMD2's classifier branch on the bottleneck
only (`SingleHeadDiscriminator`). Both take the `{tap: (B, C, h, w)}` dict of
`Denoiser.features` and return a list of logit tensors, one per head.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from unidad.backbones.base import Conditioning, Denoiser

HEAD_TYPES = ("global", "patch")
DISCRIMINATOR_KINDS = ("multi", "single")
_LAST_K_PREFIX = "last_k:"


def select_taps(available: Sequence[str], selection: str | Sequence[str]) -> list[str]:
    """Which feature taps get a head.

    selection: "all"; "last_k:N" (the N deepest taps); or explicit tap names (a list, or one
    comma-separated string). The result follows the backbone's order, shallow to deep.
    """
    available = list(available)
    if not available:
        raise ValueError("the backbone exposes no feature taps")
    if isinstance(selection, str):
        text = selection.strip()
        if text == "all":
            return available
        if text.startswith(_LAST_K_PREFIX):
            count_text = text[len(_LAST_K_PREFIX):].strip()
            if not count_text.isdigit() or not 1 <= int(count_text) <= len(available):
                raise ValueError(f"bad tap selection {selection!r}: N in 'last_k:N' must be an integer in "
                                 f"1..{len(available)} for this backbone")
            return available[-int(count_text):]
        names = [name.strip() for name in text.split(",") if name.strip()]
    else:
        names = [str(name) for name in selection]
    if not names:
        raise ValueError("empty tap selection; use 'all', 'last_k:N' or a list of tap names")
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ValueError(f"unknown feature taps {unknown}; this backbone has {available}")
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"feature taps {duplicated} selected more than once; list each tap once")
    return [name for name in available if name in names]


def _group_count(channels: int, most: int = 32) -> int:
    return next(g for g in range(min(most, channels), 0, -1) if channels % g == 0)


class GlobalHead(nn.Module):
    """1x1 conv C -> 1, then the spatial mean: one logit per sample, [B]."""

    def __init__(self, channels: int):
        super().__init__()
        self.to_logit = nn.Conv2d(channels, 1, kernel_size=1)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.to_logit(feature).mean(dim=(1, 2, 3))


class PatchHead(nn.Module):
    """3x3 conv C -> C/2, SiLU, 1x1 conv -> 1: one logit per spatial position, [B, h*w]."""

    def __init__(self, channels: int):
        super().__init__()
        hidden = max(1, channels // 2)
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=3, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, 1, kernel_size=1),
        )

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.body(feature).flatten(start_dim=1)


def _missing_taps_error(wanted: Sequence[str], features: dict[str, torch.Tensor]) -> KeyError:
    missing = [t for t in wanted if t not in features]
    return KeyError(f"feature maps {missing} were not computed (got {sorted(features)}); "
                    f"request them with features(..., taps=disc.taps)")


class MultiHeadDiscriminator(nn.Module):
    """One head per selected tap; forward returns the heads' logits in tap order."""

    def __init__(self, tap_channels: dict[str, int], taps: Sequence[str], head_type: str = "global"):
        super().__init__()
        if head_type not in HEAD_TYPES:
            raise ValueError(f"unknown head type {head_type!r}; choose one of {', '.join(HEAD_TYPES)}")
        taps = list(taps)
        if not taps:
            raise ValueError("a multi-head discriminator needs at least one tap")
        unknown = [t for t in taps if t not in tap_channels]
        if unknown:
            raise ValueError(f"no channel count for taps {unknown}; known taps: {list(tap_channels)}")
        self.taps = taps
        self.head_type = head_type
        head_class = GlobalHead if head_type == "global" else PatchHead
        # A list, not a ModuleDict: tap names may contain dots, which module names may not.
        self.heads = nn.ModuleList(head_class(int(tap_channels[t])) for t in taps)

    def forward(self, features: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        if any(t not in features for t in self.taps):
            raise _missing_taps_error(self.taps, features)
        return [head(features[tap]) for tap, head in zip(self.taps, self.heads)]


class SingleHeadDiscriminator(nn.Module):
    """DMD2-style classifier branch on the bottleneck feature map.

    A few (stride-2 conv, GroupNorm, SiLU) blocks at the bottleneck width, then a global average
    pool and a 1x1 conv to one logit per sample. Stride-2 3x3 convs with padding 1 keep a 1x1 map
    at 1x1, so any bottleneck size >= 1 works.
    """

    def __init__(self, channels: int, tap: str, downsample_blocks: int = 2):
        super().__init__()
        if downsample_blocks < 0:
            raise ValueError(f"downsample_blocks must be >= 0, got {downsample_blocks}")
        self.taps = [tap]
        blocks: list[nn.Module] = []
        for _ in range(downsample_blocks):
            blocks += [
                nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1),
                nn.GroupNorm(_group_count(channels), channels),
                nn.SiLU(),
            ]
        self.body = nn.Sequential(*blocks)
        self.to_logit = nn.Conv2d(channels, 1, kernel_size=1)

    def forward(self, features: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        if self.taps[0] not in features:
            raise _missing_taps_error(self.taps, features)
        pooled = F.adaptive_avg_pool2d(self.body(features[self.taps[0]]), 1)
        return [self.to_logit(pooled).flatten()]


def build_discriminator(
    backbone: Denoiser,
    kind: str = "multi",
    taps: str | Sequence[str] = "all",
    head_type: str = "global",
) -> nn.Module:
    """The critic for `backbone`'s features.

    kind "multi": one `head_type` head per tap chosen by `taps` (see `select_taps`).
    kind "single": DMD2's bottleneck classifier; `taps` and `head_type` do not apply to it.
    """
    channels = backbone.feature_channels()
    if kind == "multi":
        return MultiHeadDiscriminator(channels, select_taps(backbone.feature_taps(), taps), head_type)
    if kind == "single":
        bottleneck = backbone.bottleneck_tap()
        return SingleHeadDiscriminator(channels[bottleneck], bottleneck)
    raise ValueError(f"unknown discriminator kind {kind!r}; choose one of {', '.join(DISCRIMINATOR_KINDS)}")


def critic_logits(
    fake_net: Denoiser,
    disc: nn.Module,
    x: torch.Tensor,
    sigma,
    cond: Conditioning | None = None,
) -> list[torch.Tensor]:
    """The heads' logits on fake_net's features of the (already noised) input x at sigma."""
    return disc(fake_net.features(x, sigma, cond, taps=disc.taps))
