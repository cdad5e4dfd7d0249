"""The text-conditioned demo's wiring in the DAG: its dataset kinds, the VAE the DAG fits, the teacher's
prompts, the subject oracle as a metric, and the metric jobs' inputs (no demo extractor for it)."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from unidad.config import ConfigError, load_config_file, validate_config
from unidad.data.captioned import load_captioned_folder
from unidad.data.scenes import sample_source
from unidad.data.sdp_demo import demo_prompts, make_shots, render_prompt_truth
from unidad.jobs import params as P
from unidad.jobs.data import write_demo_split
from unidad.metrics.inputs import MetricInputs
from unidad.metrics.registry import get_metric
from unidad.plan import Plan


@pytest.fixture(scope="module")
def config():
    return load_config_file("config/sdp_smoke.yaml")


def test_dataset_kinds_are_validated(config):
    bad = copy.deepcopy(config)
    bad["datasets"]["striped_circle"]["subject"] = "striped_cube"
    with pytest.raises(ConfigError, match="datasets.striped_circle.subject.*checker_square"):
        validate_config(bad)
    bad = load_config_file("config/smoke.yaml")
    bad["backbone"]["vae_fit"] = {"steps": 2}
    with pytest.raises(ConfigError, match="backbone.vae_fit is for kind tiny_sd"):
        validate_config(bad)


def test_the_dag_writes_the_captioned_source_and_the_subject_shots(tmp_path):
    write_demo_split({"kind": "demo_captions", "train_size": 12, "seed": 3}, "train", 32, tmp_path / "captions")
    images, captions = load_captioned_folder(tmp_path / "captions", 32)
    expected, expected_captions, _ = sample_source(12, seed=3 + 101, image_size=32)
    assert np.array_equal(images, expected) and captions == expected_captions

    subject = {"kind": "demo_subject", "subject": "striped_circle", "seed": 0}
    write_demo_split(subject, "k5", 32, tmp_path / "shots")
    from unidad.data.folders import load_image_folder
    assert np.array_equal(load_image_folder(tmp_path / "shots", image_size=32), make_shots("striped_circle", 5, seed=0, image_size=32))
    with pytest.raises(ValueError, match="has no split 'full'"):
        write_demo_split(subject, "full", 32, tmp_path / "full")


def test_plan_resolves_the_fitted_vae_and_the_teacher_prompts(config):
    plan = Plan(config)
    assert plan.backbone["params"]["vae_dir"] == str(plan.path("demo_vae"))
    assert "vae_dir" not in config["backbone"]["params"]  # the teacher's identity never sees the results folder
    assert plan.demo_subject("striped_circle") == "striped_circle" and plan.demo_subject("captions") is None
    assert plan.teacher_sampling == {"kind": "many_step", "sampler": "euler", "steps": 3, "guidance": 2.0}
    spec = P.teacher_subject_prompts(plan)["subject_prompts"]["striped_circle"]
    assert spec["prompts"] == ["a circle in the snow"] * 2 + ["a circle on the beach"] * 2
    assert spec["seeds"] == [config["evaluation"]["sample_seed_offset"] + j for j in (0, 1, 0, 1)]
    # the demo SDP metrics read the SDP demo embedding, never the FSIG demo extractor
    assert P.demo_extractor_file(plan) == plan.path("demo_sdp_embedding")
    slug = next(s for s, r in plan.runs.items() if r.target == "striped_circle")
    assert P.metric_inputs(plan, slug, plan.runs[slug].checkpoint_steps[-1])["subject"] == "striped_circle"
    assert P.teacher_subject_prompts(Plan(load_config_file("config/smoke.yaml"))) == {}


def _inputs(tmp_path, images, prompts, subject="striped_circle"):
    path = tmp_path / "samples.npz"
    np.savez(path, images_nfe1=images, prompts=np.array(prompts), checkpoint="x", timing="{}")
    return MetricInputs(samples=path, subject=subject, unique_token="prt")


def test_subject_oracle_metric_on_the_ground_truth_and_on_the_wrong_subject(tmp_path):
    prompts = [p for p in demo_prompts("striped_circle") for _ in range(4)]
    truth = render_prompt_truth("striped_circle", prompts, seed=1, image_size=32)
    metric = get_metric("sdp_oracle")
    record = metric.compute(_inputs(tmp_path, truth, prompts), 1, truth)
    assert record["values"] == {"oracle_subject": 1.0, "oracle_context": 1.0, "oracle_subject_context": 1.0}
    assert set(record["params"]["subject_present_per_prompt"]) == set(demo_prompts("striped_circle"))

    other = render_prompt_truth("checker_square", [p.replace("circle", "square") for p in prompts], seed=1, image_size=32)
    record = metric.compute(_inputs(tmp_path, other, prompts), 1, other)
    assert record["values"]["oracle_subject"] == 0.0 and record["values"]["oracle_context"] == 1.0
    # shuffled prompts: the subject stays, the context no longer follows (5 contexts, 4 images each)
    shuffled = prompts[4:] + prompts[:4]
    record = metric.compute(_inputs(tmp_path, truth, shuffled), 1, truth)
    assert record["values"]["oracle_subject"] == 1.0 and record["values"]["oracle_context"] == 0.0

    skipped = metric.compute(_inputs(tmp_path, truth, prompts, subject=None), 1, truth)
    assert "skipped" in skipped["params"]
    with pytest.raises(ValueError, match="one prompt per sample"):
        metric.compute(_inputs(tmp_path, truth, prompts[:-1]), 1, truth)
