"""Tracking: MLflow runs read back through MlflowClient, resume from the run folder, the failure
policy, and no network access. One SQLite database for the whole module (creating its tables takes
several seconds)."""
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


def test_nothing_reached_the_network():
    from mlflow.telemetry.client import get_telemetry_client

    assert get_telemetry_client() is None
    assert NETWORK_ATTEMPTS == []
