"""Procedural image domains with exact oracles: the embedded demo's stand-ins for the paper's data.

  source  (for FFHQ)              one filled shape {circle, square, triangle} in one of 4 saturated
                                  colours on a light, gently varying background; 12 modes.
  near    (for Babies/Sunglasses) the same shapes and layout statistics, restyled: slate background,
                                  another 2-colour palette; 6 modes.
  far     (for MetFaces/AFHQ-Cat) no shapes at all: horizontal / vertical stripes or a checkerboard
                                  in one of 2 colour pairs, random band width and phase; 6 modes.

A tiny pixel-space UNet learns these at 16x16 in minutes on a CPU, and because every image is drawn
from known modes, a rule-based oracle measures quality (is it in the domain at all?) and diversity
(which modes, how often) of generated images exactly, with no learned feature extractor.

Every image is a function of one row of uniform random numbers, so `sample(n, seed)` is a prefix of
`sample(m, seed)` for m > n, and everything is deterministic from the seed.

The oracles' tolerances were set so that own-domain images survive mild blur, noise and colour
drift (tests/test_domains.py), other domains, noise and half-blends of two domains are rejected,
and ragged blobs from an under-trained model mostly fail the shape-template fit.
`Domain.rejection_reasons` tells which rule rejects generated images.

The few-shot and full data sets drawn from a domain are in unidad.data.datasets; the pixel
arithmetic of rendering and judging is in unidad.data.pixels.
"""
from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from unidad.data.folders import write_image_folder  # noqa: F401  (part of this module's API)
from unidad.data.pixels import (
    SHAPE_KINDS,
    as_unit_hwc,
    fit_shape_templates,
    masked_median,
    project_on_segment,
    quantize,
    shape_coverage,
    solid_patches,
)
from unidad.registry import Registry

BASE_SIZE = 16  # layouts are designed at 16x16 and scaled for larger sizes

RGB = tuple[float, float, float]


# --------------------------------------------------------------------------------- argument checks
def check_count(n: int, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {n!r}")
    return int(n)


def check_image_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 12:
        raise ValueError(f"image_size must be an integer >= 12 (demo default 16), got {image_size!r}")
    return int(image_size)


# ----------------------------------------------------------------------------------------- domains
class Domain(ABC):
    """A procedural image domain: a sampler over named modes plus an oracle that recovers them."""

    name: str
    analogue: str  # the real data set this domain stands in for
    modes: list[str]
    params_per_image: int  # uniform numbers that fully determine one image
    factor_sizes: tuple[int, int]  # mode = outer * factor_sizes[1] + inner (e.g. kind, colour)

    def mode_distribution(self) -> np.ndarray:
        """True probability of each mode (uniform)."""
        return np.full(len(self.modes), 1.0 / len(self.modes))

    def uniforms(self, n: int, seed: int, purpose: str) -> np.ndarray:
        """[n, params_per_image] uniforms; row i does not depend on n (prefix property)."""
        entropy = [zlib.crc32(self.name.encode()), zlib.crc32(purpose.encode()), int(seed)]
        return np.random.default_rng(np.random.SeedSequence(entropy)).random((n, self.params_per_image))

    def modes_from_uniform(self, u: np.ndarray) -> np.ndarray:
        return np.minimum((u * len(self.modes)).astype(np.int64), len(self.modes) - 1)

    def sample(self, n: int, seed: int, image_size: int = BASE_SIZE) -> tuple[np.ndarray, np.ndarray]:
        """n images uint8 [n,H,W,3] and their mode indices int64 [n]."""
        n = check_count(n, "n")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        u = self.uniforms(n, seed, "sample")
        modes = self.modes_from_uniform(u[:, 0])
        return self.render(modes, u, check_image_size(image_size)), modes

    @abstractmethod
    def render(self, modes: np.ndarray, u: np.ndarray, image_size: int) -> np.ndarray:
        """Images of the given modes; the rest of each image is drawn from its row of u."""

    def checks(self, images: Any) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The oracle's rules one by one: ({rule: passed bool [N]}, mode each image would have).

        images: uint8 [N,H,W,3] or float [N,3,H,W] in [-1, 1].
        """
        x = as_unit_hwc(images)
        if len(x) == 0:
            return {}, np.zeros(0, np.int64)
        return self._judge(x)

    @abstractmethod
    def _judge(self, x: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """checks() on a non-empty float [N,H,W,3] batch in [0, 1]."""

    def oracle(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """(in_domain bool [N], mode int64 [N], -1 where not in the domain).

        images: uint8 [N,H,W,3] or float [N,3,H,W] in [-1, 1].
        """
        return self._verdict(*self.checks(images))

    @staticmethod
    def _verdict(rules: dict[str, np.ndarray], mode: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not rules:
            return np.zeros(0, bool), mode
        in_domain = np.logical_and.reduce(list(rules.values()))
        return in_domain, np.where(in_domain, mode, -1).astype(np.int64)

    def rejection_reasons(self, images: Any) -> dict[str, float]:
        """Share of the images failing each rule (for diagnosing generated samples)."""
        rules, _ = self.checks(images)
        return {rule: float(1.0 - passed.mean()) for rule, passed in rules.items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self.modes)} modes)"


class ShapeDomain(Domain):
    """One soft-edged filled shape on a smoothly varying background."""

    params_per_image = 16
    colour_jitter = 0.03
    size_range = (6.0, 11.0)  # shape box side at 16x16, before the aspect change
    aspect_range = (0.85, 1.15)
    margin = 1.5  # pixels between the shape's box and the border at 16x16: the border stays background

    # oracle tolerances (unit colour scale); see _judge()
    border_uniform_tol = 0.2
    border_uniform_share = 0.85
    min_contrast = 0.35
    palette_tol = 0.25
    off_segment_tol = 0.2
    max_off_share = 0.03
    max_half_tone_patch = 1  # pixels whose whole 3x3 neighbourhood is half-tone
    # clean shapes ~0.05, mild blur + noise <= 0.15; a small teacher's soft-cornered shapes 0.15-0.28
    # (calibrated on the demo teacher's samples: 0.22 rejected 22% of visibly well-formed shapes);
    # ragged or multi-part blobs lie above 0.3
    max_misfit = 0.28
    area_slack = 0.5  # the shape's area may be this factor below the smallest / above the largest

    def __init__(self, name: str, analogue: str, palette: dict[str, RGB], background: RGB, background_spread: float):
        self.name = name
        self.analogue = analogue
        self.palette_names = list(palette)
        self.palette = np.array(list(palette.values()), dtype=np.float32)
        self.background = np.array(background, dtype=np.float32)
        self.background_spread = background_spread
        self.modes = [f"{kind}/{colour}" for kind in SHAPE_KINDS for colour in self.palette_names]
        self.factor_sizes = (len(SHAPE_KINDS), len(self.palette_names))

    # generation --------------------------------------------------------------------------------
    def render(self, modes: np.ndarray, u: np.ndarray, image_size: int) -> np.ndarray:
        n, s = len(modes), image_size
        scale = s / BASE_SIZE
        kinds, colours = np.divmod(np.asarray(modes, dtype=np.int64), len(self.palette))

        side = (self.size_range[0] + (self.size_range[1] - self.size_range[0]) * u[:, 1]) * scale
        aspect = self.aspect_range[0] + (self.aspect_range[1] - self.aspect_range[0]) * u[:, 2]
        w, h = side * np.sqrt(aspect), side / np.sqrt(aspect)
        margin = self.margin * scale
        cx = margin + w / 2 + (s - 2 * margin - w) * u[:, 3]
        cy = margin + h / 2 + (s - 2 * margin - h) * u[:, 4]
        cov = shape_coverage(kinds, cx.astype(np.float32), cy.astype(np.float32), w, h, s)

        background = self._background(u, s)
        colour = self.palette[colours] + self.colour_jitter * (2 * u[:, 13:16] - 1)
        image = background * (1 - cov[..., None]) + colour[:, None, None, :] * cov[..., None]
        return quantize(image)

    def _background(self, u: np.ndarray, s: int) -> np.ndarray:
        """Base tone +- spread, a faint tint, a linear gradient and a low-frequency ripple."""
        base = self.background + self.background_spread * (2 * u[:, 5:6] - 1) + 0.015 * (2 * u[:, 6:9] - 1)
        coords = (np.arange(s, dtype=np.float32) + 0.5) / s * 2 - 1  # [-1, 1] across the image
        xx, yy = coords[None, None, :], coords[None, :, None]
        angle = 2 * np.pi * u[:, 10, None, None]
        gradient = 0.04 * (2 * u[:, 9, None, None] - 1) * (np.cos(angle) * xx + np.sin(angle) * yy)
        direction = 2 * np.pi * u[:, 11, None, None]
        along = np.cos(direction) * xx + np.sin(direction) * yy
        ripple = 0.015 * np.cos(1.5 * np.pi * along + 2 * np.pi * u[:, 12, None, None])
        return base[:, None, None, :] + (gradient + ripple)[..., None]

    def background_ok(self, tone: np.ndarray) -> np.ndarray:
        """Is the estimated background tone [N,3] this domain's (with room for colour drift)?"""
        return np.abs(tone - self.background).max(1) <= self.background_spread + 0.1

    # oracle --------------------------------------------------------------------------------------
    def _judge(self, x: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Background from the border ring, the shape's colour from its most distinct pixels, every
        pixel on the background->shape colour segment, and the shape's coverage map fits one of the
        three shape templates."""
        n = len(x)
        border = np.concatenate([x[:, 0], x[:, -1], x[:, 1:-1, 0], x[:, 1:-1, -1]], axis=1)
        tone = np.median(border, axis=1)
        border_dev = np.linalg.norm(border - tone[:, None], axis=-1)
        rules = {"background_uniform": (border_dev <= self.border_uniform_tol).mean(1) >= self.border_uniform_share}
        rules["background_tone"] = self.background_ok(tone)

        distance = np.linalg.norm(x - tone[:, None, None], axis=-1)
        peak = distance.reshape(n, -1).max(1)
        rules["shape_present"] = peak >= self.min_contrast
        colour = masked_median(x, distance >= 0.7 * peak[:, None, None])
        colour = np.nan_to_num(colour, nan=-1.0)
        palette_dist = np.linalg.norm(colour[:, None] - self.palette[None], axis=-1)
        colour_index = palette_dist.argmin(1)
        rules["shape_colour"] = palette_dist.min(1) <= self.palette_tol

        t, residual = project_on_segment(x, tone, colour)
        off = (residual > self.off_segment_tol) | (t < -0.25) | (t > 1.25)
        rules["two_colours_only"] = off.reshape(n, -1).mean(1) <= self.max_off_share

        # soft edges are a thin band of half-tones; a solid half-tone patch is a ghost (two shapes
        # blended, a shape fading in or out)
        half_tone_patch = solid_patches(np.abs(t - 0.5) < 0.25).reshape(n, -1).sum(1)
        rules["no_half_tone_patch"] = half_tone_patch <= self.max_half_tone_patch

        # stretch the soft edges: blur and noise leave the mid-edge (t = 0.5) where it was
        coverage = np.clip((t - 0.2) / 0.6, 0.0, 1.0)
        scale2 = (x.shape[1] / BASE_SIZE) ** 2
        smallest = 0.5 * self.size_range[0] ** 2 * scale2  # a triangle has half its box's area
        largest = self.size_range[1] ** 2 * scale2
        area = coverage.reshape(n, -1).sum(1)
        rules["shape_size"] = (area >= self.area_slack * smallest) & (area <= (1 + self.area_slack) * largest)
        kind, misfit = fit_shape_templates(coverage)
        rules["shape_fits_template"] = misfit <= self.max_misfit
        return rules, kind * len(self.palette) + colour_index


class LightShapeDomain(ShapeDomain):
    """The source style: a light background, accepted as long as it stays light and near-neutral."""

    def background_ok(self, tone: np.ndarray) -> np.ndarray:
        return (tone.min(1) >= 0.66) & (tone.max(1) - tone.min(1) <= 0.2)


PATTERN_KINDS = ("horizontal", "vertical", "checker")


class PatternDomain(Domain):
    """Two-colour stripes or checkerboards with random band width and phase."""

    params_per_image = 11
    band_widths = (2, 3, 4)  # pixels at 16x16
    colour_jitter = 0.03

    # oracle tolerances
    pair_tol = 0.2  # distance of the image's colours from the pair's line
    min_contrast = 0.7  # the image's colours sit at t <= 0.3 and t >= 0.7 along the pair's line
    off_segment_tol = 0.2
    level_tol = 0.3
    max_off_share = 0.08
    min_agreement = 0.92
    min_transitions = 3
    share_range = (0.25, 0.75)

    def __init__(self, name: str, analogue: str, pairs: dict[str, tuple[RGB, RGB]]):
        self.name = name
        self.analogue = analogue
        self.pair_names = list(pairs)
        self.pairs = np.array(list(pairs.values()), dtype=np.float32)  # [P, 2, 3]
        self.modes = [f"{kind}/{pair}" for kind in PATTERN_KINDS for pair in self.pair_names]
        self.factor_sizes = (len(PATTERN_KINDS), len(self.pair_names))

    def render(self, modes: np.ndarray, u: np.ndarray, image_size: int) -> np.ndarray:
        s = image_size
        scale = s / BASE_SIZE
        kinds, pairs = np.divmod(np.asarray(modes, dtype=np.int64), len(self.pairs))
        choice = np.minimum((u[:, 1] * len(self.band_widths)).astype(np.int64), len(self.band_widths) - 1)
        widths = np.maximum(np.round(np.array(self.band_widths)[choice] * scale).astype(np.int64), 1)
        phase_y = (u[:, 2] * 2 * widths).astype(np.int64)
        phase_x = (u[:, 3] * 2 * widths).astype(np.int64)
        idx = np.arange(s)
        row_band = ((idx[None, :] + phase_y[:, None]) // widths[:, None]) % 2  # [N, S]
        col_band = ((idx[None, :] + phase_x[:, None]) // widths[:, None]) % 2
        rows = np.broadcast_to(row_band[:, :, None], (len(modes), s, s))
        cols = np.broadcast_to(col_band[:, None, :], (len(modes), s, s))
        kind = kinds[:, None, None]
        band = np.where(kind == 0, rows, np.where(kind == 1, cols, rows ^ cols))

        brightness = 0.03 * (2 * u[:, 4:5] - 1)
        first = self.pairs[pairs, 0] + self.colour_jitter * (2 * u[:, 5:8] - 1) + brightness
        second = self.pairs[pairs, 1] + self.colour_jitter * (2 * u[:, 8:11] - 1) + brightness
        image = np.where(band[..., None] == 0, first[:, None, None, :], second[:, None, None, :])
        return quantize(image)

    def _judge(self, x: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Every pixel on the line between one colour pair's two colours (contrast may be lowered
        by blur), and the binarised image a rank-one +-1 pattern (rows, columns or both
        alternating) with at least three band changes."""
        n = len(x)
        # the colour pair whose line explains most pixels
        off_shares = np.zeros((n, len(self.pairs)))
        for p, pair in enumerate(self.pairs):
            start, end = np.broadcast_to(pair[0], (n, 3)), np.broadcast_to(pair[1], (n, 3))
            t, residual = project_on_segment(x, start, end)
            off_shares[:, p] = ((residual > self.off_segment_tol) | (t < -0.25) | (t > 1.25)).reshape(n, -1).mean(1)
        pair_index = off_shares.argmin(1)
        proto = self.pairs[pair_index]

        # the image's own two colours (the medians of its two classes), which blur may pull towards
        # each other along the pair's line but not off it
        t, _ = project_on_segment(x, proto[:, 0], proto[:, 1])
        first = np.nan_to_num(masked_median(x, t <= 0.5), nan=-1.0)
        second = np.nan_to_num(masked_median(x, t > 0.5), nan=-1.0)
        ends = np.stack([first, second], 1).reshape(n, 2, 1, 3)
        ends_t, ends_residual = project_on_segment(ends, proto[:, 0], proto[:, 1])
        ends_t, ends_residual = ends_t.reshape(n, 2), ends_residual.reshape(n, 2)
        rules = {
            "pair_colours": (ends_residual.max(1) <= self.pair_tol)
            & (ends_t[:, 0] <= 1 - self.min_contrast)
            & (ends_t[:, 1] >= self.min_contrast)
        }

        # nearly every pixel is one of those two colours; blends of patterns or shapes over
        # patterns make extra levels
        t, residual = project_on_segment(x, first, second)
        off = (residual > self.off_segment_tol) | (np.minimum(np.abs(t), np.abs(t - 1)) > self.level_tol)
        rules["two_colours_only"] = off.reshape(n, -1).mean(1) <= self.max_off_share

        signs = np.where(t > 0.5, 1.0, -1.0)
        share = (signs > 0).reshape(n, -1).mean(1)
        rules["balanced"] = (share >= self.share_range[0]) & (share <= self.share_range[1])
        left, _, right = np.linalg.svd(signs)
        row_signs = np.where(left[:, :, 0] >= 0, 1.0, -1.0)
        col_signs = np.where(right[:, 0, :] >= 0, 1.0, -1.0)
        fitted = row_signs[:, :, None] * col_signs[:, None, :]
        rules["rank_one_pattern"] = (fitted == signs).reshape(n, -1).mean(1) >= self.min_agreement
        row_changes = (np.diff(row_signs, axis=1) != 0).sum(1)
        col_changes = (np.diff(col_signs, axis=1) != 0).sum(1)
        rows_vary, cols_vary = row_changes >= self.min_transitions, col_changes >= self.min_transitions
        kind = np.select(
            [rows_vary & (col_changes == 0), cols_vary & (row_changes == 0), rows_vary & cols_vary],
            [0, 1, 2],
            default=-1,
        )
        rules["stripes_or_checker"] = kind >= 0
        return rules, kind * len(self.pairs) + pair_index


# ---------------------------------------------------------------------------------------- registry
DOMAINS: Registry[Domain] = Registry("domain")

DOMAINS.add(
    "source",
    LightShapeDomain(
        "source",
        analogue="FFHQ",
        palette={
            "red": (0.85, 0.12, 0.12),
            "green": (0.15, 0.70, 0.20),
            "blue": (0.15, 0.25, 0.85),
            "yellow": (0.92, 0.82, 0.10),
        },
        background=(0.88, 0.88, 0.88),
        background_spread=0.06,
    ),
)
DOMAINS.add(
    "near",
    ShapeDomain(
        "near",
        analogue="Babies / Sunglasses",
        palette={"orange": (1.00, 0.50, 0.10), "cyan": (0.25, 0.95, 0.95)},
        background=(0.26, 0.30, 0.44),
        background_spread=0.04,
    ),
)
DOMAINS.add(
    "far",
    PatternDomain(
        "far",
        analogue="MetFaces / AFHQ-Cat",
        pairs={
            "navy-gold": ((0.12, 0.14, 0.40), (0.96, 0.78, 0.18)),
            "maroon-mint": ((0.50, 0.06, 0.16), (0.62, 0.96, 0.78)),
        },
    ),
)


def get_domain(name: str | Domain) -> Domain:
    """The registered domain of that name (a Domain passes through)."""
    return name if isinstance(name, Domain) else DOMAINS.get(name)


# ----------------------------------------------------------------------------------- oracle report
def oracle_report(images: Any, domain: str | Domain) -> dict:
    """Quality and diversity of a set of images as judged by the domain's oracle (JSON-ready).

    mode_histogram counts in-domain images per mode; tv_distance is the total variation between
    that histogram (normalised) and the true mode distribution: 1.0 when nothing is in the domain.
    rule_pass_rates shows partial adaptation (e.g. the target's colours learnt, its geometry not).
    """
    dom = get_domain(domain)
    rules, mode = dom.checks(images)
    in_domain, modes = dom._verdict(rules, mode)
    n = int(len(in_domain))
    counts = np.bincount(modes[in_domain], minlength=len(dom.modes))
    truth = dom.mode_distribution()
    hits = int(counts.sum())
    tv = 0.5 * float(np.abs(counts / hits - truth).sum()) if hits else 1.0
    return {
        "n": n,
        "in_domain_rate": float(in_domain.mean()) if n else 0.0,
        "mode_coverage": float((counts > 0).mean()),
        "mode_histogram": [int(c) for c in counts],
        "true_histogram": [float(p) for p in truth],
        "tv_distance": tv,
        "modes": list(dom.modes),
        "rule_pass_rates": {rule: float(passed.mean()) for rule, passed in rules.items()},
    }


__all__ = [
    "DOMAINS",
    "Domain",
    "ShapeDomain",
    "LightShapeDomain",
    "PatternDomain",
    "get_domain",
    "oracle_report",
    "write_image_folder",
]
