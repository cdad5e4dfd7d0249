"""Tracking: MLflow runs read back through MlflowClient, resume from the run folder, the failure
policy, who writes the store (training jobs only with a server; else the import job), the import
job's idempotence, and no network access. One SQLite database for the whole module (creating its tables takes
several seconds)."""
import json
import logging
import os
import random
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
import yaml

from unidad.mlflow_tracker import (
    MAX_PARAM_VALUE_LENGTH,
    RUN_RECORD_FILE,
    MlflowTracker,
    default_tracking_uri,
    flatten_params,
    mlflow_key,
)
from unidad.tracking import NullTracker, Tracker, make_tracker, read_run_record, tracker_for_run_dir

EXPERIMENT = "unidad-bench/test"
NETWORK_ATTEMPTS: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def no_network():
    """Every attempt to open a non-local socket or resolve a name is recorded and refused."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded_connect(real):
        def connect(sock, address):
            if sock.family != socket.AF_UNIX:
                NETWORK_ATTEMPTS.append(f"connect {address}")
                raise OSError("network access blocked in tests")
            return real(sock, address)

        return connect

    def refuse(what):
        def call(*args, **kwargs):
            NETWORK_ATTEMPTS.append(f"{what} {args[:2]}")
            raise OSError("network access blocked in tests")

        return call

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", guarded_connect(real_connect))
        patch.setattr(socket.socket, "connect_ex", guarded_connect(real_connect_ex))
        patch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
        patch.setattr(socket, "create_connection", refuse("create_connection"))
        yield


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    """A fresh database, created through the tracker (the locked first-use path)."""
    db = tmp_path_factory.mktemp("tracking") / "mlflow.db"
    uri = f"sqlite:///{db}"
    MlflowTracker(uri, EXPERIMENT)._connect()
    assert db.is_file() and db.with_name("mlflow.db.lock").is_file()
    return uri


@pytest.fixture(scope="module")
def client(tracking_uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def nested_config():
    return {
        "benchmark": "demo",
        "train": {"lr": 1e-4, "iterations": 20, "ema": None, "flip": True, "milestones": [5, 10]},
        "method": {"stages": [{"name": "ft", "steps": 2}, {"name": "unidad", "steps": 3}]},
        "prompt[0]": "a photo of sks dog",
        "long": "x" * (MAX_PARAM_VALUE_LENGTH + 1000),
        "empty": {},
    }


def test_flatten_params_and_keys():
    flat = flatten_params(nested_config())
    assert flat["train.lr"] == "0.0001"
    assert flat["train.ema"] == "null" and flat["train.flip"] == "true"
    assert flat["train.milestones"] == "[5, 10]"
    assert flat["method.stages.1.name"] == "unidad"
    assert flat["empty"] == "{}"
    assert mlflow_key("train.lr") == "train.lr"
    assert mlflow_key("prompt[0]").startswith("prompt_0_-") and mlflow_key("prompt[0]") != mlflow_key("prompt_0_")
    assert mlflow_key("../up").startswith("_up-") and mlflow_key("a//b").startswith("a__b-")
    assert mlflow_key(".").startswith("_-")
    assert len(mlflow_key("k" * 400)) == 250


def test_run_round_trip(tracking_uri, client, tmp_path):
    run_dir = tmp_path / "results" / "demo" / "unidad" / "seed0"
    stats = run_dir / "stats.jsonl"
    run_dir.mkdir(parents=True)
    stats.write_text('{"step": 1}\n')
    (run_dir / "samples").mkdir()
    (run_dir / "samples" / "grid.txt").write_text("grid")

    tracker = MlflowTracker(tracking_uri, EXPERIMENT)
    run_id = tracker.start_run("demo-unidad-seed0", tags={"method": "unidad", "seed": 0},
                               params=nested_config(), run_dir=run_dir)
    assert run_id and not tracker.disabled
    for step in range(3):
        tracker.log_metrics({"gen/loss": 1.0 / (step + 1), "lr": 1e-4}, step=step)
    tracker.log_artifact(stats)
    tracker.log_artifact(run_dir / "samples", artifact_path="samples")
    tracker.set_tags({"stage": "done"})
    tracker.end_run()

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "demo-unidad-seed0"
    assert client.get_experiment(run.info.experiment_id).name == EXPERIMENT
    params = run.data.params
    assert params["train.lr"] == "0.0001" and params["method.stages.0.name"] == "ft"
    assert params[mlflow_key("prompt[0]")] == "a photo of sks dog"
    assert len(params["long"]) == MAX_PARAM_VALUE_LENGTH and params["long"].endswith("resolved_config.yaml]")
    tags = run.data.tags
    assert tags["method"] == "unidad" and tags["seed"] == "0" and tags["stage"] == "done"
    assert tags["unidad.run_dir"] == str(run_dir.resolve())
    history = client.get_metric_history(run_id, "gen/loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]

    assert {a.path for a in client.list_artifacts(run_id)} == {"resolved_config.yaml", "stats.jsonl", "samples"}
    assert [a.path for a in client.list_artifacts(run_id, "samples")] == ["samples/grid.txt"]
    db_folder = tracking_uri.removeprefix("sqlite:///").rsplit("/", 1)[0]
    assert run.info.artifact_uri.startswith(f"file://{db_folder}/mlflow-artifacts/")
    local = client.download_artifacts(run_id, "resolved_config.yaml", str(tmp_path))
    assert yaml.safe_load(open(local))["train"]["milestones"] == [5, 10]

    assert read_run_record(run_dir) == {"tracking_uri": tracking_uri, "experiment": EXPERIMENT,
                                        "experiment_id": run.info.experiment_id, "run_id": run_id}


def test_a_later_job_logs_into_the_training_run(tracking_uri, client, tmp_path):
    trainer = MlflowTracker(tracking_uri, EXPERIMENT)
    run_id = trainer.start_run("train", tags={}, params={"a": 1}, run_dir=tmp_path)
    trainer.log_metrics({"gen/loss": 0.3}, step=10)
    trainer.end_run("FAILED")

    evaluator = tracker_for_run_dir(tmp_path)
    assert isinstance(evaluator, MlflowTracker) and evaluator.run_id == run_id
    evaluator.log_metrics({"fid": 41.5}, step=10)
    evaluator.log_metrics({"fid": 30.25}, step=20)
    assert client.get_run(run_id).info.status == "FAILED"  # evaluation leaves the status alone
    fid = sorted(client.get_metric_history(run_id, "fid"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in fid] == [(10, 41.5), (20, 30.25)]

    resumed_training = tracker_for_run_dir(tmp_path, reopen=True)
    assert client.get_run(run_id).info.status == "RUNNING"
    resumed_training.end_run()
    assert client.get_run(run_id).info.status == "FINISHED"


def test_parallel_writers_on_one_database(tracking_uri, client, tmp_path):
    tracker = MlflowTracker(tracking_uri, EXPERIMENT)
    run_id = tracker.start_run("parallel", tags={}, params={}, run_dir=tmp_path)

    def write(worker: int) -> None:
        mine = tracker_for_run_dir(tmp_path)
        for step in range(10):
            mine.log_metrics({f"worker{worker}": float(step)}, step=step)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for worker in range(4):
        assert len(client.get_metric_history(run_id, f"worker{worker}")) == 10


JOB = """
import sys
from unidad.mlflow_tracker import MlflowTracker
uri, run_dir = sys.argv[1], sys.argv[2]
tracker = MlflowTracker(uri, "unidad-bench/parallel")
tracker.start_run(run_dir, tags={}, params={"job": run_dir}, run_dir=run_dir)
for step in range(20):
    tracker.log_metrics({"loss": float(step)}, step=step)
tracker.end_run()
sys.exit(1 if tracker.disabled else 0)
"""


@pytest.mark.slow
def test_parallel_jobs_on_a_fresh_database(tmp_path, client):
    """Jobs that start together on a new database: table creation must happen once (concurrent
    migrations corrupt it), the experiment is created once, every write arrives."""
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    jobs = [subprocess.Popen([sys.executable, "-c", JOB, uri, str(tmp_path / f"run{i}")], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [job.communicate(timeout=120)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    assert not any("tracking:" in out for out in outputs), outputs

    from mlflow.tracking import MlflowClient

    fresh = MlflowClient(tracking_uri=uri)
    runs = fresh.search_runs([fresh.get_experiment_by_name("unidad-bench/parallel").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 2
    assert all(len(fresh.get_metric_history(r.info.run_id, "loss")) == 20 for r in runs)


def test_transient_errors_are_retried_and_others_are_not(tracking_uri):
    tracker = MlflowTracker(tracking_uri, EXPERIMENT, attempts=4, backoff_s=0.001)
    calls = []

    def locked_twice():
        calls.append(1)
        if len(calls) <= 2:
            raise sqlite3.OperationalError("database is locked")
        return "ok"

    assert tracker._retry(locked_twice) == "ok" and len(calls) == 3

    def broken():
        calls.append(1)
        raise ValueError("bad value")

    calls.clear()
    with pytest.raises(ValueError):
        tracker._retry(broken)
    assert len(calls) == 1


def test_tracking_failures_warn_and_never_raise(tracking_uri, tmp_path, caplog, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    caplog.set_level(logging.WARNING, logger="unidad.tracking")
    unreachable = MlflowTracker(f"sqlite:///{blocker}/mlflow.db", EXPERIMENT, attempts=1)
    assert unreachable.start_run("x", tags={}, params={"a": 1}, run_dir=tmp_path / "r1") == ""
    assert unreachable.disabled
    unreachable.log_metrics({"loss": 1.0}, step=0)  # a no-op now, no exception
    unreachable.end_run()
    assert "tracking: start_run failed" in caplog.text
    assert not (tmp_path / "r1" / RUN_RECORD_FILE).exists()

    caplog.clear()
    tracker = MlflowTracker(tracking_uri, EXPERIMENT, attempts=2, backoff_s=0.001)
    tracker.start_run("locked", tags={}, params={}, run_dir=tmp_path / "r2")

    def always_locked(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(tracker._connect(), "log_batch", always_locked)
    for step in range(3):
        tracker.log_metrics({"loss": 1.0}, step=step)
    assert caplog.text.count("tracking: log_metrics failed") == 3
    assert tracker.disabled and "switched off" in caplog.text

    with pytest.raises(ValueError, match="unknown run status 'DONE'"):
        tracker.end_run("DONE")


def test_tracking_leaves_the_global_rng_alone(tracking_uri, tmp_path):
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    tracker = MlflowTracker(tracking_uri, EXPERIMENT)
    tracker.start_run("rng", tags={"a": "b"}, params={"x": 1}, run_dir=tmp_path)
    tracker.log_metrics({"m": 1.0}, step=0)
    tracker.end_run()
    after = (random.getstate(), np.random.get_state()[1], torch.get_rng_state())
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and torch.equal(before[2], after[2])


def test_null_tracker_and_factories(tmp_path, monkeypatch):
    null = make_tracker("none", None, EXPERIMENT)
    assert isinstance(null, NullTracker) and isinstance(null, Tracker)
    assert null.start_run("r", {}, {"a": {"b": 1}}, tmp_path) == ""
    null.resume_run("anything")
    null.log_metrics({"a": 1.0}, step=0)
    null.log_artifact(tmp_path / "missing")
    null.set_tags({"a": 1})
    null.end_run("FAILED")
    assert not (tmp_path / RUN_RECORD_FILE).exists()
    assert isinstance(tracker_for_run_dir(tmp_path), NullTracker)

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = make_tracker("mlflow", None, EXPERIMENT, results_dir=tmp_path / "results")
    assert isinstance(default, Tracker)
    assert default.tracking_uri == default_tracking_uri(tmp_path / "results")
    assert default.tracking_uri == f"sqlite:///{(tmp_path / 'results' / 'mlflow.db').resolve()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert make_tracker("mlflow", None, EXPERIMENT).tracking_uri == "http://tracking.example:5000"
    assert make_tracker("mlflow", "sqlite:///rel/x.db", EXPERIMENT).tracking_uri == f"sqlite:///{os.path.abspath('rel/x.db')}"
    with pytest.raises(ValueError, match="unknown tracker kind 'wandb'; use one of mlflow, none"):
        make_tracker("wandb", None, EXPERIMENT)


# ----------------------------------------------------------------------------------------------
# Who writes the store: training jobs only with an MLflow server; otherwise the import job


def test_only_a_server_store_is_logged_live(tmp_path, monkeypatch):
    from unidad.tracking import logs_live

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert not logs_live("mlflow", "", tmp_path)  # the default: sqlite in the results folder
    assert not logs_live("mlflow", f"sqlite:///{tmp_path}/x.db", tmp_path)
    assert not logs_live("mlflow", f"file://{tmp_path}/mlruns", tmp_path)
    assert logs_live("mlflow", "http://mlflow.cluster:5000", tmp_path)
    assert logs_live("mlflow", "https://mlflow.example.org", tmp_path)
    assert not logs_live("none", "http://mlflow.cluster:5000", tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.cluster:5000")
    assert logs_live("mlflow", "", tmp_path)  # the environment's server, as resolve_tracking_uri reads it


def _teacher_job(tmp_path, tracking):
    """The demo's source-teacher training job, 3 iterations on 8 tiny images, on the CPU."""
    from PIL import Image

    import unidad.jobs.params as P
    from unidad.config import validate_config
    from unidad.plan import Plan

    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / "config" / "config.yaml").read_text())
    cfg["results_dir"] = str(tmp_path / "results")
    cfg["tracking"] = tracking
    cfg["device"] = "cpu"
    plan = Plan(validate_config(cfg))
    job = P.stage_job(plan, plan.teacher_slug)
    job["run"]["params"].update(iterations=3, batch_size=4, checkpoint_every=3, log_every=1, warmup_iters=1)
    data = Path(job["data_dir"])
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(data / f"{i:03d}.png")
    return job


def test_a_training_job_never_opens_a_sqlite_store(tmp_path, monkeypatch):
    """tracking kind mlflow with the default (SQLite) store: the job writes run.yaml and stats.jsonl
    and neither creates nor opens the database; the import job brings them in later."""
    from unidad.jobs.train import StageJob, run_stage

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    opened = []
    real_connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: opened.append(a[0] if a else k) or real_connect(*a, **k))

    def no_tracker(*args, **kwargs):
        raise AssertionError("a training job opened an MLflow tracker on a file-based store")

    monkeypatch.setattr("unidad.mlflow_tracker.MlflowTracker.__init__", no_tracker)
    job = _teacher_job(tmp_path, {"kind": "mlflow"})
    db = tmp_path / "results" / "mlflow.db"
    summary = run_stage(StageJob.from_dict(job), threads=1)

    run_dir = Path(job["run_dir"])
    assert summary["complete"] and (run_dir / "summary.json").is_file()
    assert len((run_dir / "stats.jsonl").read_text().splitlines()) == 3
    assert not db.exists() and not db.with_name("mlflow.db.lock").exists()
    assert not [p for p in opened if "mlflow" in str(p)], opened
    assert not (run_dir / RUN_RECORD_FILE).exists()
    resolved = yaml.safe_load((run_dir / "run.yaml").read_text())
    assert resolved["environment"]["gpu"] == "cpu" and resolved["environment"]["torch"] == torch.__version__
    assert resolved["git_commit"] == resolved["environment"]["git_commit"]


class RecordingTracker(NullTracker):
    calls: list = []

    def __init__(self, *args, **kwargs):
        self.run_id = ""

    def start_run(self, run_name, tags, params, run_dir):
        self.calls.append(("start_run", run_name, tags["slug"]))
        self.run_id = "live-run"
        return self.run_id

    def log_metrics(self, metrics, step):
        self.calls.append(("log_metrics", step))
        return True

    def end_run(self, status="FINISHED"):
        self.calls.append(("end_run", status))


def test_a_training_job_logs_live_to_an_mlflow_server(tmp_path, monkeypatch):
    from unidad.jobs.train import StageJob, run_stage

    created = []
    monkeypatch.setattr("unidad.tracking.make_tracker",
                        lambda kind, uri, experiment, results_dir: created.append((uri, experiment)) or RecordingTracker())
    RecordingTracker.calls = []
    job = _teacher_job(tmp_path, {"kind": "mlflow", "uri": "http://mlflow.cluster:5000"})
    run_stage(StageJob.from_dict(job), threads=1)
    assert created == [("http://mlflow.cluster:5000", "unidad-bench/demo")]
    slug = job["run"]["slug"]
    assert RecordingTracker.calls == [("start_run", slug, slug), ("log_metrics", 1), ("log_metrics", 2),
                                      ("log_metrics", 3), ("end_run", "FINISHED")]
    assert not (tmp_path / "results" / "mlflow.db").exists()


# ----------------------------------------------------------------------------------------------
# The import job


def _trained_run(run_dir: Path, slug: str, steps=(1, 2, 3), summary="done") -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    run = {"slug": slug, "stage": "unidad", "stage_name": "unidad", "method": "unidad", "target": "near",
           "data": {"dataset": "near", "split": "shots", "shots": 10}, "seed": 1, "shots": 10,
           "params": {"lr": 0.0003, "iterations": 3}}
    resolved = {"run": run, "benchmark": "demo", "git_commit": "abc123",
                "environment": {"python": "3.11.7", "torch": "2.14.1", "gpu": "cpu", "git_dirty": False}}
    (run_dir / "run.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    lines = [{"step": s, "gen/loss": 1.0 / s, "gen/lr": 1e-4} for s in steps]
    # a run resumed from step 1 repeats step 2 (written before the preemption): the later line wins
    lines.insert(1, {"step": 2, "gen/loss": 9.0, "gen/lr": 1e-4})
    (run_dir / "stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 4, "gen/lo')
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps({"step": steps[-1], "note": summary}))
    return run_dir


def _tidy(slug, rows):
    import pandas as pd

    return pd.DataFrame([{"slug": slug, "selection": sel, "split": split, "metric": metric, "nfe": nfe,
                          "step": step, "value": value} for sel, split, metric, nfe, step, value in rows])


def _history(client, run_id, key):
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_import_creates_one_run_per_training_run_and_never_duplicates(tracking_uri, client, tmp_path):
    from unidad.mlflow_import import IMPORT_RECORD_FILE, import_runs

    slug = "near-k10__unidad-1234__seed1"
    run_dir = _trained_run(tmp_path / "runs" / slug, slug)
    untrained = tmp_path / "runs" / "not-yet"
    tidy = _tidy(slug, [("all", "test", "fid", 1, 3, 41.5), ("all", "val", "fid", 1, 3, 40.0),
                        ("final", "test", "fid", 1, 3, 41.5), ("all", "test", "fid", 4, 3, 30.25)])
    kwargs = dict(kind="mlflow", uri=tracking_uri, experiment="unidad-bench/imports")

    report = import_runs({slug: str(run_dir), "not-yet": str(untrained)}, tidy, "demo", **kwargs)
    assert report["experiment"] == "unidad-bench/imports/demo" and report["tracking_uri"] == tracking_uri
    assert report["runs"]["not-yet"]["skipped"].startswith("not trained yet")
    first = report["runs"][slug]
    assert first["mode"] == "imported" and first["finished"] and not first["error"]
    assert first["new_stats_points"] == 6 and first["new_eval_points"] == 3
    assert not (run_dir / RUN_RECORD_FILE).exists()  # the import keeps its own record
    assert (run_dir / IMPORT_RECORD_FILE).is_file()

    run = client.get_run(first["run_id"])
    assert run.info.run_name == slug and run.info.status == "FINISHED"
    assert run.data.params["run.params.lr"] == "0.0003" and run.data.params["environment.torch"] == "2.14.1"
    assert run.data.tags["method"] == "unidad" and run.data.tags["git_commit"] == "abc123"
    assert _history(client, run.info.run_id, "gen/loss") == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert _history(client, run.info.run_id, "eval/fid/nfe1") == [(3, 41.5)]
    assert _history(client, run.info.run_id, "eval_val/fid/nfe1") == [(3, 40.0)]
    assert _history(client, run.info.run_id, "eval/fid/nfe4") == [(3, 30.25)]

    again = import_runs({slug: str(run_dir)}, tidy, "demo", **kwargs)["runs"][slug]
    assert again["run_id"] == first["run_id"]
    assert (again["new_stats_points"], again["new_eval_points"]) == (0, 0)
    assert _history(client, run.info.run_id, "gen/loss") == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert _history(client, run.info.run_id, "eval/fid/nfe1") == [(3, 41.5)]

    # a new checkpoint's numbers: only they are added
    more = pd_concat(tidy, _tidy(slug, [("all", "test", "fid", 1, 6, 35.0)]))
    added = import_runs({slug: str(run_dir)}, more, "demo", **kwargs)["runs"][slug]
    assert added["new_eval_points"] == 1 and added["new_stats_points"] == 0
    assert _history(client, run.info.run_id, "eval/fid/nfe1") == [(3, 41.5), (6, 35.0)]

    # trained again from scratch in the same folder: a new MLflow run
    _trained_run(run_dir, slug, summary="retrained")
    retrained = import_runs({slug: str(run_dir)}, tidy, "demo", **kwargs)["runs"][slug]
    assert retrained["run_id"] != first["run_id"] and retrained["new_stats_points"] == 6
    experiment = client.get_experiment_by_name("unidad-bench/imports/demo")
    assert len(client.search_runs([experiment.experiment_id])) == 2


def pd_concat(*frames):
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def test_import_adds_numbers_to_a_run_logged_live(tracking_uri, client, tmp_path):
    """A training job logged into this store itself (a server; or an older version of the workflow):
    its stats are not imported twice, the evaluation numbers join its run, numbers it already holds are
    not logged again."""
    from unidad.mlflow_import import import_runs

    slug = "far-k10__ft-99__seed0"
    run_dir = _trained_run(tmp_path / slug, slug)
    live = MlflowTracker(tracking_uri, "unidad-bench/live/demo")
    run_id = live.start_run(slug, tags={}, params={"a": 1}, run_dir=run_dir)
    live.log_metrics({"gen/loss": 0.5}, step=2)
    live.log_metrics({"eval/fid/nfe1": 41.5}, step=3)  # what the evaluation mirror used to log
    live.end_run()

    tidy = _tidy(slug, [("all", "test", "fid", 1, 3, 41.5), ("all", "test", "kid", 1, 3, 0.01)])
    report = import_runs({slug: str(run_dir)}, tidy, "demo", uri=tracking_uri, experiment="unidad-bench/live")
    result = report["runs"][slug]
    assert result["run_id"] == run_id and result["mode"] == "live"
    assert (result["new_stats_points"], result["new_eval_points"]) == (0, 1)
    assert _history(client, run_id, "gen/loss") == [(2, 0.5)]
    assert _history(client, run_id, "eval/fid/nfe1") == [(3, 41.5)]
    assert _history(client, run_id, "eval/kid/nfe1") == [(3, 0.01)]
    assert client.get_run(run_id).info.status == "FINISHED"


def test_import_with_tracking_none_or_an_unreachable_store(tmp_path, caplog):
    from unidad.mlflow_import import IMPORT_RECORD_FILE, import_runs

    slug = "near-k10__ft-1__seed0"
    run_dir = _trained_run(tmp_path / slug, slug)
    assert import_runs({slug: str(run_dir)}, None, "demo", kind="none") == {"tracking": "none", "runs": {}}
    assert not list(tmp_path.rglob("*.db")) and not (run_dir / IMPORT_RECORD_FILE).exists()

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    caplog.set_level(logging.WARNING, logger="unidad.tracking")
    report = import_runs({slug: str(run_dir)}, None, "demo", uri=f"sqlite:///{blocker}/mlflow.db")
    assert report["runs"][slug]["error"] == "could not create the MLflow run"
    assert not (run_dir / IMPORT_RECORD_FILE).exists()
    assert "tracking: start_run failed" in caplog.text


def test_mlflow_import_is_a_local_job_after_the_tidy_table():
    text = (Path(__file__).resolve().parents[1] / "workflow" / "rules" / "evaluate.smk").read_text()
    rule = text[text.index("rule mlflow_import:"):]
    assert "localrule: True" in rule and 'tidy=out("tidy_parquet")' in rule
    assert "tracking" not in text[text.index("rule tidy_results:"):text.index("rule mlflow_import:")]


def test_nothing_reached_the_network():  # keep last: it checks every test above
    from mlflow.telemetry.client import get_telemetry_client

    assert get_telemetry_client() is None
    assert NETWORK_ATTEMPTS == []
