"""The text-conditioned demo: captioned source scenes, subjects absent from them, shots in one
context, prompts in other contexts, and the exact oracles (subject present, context follows prompt)."""
from __future__ import annotations

import numpy as np
import pytest

from unidad.data import scenes
from unidad.data import sdp_demo as demo
from unidad.data.pixels import SHAPE_KINDS


def _blur_noise(images: np.ndarray, noise: float, seed: int = 0) -> np.ndarray:
    """A [1 2 1]/4 blur in both directions plus Gaussian noise (unit colour scale): a model's softness."""
    x = images.astype(np.float64)
    k = (0.25, 0.5, 0.25)
    s = x.shape[1]
    p = np.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0)), mode="edge")
    x = sum(k[i] * p[:, i:i + s] for i in range(3))
    p = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)), mode="edge")
    x = sum(k[i] * p[:, :, i:i + s] for i in range(3))
    x = x + np.random.default_rng(seed).normal(0, noise * 255, x.shape)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ source
def test_source_set_is_captioned_deterministic_and_a_prefix():
    images, captions, factors = scenes.sample_source(300, seed=3)
    assert images.shape == (300, 32, 32, 3) and images.dtype == np.uint8 and len(captions) == 300
    again, captions2, _ = scenes.sample_source(100, seed=3)
    assert np.array_equal(again, images[:100]) and captions2 == captions[:100]
    assert not np.array_equal(scenes.sample_source(10, seed=4)[0], images[:10])
    for text, kind, colour, context in zip(captions, factors["kind"], factors["colour"], factors["context"]):
        assert text.startswith("a ") and SHAPE_KINDS[kind] in text.split()
        # a caption may leave out the colour or the context, never state a wrong one
        assert list(scenes.SOURCE_COLOURS)[colour] in text or not any(c in text.split() for c in scenes.SOURCE_COLOURS)
        assert scenes.context_of_prompt(text) in (-1, context)
    full = [t for t in captions if len(t.split()) > 3 and any(c in t.split() for c in scenes.SOURCE_COLOURS)]
    assert 0.5 < len(full) / len(captions) < 0.9
    assert set(factors["context"]) == set(range(len(scenes.CONTEXTS)))  # every context is taught


def test_contexts_are_told_apart_by_the_oracle():
    tones = np.array([[c.top, c.bottom] for c in scenes.CONTEXTS])
    gap = np.max(np.linalg.norm(tones[:, None] - tones[None], axis=-1), axis=-1)
    np.fill_diagonal(gap, np.inf)
    assert gap.min() > 2 * scenes.CONTEXT_TOL  # no image can be within tolerance of two contexts
    images, captions, factors = scenes.sample_source(600, seed=0)
    assert np.array_equal(scenes.classify_context(images), factors["context"])
    assert np.array_equal(scenes.classify_context(_blur_noise(images, 0.03)), factors["context"])
    noise = np.random.default_rng(0).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    assert (scenes.classify_context(noise) == -1).all()


def test_context_of_prompt_and_context_follows():
    assert scenes.context_of_prompt("a prt square in the snow") == scenes.context_index("snow")
    assert scenes.context_of_prompt("A red circle  ON THE BEACH") == scenes.context_index("beach")
    assert scenes.context_of_prompt("a red circle") == -1
    images, _, factors = scenes.sample_source(40, seed=1)
    right = [f"a circle {scenes.CONTEXTS[c].phrase}" for c in factors["context"]]
    wrong = [f"a circle {scenes.CONTEXTS[(c + 1) % len(scenes.CONTEXTS)].phrase}" for c in factors["context"]]
    assert scenes.context_follows(images, right).all()
    assert not scenes.context_follows(images, wrong).any()
    with pytest.raises(ValueError, match="one prompt per image"):
        scenes.context_follows(images, right[:3])


# ---------------------------------------------------------------------------------------- subjects
def test_subjects_shots_and_prompts():
    assert len(demo.SUBJECTS) == 3
    shot_contexts = {s.shot_context for s in demo.SUBJECTS.values()}
    assert not shot_contexts & set(demo.PROMPT_CONTEXTS)  # prompts only use contexts no shot shows
    tones = np.array([[c.top, c.bottom] for c in scenes.CONTEXTS]).reshape(-1, 3)
    for sub in demo.SUBJECTS.values():
        colours = np.array(sub.colours)
        assert np.linalg.norm(colours[0] - colours[1]) > 0.5
        assert np.linalg.norm(colours[:, None] - tones[None], axis=-1).min() > 0.4  # visible on every context
        shots = demo.make_shots(sub)
        assert shots.shape == (demo.SHOTS, 32, 32, 3)
        assert (scenes.classify_context(shots) == scenes.context_index(sub.shot_context)).all()
        assert len({shot.tobytes() for shot in shots}) == demo.SHOTS  # pose, size and phase vary
        prompts = demo.demo_prompts(sub)
        assert 4 <= len(prompts) <= 6
        assert all(p.startswith(f"a prt {sub.class_noun} ") for p in prompts)
        assert {scenes.CONTEXT_NAMES[scenes.context_of_prompt(p)] for p in prompts} == set(demo.PROMPT_CONTEXTS)
        assert demo.demo_prompts(sub, token="sks")[0].startswith(f"a sks {sub.class_noun}")
    with pytest.raises(ValueError, match="unknown demo subject"):
        demo.get_subject("dog")


@pytest.mark.parametrize("name", list(demo.SUBJECTS))
def test_oracle_accepts_the_rendered_ground_truth(name):
    oracle = demo.SubjectOracle(name)
    prompts = demo.demo_prompts(name) * 20
    truth = demo.render_prompt_truth(name, prompts, seed=5)
    report = oracle.report(truth, prompts)
    assert report["subject_present_rate"] == 1.0 and report["context_follows_rate"] == 1.0
    assert oracle.present(demo.make_shots(name)).all()
    # float NCHW in [-1, 1] (a model's output) is judged like the PNGs
    as_float = truth.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1
    assert np.array_equal(oracle.present(as_float), oracle.present(truth))
    # a model's softness: blur plus noise keeps most images
    assert oracle.present(_blur_noise(truth, 0.02, seed=1)).mean() >= 0.9
    assert oracle.context_follows(_blur_noise(truth, 0.02, seed=1), prompts).all()


@pytest.mark.parametrize("name", list(demo.SUBJECTS))
def test_oracle_rejects_other_subjects_the_source_and_near_misses(name):
    oracle = demo.SubjectOracle(name)
    sub = demo.get_subject(name)
    for other in demo.SUBJECTS:
        if other != name:
            assert not oracle.present(demo.render_prompt_truth(other, demo.demo_prompts(other) * 10)).any()
    source, captions, _ = scenes.sample_source(300, seed=2)
    assert not oracle.present(source).any()  # the subject is absent from the source set
    u = demo.subject_uniforms(sub, 60, 9, "near-miss")
    contexts = [scenes.CONTEXT_NAMES[i % len(scenes.CONTEXTS)] for i in range(60)]
    for pattern in demo.PATTERNS:
        if pattern != sub.pattern:
            assert not oracle.present(demo.render_subject(sub, contexts, u, pattern=pattern)).any()
    for kind in SHAPE_KINDS:
        if kind != sub.kind:
            assert not oracle.present(demo.render_subject(sub, contexts, u, kind=kind)).any()
    assert not oracle.present(np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)).any()
    truth = demo.render_subject(sub, contexts, u)
    assert oracle.present(truth).all()
    # the right subject in the wrong context: present, but the prompt is not followed
    wrong = [f"a prt {sub.class_noun} {scenes.CONTEXTS[(i + 1) % len(scenes.CONTEXTS)].phrase}" for i in range(60)]
    assert not oracle.context_follows(truth, wrong).any()
    report = oracle.report(truth, wrong)
    assert report["subject_present_rate"] == 1.0 and report["both_rate"] == 0.0


def test_vocabulary_covers_captions_and_prompts():
    words = set(demo.demo_vocabulary())
    _, captions, _ = scenes.sample_source(200, seed=0)
    prompts = [p for name in demo.SUBJECTS for p in demo.demo_prompts(name)]
    assert {w for text in captions + prompts for w in text.split()} <= words


def test_codec_images_are_broader_than_the_captioned_set():
    images = scenes.sample_codec_images(400, seed=0)
    assert images.shape == (400, 32, 32, 3) and np.array_equal(images[:50], scenes.sample_codec_images(50, seed=0))
    assert (scenes.classify_context(images) >= 0).all()  # every context, drawn as in the captioned set
    # objects of random colours, solid or patterned: a look-alike of a demo subject is a rare coincidence
    assert all(demo.SubjectOracle(name).present(images).mean() <= 0.01 for name in demo.SUBJECTS)
    centre = images[:, 12:20, 12:20].reshape(400, -1, 3).astype(int)
    two_tone = (np.abs(centre - centre[:, :1]).max(-1) > 60).mean(1) > 0.2
    assert 0.4 < two_tone.mean() < 0.95  # about 3/4 are patterned
    with pytest.raises(ValueError, match="unknown pattern"):
        scenes.pattern_labels("dots", np.zeros((1, 20)), 32, 3.0)


def test_codec_images_draw_vivid_colours_and_never_a_subjects_pattern_in_its_colours():
    import colorsys

    u = np.random.default_rng(0).random((50, 3))
    assert np.allclose(scenes.vivid_colours(u), [colorsys.hsv_to_rgb(h, 0.75 + 0.25 * s, 0.8 + 0.2 * v)
                                                 for h, s, v in u], atol=1e-6)
    plain, vivid = scenes.sample_codec_images(400, seed=0), scenes.sample_codec_images(400, seed=0, vivid_share=1.0)
    saturation = lambda images: np.ptp(images[:, 12:20, 12:20].astype(int), axis=-1).mean()
    assert saturation(vivid) > saturation(plain) + 40
    # a subject's pattern in (nearly) its colours is drawn with the next pattern instead; the rest is unchanged
    sub = demo.SUBJECTS["striped_circle"]
    avoid = [(sub.pattern, sub.colours)]
    wide = scenes.sample_codec_images(400, seed=0, vivid_share=1.0, avoid=avoid, avoid_distance=0.8)
    changed = (wide != vivid).any((1, 2, 3))
    assert 0 < changed.sum() < 100
    kept = scenes.sample_codec_images(400, seed=0, vivid_share=1.0, avoid=avoid, avoid_distance=0.0)
    assert np.array_equal(kept, vivid)
    with pytest.raises(ValueError, match="unknown pattern"):
        scenes.sample_codec_images(4, seed=0, avoid=[("dots", sub.colours)])
    with pytest.raises(ValueError, match="vivid_share"):
        scenes.sample_codec_images(4, seed=0, vivid_share=1.5)
    # pattern_weights: (checker, hstripes, vstripes, solid); equal weights are the plain draw
    assert np.array_equal(scenes.sample_codec_images(50, seed=0, pattern_weights=(2, 2, 2, 2)), plain[:50])
    solid = scenes.sample_codec_images(100, seed=0, vivid_share=1.0, pattern_weights=(0, 0, 0, 1))
    checker = scenes.sample_codec_images(100, seed=0, vivid_share=1.0, pattern_weights=(1, 0, 0, 0))
    def changes_both_ways(images):  # colour steps down the rows and along them near the centre (object edges too)
        centre = images[:, 13:19, 13:19].astype(int)
        steps = [(np.abs(np.diff(centre, axis=axis)).max(-1) > 60).mean((1, 2)) > 0.1 for axis in (1, 2)]
        return (steps[0] & steps[1]).mean()

    assert changes_both_ways(solid) < 0.3 and changes_both_ways(checker) > 0.8
    with pytest.raises(ValueError, match="pattern_weights"):
        scenes.sample_codec_images(4, seed=0, pattern_weights=(1, 1, 1))


def test_scene_judge_reads_kind_colour_and_context_of_source_scenes():
    images, captions, factors = scenes.sample_source(120, seed=5)
    seen = scenes.judge_scenes(images)
    assert seen["valid"].all()
    for key in ("kind", "colour", "context"):
        assert np.array_equal(seen[key], factors[key])
    report = scenes.caption_report(images, captions)
    assert report["all_rate"] == 1.0 and report["n"] == 120
    # the same images under shuffled captions follow them only by chance
    wrong = scenes.caption_report(images, captions[1:] + captions[:1])
    assert wrong["all_rate"] < 0.3


def test_scene_judge_rejects_blank_patterned_and_two_object_scenes():
    images, _, _ = scenes.sample_source(8, seed=1)
    blank = scenes.render_background(np.arange(8) % len(scenes.CONTEXTS), scenes.scene_uniforms(8, 0, "t"), 32)
    assert not scenes.judge_scenes(scenes.quantize(blank))["valid"].any()
    patterned = demo.render_prompt_truth("checker_square", demo.demo_prompts("checker_square"))
    assert not scenes.judge_scenes(patterned)["valid"].any()
    doubled = images.copy()
    doubled[:, 4:12, 2:10] = (np.array(scenes.SOURCE_COLOURS["red"]) * 255).astype(np.uint8)
    doubled[:, 4:12, 22:30] = (np.array(scenes.SOURCE_COLOURS["blue"]) * 255).astype(np.uint8)
    assert not scenes.judge_scenes(doubled)["valid"].any()
    assert scenes.parse_caption("a red circle on the beach") == (0, 0, scenes.context_index("beach"))
    assert scenes.parse_caption("a square") == (1, -1, -1)
    with pytest.raises(ValueError, match="one caption per image"):
        scenes.caption_report(images, ["a circle"])
