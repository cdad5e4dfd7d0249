"""The SDP demo's embedding (trained in the DAG) and its metrics: demo_subject_sim, demo_prompt_sim and the
distance demo_sdp of sdp_diversity. Plumbing with a few training steps; the slow case trains at the
sdp_demo.yaml size and checks that the metrics rank the ground truth above the wrong subject, the wrong
pattern and shuffled prompts (the numbers are printed)."""
from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from unidad.config import load_config_file  # noqa: E402
from unidad.data import scenes  # noqa: E402
from unidad.data.folders import write_image_folder  # noqa: E402
from unidad.data.sdp_demo import SUBJECTS, demo_prompts, make_shots, render_prompt_truth, render_subject  # noqa: E402
from unidad.data.sdp_demo import subject_uniforms  # noqa: E402
from unidad.jobs import params as P  # noqa: E402
from unidad.metrics.demo_sdp_embed import EMBED_ID, SdpEmbedding, caption_vocabulary, read_summary  # noqa: E402
from unidad.metrics.demo_sdp_train import caption_factors, compatible, object_views, train_sdp_embedding  # noqa: E402
from unidad.metrics.extractors import load_distance  # noqa: E402
from unidad.metrics.inputs import MetricInputs  # noqa: E402
from unidad.metrics.registry import get_metric  # noqa: E402
from unidad.plan import Plan  # noqa: E402

PER_PROMPT = 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("sdp_embed") / "embed.safetensors"
    summary = train_sdp_embedding(path, 32, iterations=3, batch_size=8, widths=(4, 8, 8), dim=8, log=None)
    return path, summary


def _inputs(tmp_path, subject, images, prompts, weights, lpips="demo_sdp"):
    shots = write_image_folder(make_shots(subject, 5, seed=0), tmp_path / f"shots_{subject}")
    samples = tmp_path / "samples.npz"
    np.savez(samples, images_nfe1=images, prompts=np.array(prompts), checkpoint="x", timing="{}")
    return MetricInputs(samples=samples, extractor_file=weights, lpips=lpips, shots_dir=shots, shots=5,
                        image_size=32, unique_token="prt", subject=subject)


def _truth(subject, seed=1):
    prompts = [p for p in demo_prompts(subject) for _ in range(PER_PROMPT)]
    return render_prompt_truth(subject, prompts, seed=seed), prompts


# ------------------------------------------------------------------------------------------ plumbing
def test_training_data_views_and_caption_positives():
    a, b = object_views(6, seed=0, image_size=32)
    assert a.shape == b.shape == (6, 32, 32, 3) and a.dtype == np.uint8 and not np.array_equal(a, b)
    images, captions, factors = scenes.sample_source(40, seed=0)
    named = caption_factors(captions, factors)
    pos = compatible(np.stack([factors["kind"], factors["colour"], factors["context"]], 1), named)
    assert pos.diagonal().all()  # every caption describes its own image
    for i, cap in enumerate(captions):  # a caption without a colour names none
        assert (named[i, 1] < 0) == (not any(c in cap.split() for c in scenes.SOURCE_COLOURS))
    assert "prt" not in caption_vocabulary() and {"snow", "floating", "background"} <= set(caption_vocabulary())


def test_file_summary_and_reproducible_bytes(tiny, tmp_path):
    path, summary = tiny
    stored = read_summary(path)
    assert stored["id"] == EMBED_ID and stored["iterations"] == 3 and set(stored["heldout"]) >= {"caption_top1", "view_top1"}
    again = train_sdp_embedding(tmp_path / "again.safetensors", 32, iterations=3, batch_size=8, widths=(4, 8, 8),
                                dim=8, log=None)
    assert again["weights_sha256"] == summary["weights_sha256"]
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a weights file of the SDP demo embedding"):
        SdpEmbedding(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError, match="rule demo_sdp_embedding"):
        read_summary(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="batch_size must be >= 4"):
        train_sdp_embedding(tmp_path / "x.safetensors", 32, iterations=1, batch_size=2, log=None)


def test_metrics_records_through_the_registry(tiny, tmp_path):
    path, _ = tiny
    truth, prompts = _truth("striped_circle")
    inputs = _inputs(tmp_path, "striped_circle", truth, prompts, path)
    subject = get_metric("demo_subject_sim").compute(inputs, 1, truth)
    assert list(subject["params"]["per_prompt"]) == demo_prompts("striped_circle")
    assert -1 <= subject["values"]["demo_subject_sim"] <= 1 and subject["n_reference"] == 5
    assert subject["values"]["demo_subject_sim"] == pytest.approx(np.mean(list(subject["params"]["per_prompt"].values())))
    prompt = get_metric("demo_prompt_sim").compute(inputs, 1, truth)
    assert prompt["params"]["texts"]["a prt circle in the snow"] == "a circle in the snow"
    assert prompt["params"]["unknown_words"] == [] and -1 <= prompt["values"]["demo_prompt_sim"] <= 1
    assert get_metric("demo_prompt_sim").protocol(inputs)["embedding_sha256"] == tiny[1]["weights_sha256"]
    diversity = get_metric("sdp_diversity").compute(inputs, 1, truth)
    assert diversity["extractor"] == "demo-sdp-embed-v1-lpips-style"
    assert diversity["values"]["sdp_intra_lpips"] > 0 and diversity["values"]["sdp_inter_lpips"] > 0
    distance, _ = load_distance("demo_sdp", path)
    x = torch.from_numpy(truth[:4]).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(distance(x, x), torch.zeros(4, dtype=torch.float64))
    assert torch.allclose(distance(x, x.flip(0)), distance(x.flip(0), x))
    with pytest.raises(ValueError, match="needs the SDP demo embedding"):
        get_metric("demo_subject_sim").compute(_inputs(tmp_path, "striped_circle", truth, prompts, None), 1, truth)
    with pytest.raises(ValueError, match="no word of the demo embedding's vocabulary"):
        SdpEmbedding(path).text(["prt zebra"])


def test_the_dag_wires_the_embedding_file():
    config = load_config_file("config/sdp_smoke.yaml")
    plan = Plan(config)
    assert P.demo_extractor_file(plan) == plan.path("demo_sdp_embedding")
    slug = next(iter(plan.runs))
    assert P.metric_inputs(plan, slug, plan.runs[slug].checkpoint_steps[-1])["extractor_file"] == str(plan.path("demo_sdp_embedding"))
    both = copy.deepcopy(config)
    both["evaluation"]["lpips"] = "demo"  # the diversity by the demo CNN, the fidelity by the embedding
    with pytest.raises(ValueError, match="two networks trained in the DAG"):
        P.demo_extractor_file(Plan(both))
    none = copy.deepcopy(config)
    none["evaluation"]["metrics"] = ["sdp_oracle", "speed"]
    assert P.demo_extractor_file(Plan(none)) is None


# ---------------------------------------------------------------------------------------- validation
def _metric_values(tmp_path, weights, subject, images, prompts):
    inputs = _inputs(tmp_path, subject, images, prompts, weights)
    return (get_metric("demo_subject_sim").compute(inputs, 1, images)["values"]["demo_subject_sim"],
            get_metric("demo_prompt_sim").compute(inputs, 1, images)["values"]["demo_prompt_sim"])


@pytest.mark.slow
def test_metrics_rank_the_ground_truth_first(tmp_path):
    """At the sdp_demo.yaml size: the subject's ground truth above another subject's renders and above its
    shape in another pattern; matching prompts above shuffled ones."""
    train = load_config_file("config/sdp_demo.yaml")["evaluation"]["sdp_embedding_train"]
    summary = train_sdp_embedding(tmp_path / "embed.safetensors", 32, **train, log=None)
    weights = tmp_path / "embed.safetensors"
    print(f"\ntrained in {summary['train_seconds']} s ({summary['train_cpu_seconds']} s CPU); held-out {summary['heldout']}")
    names = list(SUBJECTS)
    for i, name in enumerate(names):
        truth, prompts = _truth(name)
        right_subject, right_prompt = _metric_values(tmp_path, weights, name, truth, prompts)
        other = names[(i + 1) % len(names)]
        other_truth, _ = _truth(other)
        wrong_subject, _ = _metric_values(tmp_path, weights, name, other_truth, prompts)
        contexts = [scenes.context_of_prompt(p) for p in prompts]
        pattern = next(p for p in scenes.PATTERNS if p != SUBJECTS[name].pattern)
        wrong_pattern_images = render_subject(name, contexts, subject_uniforms(name, len(prompts), 1, "truth"), pattern=pattern)
        wrong_pattern, _ = _metric_values(tmp_path, weights, name, wrong_pattern_images, prompts)
        shuffled = prompts[PER_PROMPT:] + prompts[:PER_PROMPT]
        _, shuffled_prompt = _metric_values(tmp_path, weights, name, truth, shuffled)
        print(f"{name}: subject sim truth {right_subject:.3f}, {other} {wrong_subject:.3f}, {pattern} pattern "
              f"{wrong_pattern:.3f}; prompt sim matching {right_prompt:.3f}, shuffled {shuffled_prompt:.3f}")
        assert right_subject > max(wrong_subject, wrong_pattern)
        assert right_prompt > shuffled_prompt
