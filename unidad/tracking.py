"""Experiment tracking behind a small interface (MLflow, or nothing).

Files in the run folder (run.yaml, stats.jsonl, checkpoints, metrics files) are the source of truth;
a tracker only mirrors them for browsing, and a tracking failure never raises into training or
evaluation (the MLflow tracker, its failure policy and its handling of a shared SQLite database are
in unidad.mlflow_tracker). Only misuse (an unknown tracker kind or run status) raises.

Who writes the MLflow store depends on what the store is (`logs_live`):

- a file-based store (the default `sqlite:///<results_dir>/mlflow.db`, or `file:`): training jobs never
  open it. They write run.yaml and stats.jsonl only, and ONE job on the submitting machine (the
  `mlflow_import` rule, unidad.mlflow_import) imports every run folder and the evaluation numbers
  into it. SQLite on a shared cluster filesystem (NFS, Lustre) under many concurrent writers is what
  produces "database is locked" and "database disk image is malformed".
- an MLflow tracking server (`tracking.uri: http(s)://...`): the server serialises writes, so the
  training job logs live: it calls `start_run`, which writes `run_dir/mlflow_run.json`, and logs
  its stats as it trains; the import job then adds the evaluation numbers to that same run.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from unidad.mlflow_tracker import RUN_RECORD_FILE, MlflowTracker, check_status, resolve_tracking_uri

logger = logging.getLogger(__name__)

TRACKER_KINDS = ("mlflow", "none")
# Tracking URIs of an MLflow server (which serialises concurrent writers): the only stores training
# jobs write themselves.
SERVER_URI_PREFIXES = ("http://", "https://", "databricks")


@runtime_checkable
class Tracker(Protocol):
    """What training and evaluation code may ask of a tracker."""

    def start_run(self, run_name: str, tags: Mapping[str, Any], params: Mapping[str, Any], run_dir: Path) -> str:
        """Open a new run, log tags and the (nested) config; returns the run id ("" when untracked)."""

    def resume_run(self, run_id: str, reopen: bool = False) -> None:
        """Log into an existing run from now on (reopen=True also marks it RUNNING again)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> bool | None: ...

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None: ...

    def set_tags(self, tags: Mapping[str, Any]) -> None: ...

    def end_run(self, status: str = "FINISHED") -> None: ...


class NullTracker:
    """Tracks nothing (tracking: none, and tests)."""

    run_id = ""

    def start_run(self, run_name, tags, params, run_dir) -> str:
        return ""

    def resume_run(self, run_id, reopen=False) -> None:
        pass

    def log_metrics(self, metrics, step) -> None:
        pass

    def log_artifact(self, path, artifact_path=None) -> None:
        pass

    def set_tags(self, tags) -> None:
        pass

    def end_run(self, status="FINISHED") -> None:
        check_status(status)


# ----------------------------------------------------------------------------------------------
# Factories


def make_tracker(kind: str, uri: str | None, experiment: str, results_dir: str | os.PathLike = "results") -> Tracker:
    """kind 'mlflow' (uri None -> $MLFLOW_TRACKING_URI or results/mlflow.db) or 'none'."""
    if kind == "none":
        return NullTracker()
    if kind == "mlflow":
        return MlflowTracker(resolve_tracking_uri(uri, results_dir), experiment)
    raise ValueError(f"unknown tracker kind {kind!r}; use one of {', '.join(TRACKER_KINDS)}")


def is_server_uri(uri: str) -> bool:
    return uri.startswith(SERVER_URI_PREFIXES)


def logs_live(kind: str, uri: str | None, results_dir: str | os.PathLike = "results") -> bool:
    """Whether training jobs log into the tracker themselves: only an MLflow tracking server (the
    config's `tracking.uri`, else $MLFLOW_TRACKING_URI) takes writes from many jobs at once. With a
    file-based store (SQLite by default) the `mlflow_import` job imports the run folders instead."""
    return kind == "mlflow" and is_server_uri(resolve_tracking_uri(uri or None, results_dir))


def run_tags(run: Mapping[str, Any], benchmark: str, git_commit: str) -> dict[str, str]:
    """The tags of a training run's MLflow entry (the same whether it is logged live or imported)."""
    return {"method": run["method"] or "shared", "dataset": run["target"] or run["data"]["dataset"],
            "seed": str(run["seed"]), "stage": run["stage"], "stage_name": run["stage_name"],
            "benchmark": benchmark, "shots": str(run["shots"] or ""), "git_commit": git_commit,
            "slug": run["slug"]}


def read_run_record(run_dir: str | os.PathLike) -> dict[str, str] | None:
    path = Path(run_dir) / RUN_RECORD_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def tracker_for_run_dir(run_dir: str | os.PathLike, reopen: bool = False) -> Tracker:
    """A tracker logging into the run recorded in run_dir/mlflow_run.json; a NullTracker when the
    run was not tracked (no record)."""
    record = read_run_record(run_dir)
    if record is None:
        logger.info("tracking: no %s in %s; this job is not tracked", RUN_RECORD_FILE, run_dir)
        return NullTracker()
    tracker = MlflowTracker(record["tracking_uri"], record["experiment"])
    tracker.resume_run(record["run_id"], reopen=reopen)
    return tracker
