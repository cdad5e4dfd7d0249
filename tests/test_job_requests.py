"""Each job's cluster request, estimated from the plan (unidad/job_requests.py): the work of the job
itself, padded, floored, grown with the attempt, capped by the config; measured rates where they exist."""
import json
import types

import pytest

from unidad.backbones import backbone_kind
from unidad.config import ConfigError, load_config_file
from unidad.job_requests import (
    FLOOR_MEM_MB,
    FLOOR_MINUTES,
    MARGIN,
    MEM_MARGIN,
    SIGNAL_LEAD_SECONDS,
    JobRequests,
    gpu_resources,
    request_mem_mb,
    request_minutes,
)
from unidad.plan import Plan


def requests_for(tmp_path, config="config/config.yaml", **overrides):
    config = load_config_file(config, {"results_dir": str(tmp_path / "results"), **overrides})
    return JobRequests(Plan(config))


# ------------------------------------------------------------------------------ padding the estimate
def test_runtime_request_is_padded_floored_grown_and_capped():
    assert request_minutes(3600) == 90  # 60 min x MARGIN
    assert request_minutes(3600, lead_seconds=SIGNAL_LEAD_SECONDS) == 95
    assert request_minutes(10) == FLOOR_MINUTES
    assert request_minutes(3600, attempt=2) == 180
    assert request_minutes(3600, attempt=3, cap=200) == 200
    assert request_minutes(61) == max(FLOOR_MINUTES, 2)  # whole minutes, rounded up


def test_memory_request_is_padded_floored_grown_and_capped():
    assert request_mem_mb(8000) == 8000 * MEM_MARGIN
    assert request_mem_mb(10) == FLOOR_MEM_MB
    assert request_mem_mb(8000, attempt=2) == 2 * 8000 * MEM_MARGIN
    assert request_mem_mb(60000, cap=64000) == 64000
    # nothing estimated (a staged folder not on disk yet): the configured value, as given
    assert request_mem_mb(None, attempt=2, cap=64000, unknown=32000) == 32000


@pytest.mark.parametrize("gpus, mode, expected", [
    (1, "gpus", {"gpu": 1}),
    (2, "gres", {"gres": "gpu:2"}),
    (1, "gres:a100", {"gres": "gpu:a100:1"}),
    (0, "gres", {"gpu": 0}),
])
def test_gpu_request_as_gpus_or_gres(gpus, mode, expected):
    assert gpu_resources(gpus, mode) == expected


@pytest.mark.parametrize("value, ok", [("gpus", True), ("gres", True), ("gres:h100", True), ("gres:", False),
                                       ("gpu", False)])
def test_config_gpu_request_values(value, ok, tmp_path):
    if ok:
        assert requests_for(tmp_path, gpu_request=value).plan.config["gpu_request"] == value
    else:
        with pytest.raises(ConfigError, match="gpu_request"):
            requests_for(tmp_path, gpu_request=value)


# ------------------------------------------------------------------------------------- estimates
def test_training_job_trains_its_segment(tmp_path):
    # demo dmd2 stages: 400 iterations; segments of 150 end at 150, 300 and 400
    req = requests_for(tmp_path, segment_iters=150)
    slug = next(s for s, r in req.plan.runs.items() if r.stage == "dmd2")
    rate = backbone_kind(req.plan.config["backbone"]).step_seconds["dmd2"]
    startup = req.backbone.startup_seconds
    assert req.plan.segment_ends(slug) == [150, 300, 400]
    assert req.for_rule("train_segment", {"slug": slug, "end": "00000300"}).seconds == pytest.approx(150 * rate + startup)
    last = req.for_rule("train_stage", types.SimpleNamespace(slug=slug))  # Snakemake's wildcards: attributes
    assert last.seconds == pytest.approx(100 * rate + startup) and last.source == "backbone"


def test_training_rate_measured_from_finished_runs(tmp_path):
    req = requests_for(tmp_path)
    done, other = [s for s, r in req.plan.runs.items() if r.stage == "dmd2"][:2]
    summary = req.plan.summary(done)
    summary.parent.mkdir(parents=True)
    summary.write_text(json.dumps({"step": 400, "wall_seconds": 200.0}))
    est = req.train(other)
    assert est.source == "measured"
    assert est.seconds == pytest.approx(400 * 0.5 + req.backbone.startup_seconds)


def test_sampling_and_metrics_grow_with_the_nfes_of_the_checkpoint(tmp_path):
    req = requests_for(tmp_path)
    plan, n, bb = req.plan, req.n_samples, req.backbone
    slug = next(s for s, r in plan.runs.items() if r.stage == "unidad")
    first, last = plan.runs[slug].checkpoint_steps[0], plan.runs[slug].checkpoint_steps[-1]
    assert req.nfes(slug, first) == [3] and req.nfes(slug, last) == [1, 2, 3, 4]
    assert req.sample(slug, first).seconds == pytest.approx(3 * n * bb.image_step_seconds + bb.startup_seconds)
    assert req.sample(slug, last).seconds == pytest.approx(10 * n * bb.image_step_seconds + bb.startup_seconds)
    per_image = bb.metric_image_seconds + bb.lpips_image_seconds  # the demo measures Intra-LPIPS
    assert req.checkpoint_metrics(slug, last).seconds == pytest.approx(4 * n * per_image + bb.startup_seconds)
    assert req.sample(slug, last).mem_mb > req.sample(slug, first).mem_mb


def test_metrics_without_intra_lpips_cost_less(tmp_path):
    req = requests_for(tmp_path, evaluation={"metrics": ["fid", "kid"]})
    slug, step = req.plan.eval_checkpoints[0]
    per_image = req.backbone.metric_image_seconds
    assert req.checkpoint_metrics(slug, step).seconds == pytest.approx(
        len(req.nfes(slug, step)) * req.n_samples * per_image + req.backbone.startup_seconds)


def test_sampling_rate_measured_from_benchmark_files(tmp_path):
    req = requests_for(tmp_path)
    (slug, step), (other, other_step) = req.plan.eval_checkpoints[:2]
    units = sum(req.nfes(slug, step)) * req.n_samples
    bench = req.plan.path("benchmark", rule="sample_checkpoint", job=f"{slug}_step{step:08d}")
    bench.parent.mkdir(parents=True)
    bench.write_text("s\th:m:s\tmax_rss\n" f"{req.backbone.startup_seconds + units * 0.01}\t0:01:00\t500\n")
    est = req.sample(other, other_step)
    assert est.source == "measured"
    units_other = sum(req.nfes(other, other_step)) * req.n_samples
    assert est.seconds == pytest.approx(units_other * 0.01 + req.backbone.startup_seconds)


def test_memory_of_a_staged_dataset_needs_it_on_disk(tmp_path):
    data = tmp_path / "faces"
    config = {"datasets": {"source": {"kind": "folder", "path": str(data)}},
              "source": {"kind": "pretrain", "dataset": "source"}}
    req = requests_for(tmp_path, **config)
    teacher = req.plan.teacher_slug
    assert req.train(teacher).mem_mb is None  # not staged yet: the configured mem_mb is asked for
    data.mkdir()
    for i in range(3):
        (data / f"{i}.png").write_bytes(b"")
    req = requests_for(tmp_path, **config)
    assert req.dataset_images("source", "train") == 3
    assert req.train(teacher).mem_mb == pytest.approx(2 * req.backbone.host_mem_mb + 3 * 16 * 16 * 3 * 5 / 2**20)


def test_rules_without_an_estimate_ask_for_their_kind(tmp_path):
    req = requests_for(tmp_path)
    assert req.for_rule("tables", {}) is None and req.for_rule("verify_staged_folder", {}) is None
    assert req.for_rule("teacher_report", {}).seconds > 0
    assert req.for_rule("reference_statistics", {"dataset": "near", "split": "full", "extractor": "demo"}).seconds > 0


def test_paper_sampling_members_of_a_group_ask_for_less_than_twice_their_work(tmp_path):
    """Snakemake sums a group's member runtimes: each member's request stays within 2x its own work
    (the floor aside), so four of them ask for what they need together, not 4 x a per-kind constant."""
    req = requests_for(tmp_path, "config/paper_fsig.yaml")
    ratios = [request_minutes(req.sample(s, st).seconds) * 60 / req.sample(s, st).seconds
              for s, st in req.plan.eval_checkpoints]
    assert max(ratios) < 2 and min(ratios) >= MARGIN
