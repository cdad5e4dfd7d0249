"""The MLflow tracker: a run folder mirrored into MLflow through `MlflowClient`.

Files in the run folder (stats.jsonl, checkpoints, metrics files) are the source of truth; the
tracker only mirrors them into MLflow for browsing. Hence the failure policy: a tracking call that
still fails after a few retries logs ONE warning line and returns; it never raises into training or
evaluation. After `MAX_CONSECUTIVE_FAILURES` failed calls in a row the tracker switches itself off
for the rest of the process (one more warning says so). Only misuse (an unknown run status) raises.

Training jobs do not write a SQLite database (unidad.tracking), but a few processes may still write
one at once (the import jobs of two workflows, a script): MLflow itself waits on a locked database
(SQLite busy timeout of 20 s per session); on top of that every call is retried with exponential
backoff on transient errors ('database is locked', connection errors), and the first-time creation
of the database tables is serialised across processes by a lock file next to the database.

Nothing here touches MLflow's process-wide state: no `mlflow.set_tracking_uri`, no active run, no
MLFLOW_TRACKING_URI written to the environment. The one environment variable set is
MLFLOW_DISABLE_TELEMETRY (unless already set), because MLflow decides at import time whether to send
usage telemetry over the network and an environment variable is the only switch it reads then.

`start_run` writes `run_dir/mlflow_run.json`, from which unidad.tracking.tracker_for_run_dir reopens
the run in later jobs. Which jobs write the store at all (training jobs only with an MLflow server; with
a file-based store one import job) is decided in unidad.tracking.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import posixpath
import random
import re
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml

from unidad.atomic import write_text_atomic

logger = logging.getLogger("unidad.tracking")  # one logger for every tracking message

RUN_RECORD_FILE = "mlflow_run.json"
RESOLVED_CONFIG_ARTIFACT = "resolved_config.yaml"
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
MAX_CONSECUTIVE_FAILURES = 3

# MLflow's limits (mlflow/utils/validation.py, MLflow 3): values longer than these are rejected or
# cut by MLflow itself, keys must match _ALLOWED_KEY_CHARS and be clean relative paths.
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_PARAMS_OR_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
_DISALLOWED_KEY_CHARS = re.compile(r"[^/\w.\- :]")
_TRUNCATION_MARK = "...[truncated; full value in resolved_config.yaml]"

T = TypeVar("T")


def check_status(status: str) -> None:
    if status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {status!r}; use one of {', '.join(RUN_STATUSES)}")


# ----------------------------------------------------------------------------------------------
# URIs


def default_tracking_uri(results_dir: str | os.PathLike = "results") -> str:
    """SQLite database in the results folder (MLflow 3 deprecates the plain file store)."""
    return f"sqlite:///{Path(results_dir).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None, results_dir: str | os.PathLike = "results") -> str:
    """The config's URI, else $MLFLOW_TRACKING_URI, else the default SQLite file. Relative SQLite
    paths become absolute, so jobs started in another folder find the same database."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(results_dir)
    path = _sqlite_path(uri)
    if path is not None:
        uri = f"sqlite:///{path.resolve()}"
    return uri


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


# ----------------------------------------------------------------------------------------------
# Params


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return str(value)


def _is_nested(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and any(isinstance(v, (Mapping, list, tuple)) for v in value)


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {"train.lr": "0.0001", ...}. Lists of dicts/lists are indexed
    ("method.stages.0.name"), lists of scalars stay one JSON value."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, f"{name}.") if value else {name: "{}"})
        elif _is_nested(value):
            flat.update(flatten_params({str(i): v for i, v in enumerate(value)}, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps([_plain(v) for v in value])
        else:
            flat[name] = _scalar_text(value)
    return flat


def mlflow_key(raw: str) -> str:
    """A key MLflow accepts: disallowed characters become '_', and a key that had to change or be
    shortened gets a short hash of the original so that two keys never collapse into one."""
    key = _DISALLOWED_KEY_CHARS.sub("_", str(raw))
    normalised = posixpath.normpath(key)
    if normalised != key or normalised == "." or key.startswith(("..", "/")):
        key = key.replace("/", "_").lstrip(".") or "_"
    if key == raw and len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.sha1(str(raw).encode()).hexdigest()[:8]
    return f"{key[: MAX_KEY_LENGTH - 9]}-{digest}"


def _truncate(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    return value[: limit - len(_TRUNCATION_MARK)] + _TRUNCATION_MARK


def _plain(obj: Any) -> Any:
    """Config -> only dicts, lists and YAML scalars (safe_dump refuses tuples, Paths...)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


# ----------------------------------------------------------------------------------------------
# Errors and retries


_TRANSIENT_MESSAGES = ("database is locked", "database is busy", "database table is locked",
                       "unable to open database", "temporarily unavailable")
_TRANSIENT_TYPES = ("OperationalError", "ConnectionError", "Timeout", "ConnectTimeout", "ReadTimeout",
                    "TimeoutError")


def _is_transient(error: BaseException) -> bool:
    """Locked database / lost connection anywhere in the exception chain."""
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ in _TRANSIENT_TYPES:
            return True
        if getattr(current, "error_code", None) == "TEMPORARILY_UNAVAILABLE":
            return True
        text = str(current).lower()
        if any(m in text for m in _TRANSIENT_MESSAGES):
            return True
        current = current.__cause__ or current.__context__
    return False


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"


def _tracked(fallback: Callable[["MlflowTracker"], Any] = lambda tracker: None):
    """Apply the failure policy to a public MlflowTracker method; `fallback(tracker)` is returned
    instead of raising."""

    def wrap(method: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(method)
        def guarded(self: "MlflowTracker", *args, **kwargs):
            if self.disabled:
                return fallback(self)
            try:
                result = method(self, *args, **kwargs)
            except Exception as e:
                self._failed(method.__name__.lstrip("_"), e)
                return fallback(self)
            self._consecutive_failures = 0
            return result

        return guarded

    return wrap


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _import_mlflow_client():
    switched_off_here = "MLFLOW_DISABLE_TELEMETRY" not in os.environ
    imported_before = "mlflow" in sys.modules
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    if switched_off_here and imported_before:  # MLflow read the switch at its import: make it re-read
        from mlflow.telemetry import set_telemetry_client

        set_telemetry_client()
    return MlflowClient


# ----------------------------------------------------------------------------------------------
# MLflow


class MlflowTracker:
    """Mirror a run into MLflow through `MlflowClient` (no global MLflow state)."""

    def __init__(self, tracking_uri: str | None, experiment: str, attempts: int = 3, backoff_s: float = 0.5):
        if not experiment:
            raise ValueError("an MLflow experiment name is needed, e.g. 'unidad-bench/demo'")
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment = experiment
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.run_id = ""
        self.disabled = False
        self._consecutive_failures = 0
        self._client = None
        # jitter from a private generator: the global `random` state belongs to training (resume)
        self._jitter = random.Random()

    # -- plumbing ---------------------------------------------------------------------------

    def _failed(self, operation: str, error: BaseException) -> None:
        self._consecutive_failures += 1
        logger.warning("tracking: %s failed (%s); continuing without it, the files in the run folder "
                       "are the record", operation, _one_line(error))
        if self._consecutive_failures >= MAX_CONSECUTIVE_FAILURES or not self.run_id:
            self.disabled = True
            logger.warning("tracking: MLflow tracking switched off for the rest of this process (%s)",
                           self.tracking_uri)

    def _retry(self, call: Callable[..., T], *args, **kwargs) -> T:
        for attempt in range(self.attempts):
            try:
                return call(*args, **kwargs)
            except Exception as e:
                if attempt == self.attempts - 1 or not _is_transient(e):
                    raise
                delay = self.backoff_s * 2**attempt * self._jitter.uniform(1.0, 1.5)
                logger.info("tracking: transient error (%s), retrying in %.1f s", _one_line(e), delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _connect(self):
        """The client, created once; the first use of a new SQLite file creates its tables, which
        must not run in two processes at once."""
        if self._client is None:
            client_class = _import_mlflow_client()
            db_path = _sqlite_path(self.tracking_uri)
            lock = _exclusive_lock(db_path.with_name(db_path.name + ".lock")) if db_path else contextlib.nullcontext()
            with lock:  # MlflowClient() opens the store, which creates/migrates the tables
                self._client = self._retry(client_class, tracking_uri=self.tracking_uri)
        return self._client

    def _experiment_id(self) -> str:
        client = self._connect()
        found = self._retry(client.get_experiment_by_name, self.experiment)
        if found is None:
            db_path = _sqlite_path(self.tracking_uri)
            # next to the database, not MLflow's default ./mlruns under whatever the cwd is
            location = (db_path.parent / "mlflow-artifacts").as_uri() if db_path else None
            try:
                return self._retry(client.create_experiment, self.experiment, artifact_location=location)
            except Exception as e:
                if getattr(e, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
                    raise
                found = self._retry(client.get_experiment_by_name, self.experiment)  # created by a parallel job
        if found.lifecycle_stage != "active":
            raise RuntimeError(f"MLflow experiment '{self.experiment}' is deleted; restore it "
                               "(mlflow experiments restore) or choose another experiment name")
        return found.experiment_id

    def _log_batch(self, metrics=(), params=(), tags=()) -> None:
        self._retry(self._connect().log_batch, self.run_id, metrics=list(metrics), params=list(params),
                    tags=list(tags), synchronous=True)

    def _log_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(mlflow_key(k), _truncate(_scalar_text(v), MAX_TAG_VALUE_LENGTH)) for k, v in tags.items()]
        for i in range(0, len(items), MAX_PARAMS_OR_TAGS_PER_BATCH):
            self._log_batch(tags=items[i: i + MAX_PARAMS_OR_TAGS_PER_BATCH])

    def _log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(mlflow_key(k), _truncate(v, MAX_PARAM_VALUE_LENGTH)) for k, v in flatten_params(params).items()]
        for i in range(0, len(items), MAX_PARAMS_OR_TAGS_PER_BATCH):
            self._log_batch(params=items[i: i + MAX_PARAMS_OR_TAGS_PER_BATCH])

    def _write_run_record(self, run_dir: Path, experiment_id: str) -> None:
        record = {"tracking_uri": self.tracking_uri, "experiment": self.experiment,
                  "experiment_id": experiment_id, "run_id": self.run_id}
        write_text_atomic(run_dir / RUN_RECORD_FILE, json.dumps(record, indent=2) + "\n")

    # -- the Tracker interface --------------------------------------------------------------

    @_tracked(fallback=lambda tracker: tracker.run_id)
    def start_run(self, run_name: str, tags: Mapping[str, Any], params: Mapping[str, Any], run_dir: Path,
                  write_record: bool = True) -> str:
        """New run; writes run_dir/mlflow_run.json right after creating it, so the run stays usable
        (and resumable) even if logging its tags or params fails. write_record=False (the import job,
        unidad.mlflow_import, which keeps its own record) writes nothing into run_dir."""
        run_dir = Path(run_dir)
        experiment_id = self._experiment_id()
        run = self._retry(self._connect().create_run, experiment_id, run_name=run_name)
        self.run_id = run.info.run_id
        if write_record:
            self._write_run_record(run_dir, experiment_id)
        self._log_tags({**tags, "unidad.run_dir": str(run_dir.resolve())})
        self._log_params(params)
        with tempfile.TemporaryDirectory(prefix="unidad-tracking-") as tmp:
            config_file = Path(tmp) / RESOLVED_CONFIG_ARTIFACT
            config_file.write_text(yaml.safe_dump(_plain(params), sort_keys=False))
            self._retry(self._connect().log_artifact, self.run_id, str(config_file))
        return self.run_id

    @_tracked()
    def resume_run(self, run_id: str, reopen: bool = False) -> None:
        run = self._retry(self._connect().get_run, run_id)
        if run.info.lifecycle_stage != "active":
            raise RuntimeError(f"MLflow run {run_id} is deleted; restore it or start a new run")
        self.run_id = run_id
        if reopen:
            self._retry(self._connect().update_run, run_id, status="RUNNING")

    @_tracked(fallback=lambda tracker: False)
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> bool:
        """True when every value was logged."""
        self._require_run("log_metrics")
        self._log_points([(k, v, step) for k, v in metrics.items()])
        return True

    @_tracked(fallback=lambda tracker: False)
    def log_metric_points(self, points: Sequence[tuple[str, float, int]]) -> bool:
        """(key, value, step) points of any keys and steps, in batches of MLflow's maximum size; True
        when every point was logged."""
        self._require_run("log_metric_points")
        self._log_points(points)
        return True

    def _log_points(self, points: Sequence[tuple[str, float, int]]) -> None:
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        items = [Metric(mlflow_key(k), float(v), now_ms, int(step)) for k, v, step in points]
        for i in range(0, len(items), MAX_METRICS_PER_BATCH):
            self._log_batch(metrics=items[i: i + MAX_METRICS_PER_BATCH])

    @_tracked(fallback=lambda tracker: None)
    def logged_points(self, prefix: str = "") -> set[tuple[str, int, float]] | None:
        """(key, step, value) of every point the run holds under keys starting with `prefix`; None when
        the store cannot be read."""
        self._require_run("logged_points")
        client = self._connect()
        run = self._retry(client.get_run, self.run_id)
        points = set()
        for key in run.data.metrics:
            if key.startswith(prefix):
                points.update((key, int(m.step), float(m.value))
                              for m in self._retry(client.get_metric_history, self.run_id, key))
        return points

    @_tracked()
    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._require_run("log_artifact")
        path = Path(path)
        if path.is_dir():
            self._retry(self._connect().log_artifacts, self.run_id, str(path), artifact_path)
        elif path.is_file():
            self._retry(self._connect().log_artifact, self.run_id, str(path), artifact_path)
        else:
            raise FileNotFoundError(f"no file or folder at {path}")

    @_tracked()
    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._require_run("set_tags")
        self._log_tags(tags)

    def end_run(self, status: str = "FINISHED") -> bool:
        """True when the run was marked `status`."""
        check_status(status)
        return self._end_run(status)

    @_tracked(fallback=lambda tracker: False)
    def _end_run(self, status: str) -> bool:
        self._require_run("end_run")
        self._retry(self._connect().set_terminated, self.run_id, status=status)
        return True

    def _require_run(self, operation: str) -> None:
        if not self.run_id:
            raise RuntimeError(f"{operation} before start_run/resume_run")

