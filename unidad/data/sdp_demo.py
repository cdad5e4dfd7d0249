"""The text-conditioned demo's personalization subjects, their shots and prompts, and their oracles.

Each subject is one specific object that the captioned source set (unidad.data.scenes) never shows:
a shape filled with its own two-colour pattern (the source's objects are solid). Its 5 shots show it
in ONE context; the demo prompts, written DreamBench-style with the unique token and the class noun
("a prt square in the snow"), put it in contexts the shots never show.

`SubjectOracle` is the ground truth of the SDP demo metrics:
  present(images)                 is this subject in the image (shape kind, both pattern colours,
                                  pattern orientation), whatever the background;
  context_follows(images, prompts) does the background show the context the prompt names.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from unidad.data import scenes
from unidad.data.dreambench import fill_template
from unidad.data.pixels import SHAPE_KINDS, as_unit_hwc, fit_shape_templates, project_on_segment, solid_patches

PATTERNS = scenes.PATTERNS
BAND_WIDTH = 3.0  # pixels at 32x32
SHOTS = 5
# the contexts of the evaluation prompts: none is a shot context (SHOT_CONTEXTS below)
PROMPT_CONTEXTS = ("snow", "beach", "jungle", "water", "city")
SHOT_CONTEXTS = ("wooden_floor", "pink_fabric", "purple_rug")
DEMO_TEMPLATES = tuple(f"a {{0}} {{1}} {scenes.CONTEXTS[scenes.context_index(c)].phrase}" for c in PROMPT_CONTEXTS)


@dataclass(frozen=True)
class DemoSubject:
    name: str
    kind: str  # a shape kind; also the class noun
    pattern: str
    colours: tuple[scenes.RGB, scenes.RGB]
    shot_context: str

    @property
    def class_noun(self) -> str:
        return self.kind


SUBJECTS: dict[str, DemoSubject] = {
    s.name: s
    for s in (
        DemoSubject("checker_square", "square", "checker", ((0.90, 0.10, 0.80), (0.05, 0.90, 0.90)), "wooden_floor"),
        DemoSubject("striped_circle", "circle", "hstripes", ((1.00, 0.50, 0.05), (0.55, 0.00, 1.00)), "pink_fabric"),
        DemoSubject("banded_triangle", "triangle", "vstripes", ((0.60, 1.00, 0.00), (1.00, 0.20, 0.10)), "purple_rug"),
    )
}


def get_subject(name: str | DemoSubject) -> DemoSubject:
    if isinstance(name, DemoSubject):
        return name
    if name not in SUBJECTS:
        raise ValueError(f"unknown demo subject '{name}'; use one of: {', '.join(SUBJECTS)}")
    return SUBJECTS[name]


def demo_prompts(subject: str | DemoSubject, token: str = "prt") -> list[str]:
    """The evaluation prompts of a subject, e.g. 'a prt square in the snow'."""
    sub = get_subject(subject)
    return [fill_template(t, token, sub.class_noun) for t in DEMO_TEMPLATES]


# --------------------------------------------------------------------------------------- rendering
def render_subject(subject: str | DemoSubject, contexts, u: np.ndarray, image_size: int = scenes.BASE_SIZE,
                   pattern: str | None = None, kind: str | None = None) -> np.ndarray:
    """uint8 [N,S,S,3]: the subject in the given contexts (names or indices, one per row of u).
    `pattern` / `kind` override the subject's own (the oracle tests' near misses)."""
    sub = get_subject(subject)
    s = scenes.check_scene_size(image_size)
    ctx = np.array([scenes.context_index(c) if isinstance(c, str) else int(c) for c in contexts], np.int64)
    if len(ctx) != len(u):
        raise ValueError(f"{len(ctx)} contexts for {len(u)} images; give one context per image")
    kinds = np.full(len(u), SHAPE_KINDS.index(kind or sub.kind))
    labels = scenes.pattern_labels(pattern or sub.pattern, u, s, BAND_WIDTH)
    colours = np.array(sub.colours, dtype=np.float32)[None] + scenes.COLOUR_JITTER * (2 * u[:, None, 16:19] - 1)
    fill = np.where(labels[..., None] == 0, colours[:, None, None, 0], colours[:, None, None, 1])
    return scenes.compose(scenes.render_background(ctx, u, s), scenes.object_coverage(kinds, u, s), fill)


def subject_uniforms(subject: str | DemoSubject, n: int, seed: int, purpose: str) -> np.ndarray:
    return scenes.scene_uniforms(n, seed + zlib.crc32(get_subject(subject).name.encode()) % 100_000, purpose)


def make_shots(subject: str | DemoSubject, k: int = SHOTS, seed: int = 0,
               image_size: int = scenes.BASE_SIZE) -> np.ndarray:
    """The subject's k training shots, all in its one shot context (pose, size, phase vary)."""
    sub = get_subject(subject)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return render_subject(sub, [sub.shot_context] * k, subject_uniforms(sub, k, seed, "shots"), image_size)


def render_prompt_truth(subject: str | DemoSubject, prompts: list[str], seed: int = 0,
                        image_size: int = scenes.BASE_SIZE) -> np.ndarray:
    """What a perfect model draws for each prompt: the subject in the prompt's context."""
    contexts = [scenes.context_of_prompt(p) for p in prompts]
    if min(contexts, default=0) < 0:
        bad = prompts[contexts.index(-1)]
        raise ValueError(f"prompt '{bad}' names no demo context; use one of the phrases of unidad.data.scenes.CONTEXTS")
    return render_subject(subject, contexts, subject_uniforms(subject, len(prompts), seed, "truth"), image_size)


# ------------------------------------------------------------------------------------------ oracle
class SubjectOracle:
    """Exact judge of one demo subject in generated images (uint8 NHWC or float NCHW in [-1, 1])."""

    colour_tol = 0.2  # pixel distance from a segment (background -> pattern colour, or colour -> colour)
    max_off_share = 0.06  # pixels explained by no segment: other objects, other colours
    min_colour_share = 0.2  # each pattern colour's share of the object's core
    max_misfit = 0.3  # shape-template misfit (unidad.data.pixels.fit_shape_templates)
    area_slack = 0.5
    change_low, change_high = 0.1, 0.15  # label-change rates between neighbours: ~0 along a band, ~1/3 across

    def __init__(self, subject: str | DemoSubject):
        self.subject = get_subject(subject)
        self.colours = np.array(self.subject.colours, dtype=np.float32)

    def checks(self, images) -> dict[str, np.ndarray]:
        """{rule: passed bool [N]}; present() is their conjunction."""
        x = as_unit_hwc(images)
        n, s = len(x), (x.shape[1] if len(x) else scenes.BASE_SIZE)
        if n == 0:
            return {}
        top, bottom = scenes.unit_strip_tones(x)
        c0, c1 = (np.broadcast_to(c, (n, 3)) for c in self.colours)
        # every pixel is background, a pattern colour, or a blend of two of these (soft edges, blur)
        # (the horizon row blends top and bottom: colour -2, no coverage)
        segments = [(top, c0, 0), (top, c1, 1), (bottom, c0, 0), (bottom, c1, 1), (c0, c1, -1), (top, bottom, -2)]
        best = np.full((n, s, s), np.inf)
        coverage = np.zeros((n, s, s))
        label = np.zeros((n, s, s), np.int64)
        for start, end, colour in segments:
            t, residual = project_on_segment(x, start, end)
            residual = np.where((t < -0.25) | (t > 1.25), np.inf, residual)
            better = residual < best
            best = np.where(better, residual, best)
            # stretched soft edges: noise on the background stays at zero coverage, blur keeps the mid-edge
            cover = np.clip((t - 0.2) / 0.6, 0.0, 1.0) if colour >= 0 else np.full_like(t, float(colour == -1))
            coverage = np.where(better, cover, coverage)
            label = np.where(better, (t > 0.5).astype(np.int64) if colour == -1 else max(colour, 0), label)
        rules = {"colours_only": (best > self.colour_tol).reshape(n, -1).mean(1) <= self.max_off_share}

        smallest, largest = scenes.object_size_range(s)
        area = coverage.reshape(n, -1).sum(1)
        rules["object_size"] = (area >= self.area_slack * smallest) & (area <= (1 + self.area_slack) * largest)
        kind, misfit = fit_shape_templates(coverage.astype(np.float32))
        rules["shape_kind"] = (kind == SHAPE_KINDS.index(self.subject.kind)) & (misfit <= self.max_misfit)

        core = solid_patches(coverage >= 0.5) & (best <= self.colour_tol)
        core_count = np.maximum(core.reshape(n, -1).sum(1), 1)
        share1 = (core & (label == 1)).reshape(n, -1).sum(1) / core_count
        rules["both_colours"] = (np.minimum(share1, 1 - share1) >= self.min_colour_share) & (core_count >= 4)

        def change_rate(a, b, both):
            pairs = np.maximum(both.reshape(n, -1).sum(1), 1)
            return ((a != b) & both).reshape(n, -1).sum(1) / pairs

        along_rows = change_rate(label[:, :, 1:], label[:, :, :-1], core[:, :, 1:] & core[:, :, :-1])
        along_cols = change_rate(label[:, 1:], label[:, :-1], core[:, 1:] & core[:, :-1])
        low, high = self.change_low, self.change_high
        wanted = {
            "checker": (along_rows >= high) & (along_cols >= high),
            "hstripes": (along_rows <= low) & (along_cols >= high),
            "vstripes": (along_rows >= high) & (along_cols <= low),
        }
        rules["pattern"] = wanted[self.subject.pattern]
        return rules

    def present(self, images) -> np.ndarray:
        """bool [N]: the subject is in the image."""
        rules = self.checks(images)
        return np.logical_and.reduce(list(rules.values())) if rules else np.zeros(0, bool)

    def context_follows(self, images, prompts) -> np.ndarray:
        """bool [N]: the background shows the context the image's prompt names."""
        return scenes.context_follows(images, prompts)

    def report(self, images, prompts) -> dict:
        """JSON-ready rates: subject present, context follows prompt, both; and each rule's pass rate."""
        present = self.present(images)
        follows = self.context_follows(images, prompts)
        n = len(present)
        rate = (lambda v: float(v.mean()) if n else 0.0)
        return {
            "n": n,
            "subject": self.subject.name,
            "subject_present_rate": rate(present),
            "context_follows_rate": rate(follows),
            "both_rate": rate(present & follows),
            "rule_pass_rates": {rule: rate(ok) for rule, ok in self.checks(images).items()},
        }


def demo_vocabulary(token: str = "prt") -> list[str]:
    """Every word of the source captions and the demo prompts (the tiny text encoder's closed vocabulary)."""
    words = {"a", token, *SHAPE_KINDS, *scenes.SOURCE_COLOURS}
    for context in scenes.CONTEXTS:
        words.update(context.phrase.split())
    for template in DEMO_TEMPLATES:
        words.update(w for w in template.split() if "{" not in w)
    return sorted(words)


__all__ = [
    "DEMO_TEMPLATES",
    "DemoSubject",
    "SUBJECTS",
    "SubjectOracle",
    "demo_prompts",
    "demo_vocabulary",
    "get_subject",
    "make_shots",
    "render_prompt_truth",
    "render_subject",
]
