"""Captioned procedural scenes: the text-conditioned demo's stand-in for LAION.

A scene is one object (a circle, square or triangle) in front of a *context*: a two-tone background
(sky over ground, or one fabric colour) named by a DreamBench-style phrase ("on the beach", "in the
snow"). The source set's objects are solid colours, and every image has a caption in words:
"a red circle on the beach" (some captions leave out the colour or the context, as web captions do).
The personalization subjects of unidad.data.sdp_demo are patterned objects drawn with the same
renderer, so no source image shows them. The demo VAE is fitted on broader "codec" scenes
(`sample_codec_images`: random colours, solid or patterned), as SD's VAE saw broader data than
any prompt asks for, so a subject's pattern survives the trip through the latent space.

Layouts are designed at 32x32 and scaled; the object never reaches the top or bottom `STRIP_ROWS`
rows, so the context oracle (`classify_context`) reads the background there, whatever the object.
Every image is a function of one row of uniform numbers (`scene_uniforms`), so sets are
deterministic from their seed and `n` images are a prefix of `m > n`.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from unidad.data.pixels import (SHAPE_KINDS, as_unit_hwc, fit_shape_templates, project_on_segment, quantize,
                                shape_coverage)

BASE_SIZE = 32
MIN_SIZE = 24
STRIP_ROWS = 3  # rows at the top and at the bottom that only ever show the context (at 32x32)
PARAMS_PER_IMAGE = 20
BACKGROUND_JITTER = 0.03
COLOUR_JITTER = 0.03
CONTEXT_TOL = 0.2  # max colour distance of a strip from its context's tone (jitter alone is <= 0.06)

RGB = tuple[float, float, float]
SKY: RGB = (0.45, 0.72, 0.95)


@dataclass(frozen=True)
class Context:
    """A background named by a phrase: `top` colour above the horizon, `bottom` below it."""

    name: str
    phrase: str
    top: RGB
    bottom: RGB


CONTEXTS: tuple[Context, ...] = (
    Context("beach", "on the beach", SKY, (0.93, 0.84, 0.58)),
    Context("snow", "in the snow", (0.70, 0.78, 0.88), (0.97, 0.97, 0.98)),
    Context("jungle", "in the jungle", (0.08, 0.38, 0.14), (0.28, 0.22, 0.08)),
    Context("grass", "on top of green grass", SKY, (0.35, 0.70, 0.25)),
    Context("water", "floating on top of water", SKY, (0.10, 0.30, 0.68)),
    Context("city", "with a city in the background", (0.50, 0.50, 0.55), (0.22, 0.22, 0.25)),
    Context("wooden_floor", "on top of a wooden floor", (0.90, 0.86, 0.76), (0.55, 0.33, 0.15)),
    Context("pink_fabric", "on top of pink fabric", (0.96, 0.62, 0.78), (0.96, 0.62, 0.78)),
    Context("purple_rug", "on top of a purple rug", (0.45, 0.22, 0.58), (0.45, 0.22, 0.58)),
)
CONTEXT_NAMES = tuple(c.name for c in CONTEXTS)
_TOPS = np.array([c.top for c in CONTEXTS], dtype=np.float32)
_BOTTOMS = np.array([c.bottom for c in CONTEXTS], dtype=np.float32)

# the source set's solid object colours; the demo subjects' pattern colours are none of these pairs
SOURCE_COLOURS: dict[str, RGB] = {
    "red": (0.85, 0.12, 0.12),
    "blue": (0.12, 0.22, 0.85),
    "yellow": (0.95, 0.85, 0.10),
    "black": (0.08, 0.08, 0.08),
}
PATTERNS = ("checker", "hstripes", "vstripes")  # hstripes: horizontal bands (colour changes down the rows)
SHAPE_NOUNS = SHAPE_KINDS  # the class nouns: "circle", "square", "triangle"
# caption styles of the source set and their shares: web captions are not all complete
CAPTION_STYLES = (("full", 0.7), ("no_colour", 0.15), ("no_context", 0.15))


def context_index(name: str) -> int:
    if name not in CONTEXT_NAMES:
        raise ValueError(f"unknown context '{name}'; use one of: {', '.join(CONTEXT_NAMES)}")
    return CONTEXT_NAMES.index(name)


def context_of_prompt(prompt: str) -> int:
    """Index of the context a prompt asks for (its phrase appears in the prompt), -1 for none."""
    text = " ".join(prompt.lower().split())
    hits = [i for i, c in enumerate(CONTEXTS) if f" {c.phrase}" in f" {text} "]
    if len(hits) > 1:  # a phrase inside a longer one: the longest wins
        hits = [max(hits, key=lambda i: len(CONTEXTS[i].phrase))]
    return hits[0] if hits else -1


def check_scene_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < MIN_SIZE:
        raise ValueError(f"image_size must be an integer >= {MIN_SIZE} (scene demo default {BASE_SIZE}), "
                         f"got {image_size!r}")
    return int(image_size)


def scene_uniforms(n: int, seed: int, purpose: str) -> np.ndarray:
    """[n, PARAMS_PER_IMAGE] uniforms for `purpose`; row i does not depend on n."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    entropy = [zlib.crc32(b"scenes"), zlib.crc32(purpose.encode()), int(seed)]
    return np.random.default_rng(np.random.SeedSequence(entropy)).random((int(n), PARAMS_PER_IMAGE))


def pick(u: np.ndarray, count: int) -> np.ndarray:
    """Uniforms in [0, 1) -> indices in [0, count)."""
    return np.minimum((u * count).astype(np.int64), count - 1)


# --------------------------------------------------------------------------------------- rendering
def render_background(contexts: np.ndarray, u: np.ndarray, s: int) -> np.ndarray:
    """Float [N,S,S,3]: each image's context, its horizon jittered by +-2 px (at 32), tones jittered."""
    scale = s / BASE_SIZE
    u = u.astype(np.float32)
    top = _TOPS[contexts] + BACKGROUND_JITTER * (2 * u[:, 8:11] - 1)
    bottom = _BOTTOMS[contexts] + BACKGROUND_JITTER * (2 * u[:, 11:14] - 1)
    horizon = (0.55 * BASE_SIZE + 2.0 * (2 * u[:, 7] - 1)) * scale
    rows = np.arange(s, dtype=np.float32) + 0.5
    below = np.clip(rows[None, :] - horizon[:, None] + 0.5, 0.0, 1.0)[:, :, None, None]  # one soft row
    column = top[:, None, None, :] * (1 - below) + bottom[:, None, None, :] * below  # [N,S,1,3]
    return np.broadcast_to(column, (len(u), s, s, 3))


def object_coverage(kinds: np.ndarray, u: np.ndarray, s: int) -> np.ndarray:
    """Coverage [N,S,S] of each image's object: side 11-15 px at 32, aspect 0.85-1.15, centre within
    +-5 px (x) and +-3 px (y) of the middle, so the top and bottom strips stay background."""
    scale = s / BASE_SIZE
    side = (11.0 + 4.0 * u[:, 3]) * scale
    aspect = 0.85 + 0.3 * u[:, 4]
    w, h = side * np.sqrt(aspect), side / np.sqrt(aspect)
    cx = s / 2 + 5.0 * scale * (2 * u[:, 5] - 1)
    cy = s / 2 + 3.0 * scale * (2 * u[:, 6] - 1)
    return shape_coverage(np.asarray(kinds, np.int64), cx.astype(np.float32), cy.astype(np.float32), w, h, s)


def pattern_labels(pattern: str, u: np.ndarray, s: int, band_width: float | np.ndarray) -> np.ndarray:
    """int [N,S,S] in {0, 1}: which of two colours each pixel has; band_width in pixels at 32x32
    (scalar or [N]), random phase per image from u[:, 14:16]."""
    width = np.broadcast_to(np.asarray(band_width, np.float64) * s / BASE_SIZE, (len(u),))[:, None]
    idx = np.arange(s, dtype=np.float64)[None, :]
    rows = ((idx + 2 * width * u[:, 14:15]) // width).astype(np.int64) % 2  # [N,S]
    cols = ((idx + 2 * width * u[:, 15:16]) // width).astype(np.int64) % 2
    if pattern == "hstripes":
        return np.broadcast_to(rows[:, :, None], (len(u), s, s))
    if pattern == "vstripes":
        return np.broadcast_to(cols[:, None, :], (len(u), s, s))
    if pattern == "checker":
        return rows[:, :, None] ^ cols[:, None, :]
    raise ValueError(f"unknown pattern '{pattern}'; use one of: {', '.join(PATTERNS)}")


def compose(background: np.ndarray, coverage: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """uint8 [N,S,S,3]: the object's fill (per-pixel colours [N,S,S,3]) over the background."""
    cov = coverage[..., None]
    return quantize(background * (1 - cov) + fill * cov)


def object_size_range(image_size: int) -> tuple[float, float]:
    """Smallest and largest object area in pixels (a triangle is half its box)."""
    scale2 = (image_size / BASE_SIZE) ** 2
    return 0.5 * 11.0**2 / 1.15 * scale2, 15.0**2 * scale2


# ----------------------------------------------------------------------------------- source set
def caption(colour: str | None, kind: str, context: str | None) -> str:
    words = ["a"] + ([colour] if colour else []) + [kind] + ([CONTEXTS[context_index(context)].phrase] if context else [])
    return " ".join(words)


def sample_source(n: int, seed: int, image_size: int = BASE_SIZE) -> tuple[np.ndarray, list[str], dict]:
    """The captioned source set: (uint8 [n,S,S,3], captions, factors {kind, colour, context: int [n]}).

    Every (kind, colour, context) combination is drawn uniformly: the teacher sees each context with
    every shape, so prompts that move a subject into another context are within its reach.
    """
    s = check_scene_size(image_size)
    u = scene_uniforms(n, seed, "source")
    contexts, kinds = pick(u[:, 0], len(CONTEXTS)), pick(u[:, 1], len(SHAPE_KINDS))
    colours = pick(u[:, 2], len(SOURCE_COLOURS))
    palette = np.array(list(SOURCE_COLOURS.values()), dtype=np.float32)
    fill = palette[colours] + COLOUR_JITTER * (2 * u[:, 16:19] - 1).astype(np.float32)
    images = np.empty((len(u), s, s, 3), np.uint8)
    for start in range(0, len(u), 1000):  # chunks bound the float working set
        part = slice(start, start + 1000)
        images[part] = compose(render_background(contexts[part], u[part], s), object_coverage(kinds[part], u[part], s),
                               np.broadcast_to(fill[part, None, None, :], (len(u[part]), s, s, 3)))
    names = list(SOURCE_COLOURS)
    thresholds = np.cumsum([share for _, share in CAPTION_STYLES])
    styles = np.searchsorted(thresholds, u[:, 19], side="right")
    captions = [
        caption(None if style == 1 else names[c], SHAPE_KINDS[k], None if style == 2 else CONTEXT_NAMES[x])
        for k, c, x, style in zip(kinds, colours, contexts, styles)
    ]
    return images, captions, {"kind": kinds, "colour": colours, "context": contexts}


def vivid_colours(u: np.ndarray) -> np.ndarray:
    """Saturated, bright colours [...,3] from uniforms [...,3]: any hue, HSV saturation 0.75-1, value 0.8-1
    (the kind of colour the demo subjects' patterns pair, which uniform RGB draws seldom reach)."""
    hue, sat, val = u[..., 0] * 6.0, 0.75 + 0.25 * u[..., 1], 0.8 + 0.2 * u[..., 2]
    chroma = val * sat
    second = chroma * (1.0 - np.abs(hue % 2.0 - 1.0))
    sector = np.minimum(hue.astype(np.int64), 5)[..., None]
    # (R, G, B) per hue sector as (chroma, second, 0) permuted
    order = np.array([(0, 1, 2), (1, 0, 2), (2, 0, 1), (2, 1, 0), (1, 2, 0), (0, 2, 1)])
    parts = np.stack([chroma, second, np.zeros_like(chroma)], -1)
    return (np.take_along_axis(parts, order[sector[..., 0]], -1) + (val - chroma)[..., None]).astype(np.float32)


def sample_codec_images(n: int, seed: int, image_size: int = BASE_SIZE, vivid_share: float = 0.0,
                        avoid: Sequence[tuple[str, tuple[RGB, RGB]]] = (), avoid_distance: float = 0.3,
                        pattern_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> np.ndarray:
    """Scenes for fitting the demo's VAE, broader than the captioned set (as SD's VAE was trained on
    broader data than any prompt asks for): any shape, solid or in a random two-colour pattern, in any
    context. uint8 [n,S,S,3]; no captions (the VAE reads none).

    Colours are uniform in RGB, except for `vivid_share` of the objects, whose two colours are both
    vivid (`vivid_colours`). `avoid` lists (pattern, (colour, colour)) pairs the codec must never show:
    an object in that pattern whose two colours are both within `avoid_distance` of the pair (either
    order) takes the next pattern instead (the demo passes its subjects, which stay unseen).
    pattern_weights: relative frequencies of PATTERNS and of solid fills, in that order."""
    s = check_scene_size(image_size)
    if not 0.0 <= vivid_share <= 1.0:
        raise ValueError(f"vivid_share is a share of the codec scenes, in [0, 1]; got {vivid_share}")
    weights = np.asarray(pattern_weights, np.float64)
    if weights.shape != (len(PATTERNS) + 1,) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"pattern_weights needs {len(PATTERNS) + 1} non-negative weights ({', '.join(PATTERNS)}, "
                         f"solid), not all zero; got {list(pattern_weights)}")
    u = scene_uniforms(n, seed, "codec")
    extra = np.random.default_rng(np.random.SeedSequence([zlib.crc32(b"codec-colours"), int(seed)])).random((n, 8))
    contexts, kinds = pick(u[:, 0], len(CONTEXTS)), pick(u[:, 1], len(SHAPE_KINDS))
    bounds = np.cumsum(weights) / weights.sum()
    patterns = np.minimum(np.searchsorted(bounds, u[:, 2], side="right"), len(PATTERNS))  # the last: solid
    colours = extra[:, :6].reshape(n, 2, 3).astype(np.float32)
    vivid = extra[:, 7] < vivid_share
    colours[vivid] = vivid_colours(colours[vivid])
    for pattern, pair in avoid:
        if pattern not in PATTERNS:
            raise ValueError(f"unknown pattern '{pattern}' to avoid; use one of: {', '.join(PATTERNS)}")
        pair = np.asarray(pair, np.float32)
        same = (np.linalg.norm(colours - pair[None], axis=-1) <= avoid_distance).all(1)
        swapped = (np.linalg.norm(colours - pair[None, ::-1], axis=-1) <= avoid_distance).all(1)
        hit = (patterns == PATTERNS.index(pattern)) & (same | swapped)
        patterns[hit] = (patterns[hit] + 1) % len(PATTERNS)
    widths = 2.0 + 3.0 * extra[:, 6]
    images = np.empty((n, s, s, 3), np.uint8)
    for p, pattern in enumerate(PATTERNS + ("solid",)):
        rows = np.flatnonzero(patterns == p)
        if not len(rows):
            continue
        labels = (np.zeros((len(rows), s, s), np.int64) if pattern == "solid"
                  else pattern_labels(pattern, u[rows], s, widths[rows]))
        fill = np.where(labels[..., None] == 0, colours[rows, None, None, 0], colours[rows, None, None, 1])
        images[rows] = compose(render_background(contexts[rows], u[rows], s), object_coverage(kinds[rows], u[rows], s), fill)
    return images


# ---------------------------------------------------------------------------------- context oracle
def strip_tones(images) -> tuple[np.ndarray, np.ndarray]:
    """Median colour of the top and of the bottom strip, [N,3] each (images: uint8 NHWC or float NCHW)."""
    return unit_strip_tones(as_unit_hwc(images))


def unit_strip_tones(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """strip_tones of a float [N,H,W,3] batch in [0, 1]."""
    rows = max(1, round(STRIP_ROWS * x.shape[1] / BASE_SIZE))
    top = np.median(x[:, :rows].reshape(len(x), -1, 3), axis=1)
    bottom = np.median(x[:, -rows:].reshape(len(x), -1, 3), axis=1)
    return top, bottom


def classify_context(images) -> np.ndarray:
    """Context index per image, -1 where no context's top and bottom tones are within CONTEXT_TOL."""
    return context_of_tones(*strip_tones(images))


def context_of_tones(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """classify_context from the strips' tones [N,3] each."""
    if len(top) == 0:
        return np.zeros(0, np.int64)
    distance = np.maximum(np.linalg.norm(top[:, None] - _TOPS[None], axis=-1),
                          np.linalg.norm(bottom[:, None] - _BOTTOMS[None], axis=-1))
    best = distance.argmin(1)
    return np.where(distance[np.arange(len(best)), best] <= CONTEXT_TOL, best, -1).astype(np.int64)


def context_follows(images, prompts) -> np.ndarray:
    """bool [N]: the image shows the context its prompt names. A prompt that names none is followed by
    any recognisable context."""
    found = classify_context(images)
    if len(prompts) != len(found):
        raise ValueError(f"{len(found)} images but {len(prompts)} prompts; give one prompt per image")
    wanted = np.array([context_of_prompt(p) for p in prompts], dtype=np.int64)
    return (found >= 0) & ((wanted < 0) | (found == wanted))


# ----------------------------------------------------------------------------------- scene judge
SCENE_COLOUR_TOL = 0.2  # pixel distance from a segment (a background tone -> the object's colour, or top -> bottom)
SCENE_MAX_OFF_SHARE = 0.06  # pixels no segment explains: other colours, a second object
SCENE_MAX_MISFIT = 0.3  # shape-template misfit (unidad.data.pixels.fit_shape_templates)
SCENE_AREA_SLACK = 0.5


def judge_scenes(images) -> dict[str, np.ndarray]:
    """What each scene shows, read exactly from the pixels (the ground truth of caption following).

    Returns int [N] arrays `kind` (SHAPE_KINDS index), `colour` (SOURCE_COLOURS index) and `context`
    (CONTEXTS index, -1 unrecognised), and bool [N] `valid`: one solid object of a source colour,
    of a plausible size and shape, over a two-tone background. Every source colour is tried as the
    object's: the right one explains every pixel as a blend of a background tone and it (soft
    edges), a wrong one leaves the object's pixels unexplained; a colour close to a background tone
    (blue over water) still wins, by the pixels of the object's other half.
    """
    x = as_unit_hwc(images)
    n = len(x)
    if n == 0:
        empty = np.zeros(0, np.int64)
        return {"kind": empty, "colour": empty, "context": empty, "valid": np.zeros(0, bool)}
    s = x.shape[1]
    top, bottom = unit_strip_tones(x)
    palette = np.array(list(SOURCE_COLOURS.values()), dtype=np.float32)
    off = np.empty((n, len(palette)))
    coverages = np.empty((len(palette), n, s, s), np.float32)
    for k, colour in enumerate(palette):
        c = np.broadcast_to(colour, (n, 3))
        best = np.full((n, s, s), np.inf)
        coverage = np.zeros((n, s, s))
        for start, end, is_object in ((top, c, True), (bottom, c, True), (top, bottom, False)):
            t, residual = project_on_segment(x, start, end)
            residual = np.where((t < -0.25) | (t > 1.25), np.inf, residual)
            better = residual < best
            best = np.where(better, residual, best)
            # halfway along the segment: a short one (black over the city's ground) leaves a soft
            # coverage at the mercy of the colour jitter
            cover = (t > 0.5).astype(np.float32) if is_object else np.zeros_like(t)
            coverage = np.where(better, cover, coverage)
        off[:, k] = (best > SCENE_COLOUR_TOL).reshape(n, -1).mean(1)
        coverages[k] = coverage
    smallest, largest = object_size_range(s)
    areas = coverages.reshape(len(palette), n, -1).sum(-1).T  # [N,K]
    # a colour that explains the image only by finding no object loses to one that finds it
    score = off + (areas < SCENE_AREA_SLACK * smallest)
    colour = score.argmin(1)
    coverage = coverages[colour, np.arange(n)]
    area = areas[np.arange(n), colour]
    kind, misfit = fit_shape_templates(coverage)
    valid = ((off[np.arange(n), colour] <= SCENE_MAX_OFF_SHARE) & (area >= SCENE_AREA_SLACK * smallest)
             & (area <= (1 + SCENE_AREA_SLACK) * largest) & (misfit <= SCENE_MAX_MISFIT))
    return {"kind": kind.astype(np.int64), "colour": colour.astype(np.int64), "context": context_of_tones(top, bottom),
            "valid": valid}


def parse_caption(text: str) -> tuple[int, int, int]:
    """(kind, colour, context) indices a caption or prompt names, -1 for each it leaves out."""
    words = text.lower().split()
    kind = next((SHAPE_KINDS.index(w) for w in words if w in SHAPE_KINDS), -1)
    names = list(SOURCE_COLOURS)
    colour = next((names.index(w) for w in words if w in SOURCE_COLOURS), -1)
    return kind, colour, context_of_prompt(text)


def every_caption() -> list[str]:
    """One caption per (kind, colour, context) of the captioned source set: what its teacher must draw."""
    return [caption(c, k, x) for k in SHAPE_NOUNS for c in SOURCE_COLOURS for x in CONTEXT_NAMES]


def caption_report(images, captions) -> dict:
    """JSON-ready rates at which images follow their captions: the object valid and of the named
    kind, of the named colour (over captions that name one), in the named context (over captions
    that name one), and all of these at once."""
    seen = judge_scenes(images)
    if len(captions) != len(seen["valid"]):
        raise ValueError(f"{len(seen['valid'])} images but {len(captions)} captions; give one caption per image")
    wanted = np.array([parse_caption(c) for c in captions], dtype=np.int64).reshape(-1, 3)
    kind_ok = seen["valid"] & (seen["kind"] == wanted[:, 0])
    colour_ok = seen["valid"] & (seen["colour"] == wanted[:, 1])
    context_ok = seen["context"] == wanted[:, 2]
    named_colour, named_context = wanted[:, 1] >= 0, wanted[:, 2] >= 0
    everything = kind_ok & (colour_ok | ~named_colour) & (context_ok | ~named_context)
    rate = (lambda ok, among: float(ok[among].mean()) if among.any() else 0.0)
    every = np.ones(len(captions), bool)
    return {"n": len(captions), "valid_rate": rate(seen["valid"], every), "kind_rate": rate(kind_ok, every),
            "colour_rate": rate(colour_ok, named_colour), "context_rate": rate(context_ok, named_context),
            "all_rate": rate(everything, every)}


__all__ = [
    "BASE_SIZE",
    "CONTEXTS",
    "CONTEXT_NAMES",
    "Context",
    "SHAPE_NOUNS",
    "SOURCE_COLOURS",
    "caption",
    "caption_report",
    "every_caption",
    "classify_context",
    "context_follows",
    "context_index",
    "context_of_prompt",
    "judge_scenes",
    "parse_caption",
    "sample_source",
    "strip_tones",
]
