"""Experiment tracking behind a small interface (MLflow, or nothing).

Files in the run folder (stats.jsonl, checkpoints, metrics files) are the source of truth; a
tracker only mirrors them for browsing, and a tracking failure never raises into training or
evaluation (the MLflow tracker, its failure policy and its handling of a shared SQLite database are
in unidad.mlflow_tracker). Only misuse (an unknown tracker kind or run status) raises.

The training job calls `start_run`, which writes `run_dir/mlflow_run.json`; later jobs (evaluation,
a resumed training job) call `tracker_for_run_dir(run_dir)` to log into the same MLflow run.
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


@runtime_checkable
class Tracker(Protocol):
    """What training and evaluation code may ask of a tracker."""

    def start_run(self, run_name: str, tags: Mapping[str, Any], params: Mapping[str, Any], run_dir: Path) -> str:
        """Open a new run, log tags and the (nested) config; returns the run id ("" when untracked)."""

    def resume_run(self, run_id: str, reopen: bool = False) -> None:
        """Log into an existing run from now on (reopen=True also marks it RUNNING again)."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

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
