"""Run folders and evaluation numbers into MLflow: the one job that writes a file-based store.

Training jobs write their record to files only: run.yaml (the resolved run, its environment) and
stats.jsonl (step-indexed losses, gradient norms, learning rates). With a file-based store (the
default `sqlite:///<results_dir>/mlflow.db`) no training job opens it: SQLite on a shared cluster
filesystem under many concurrent writers gives "database is locked" and corrupt databases. The
`mlflow_import` rule runs this once per DAG run, on the submitting machine, after the tidy table:

- one MLflow run per training run folder, named by its slug, tagged as a live run is
  (unidad.tracking.run_tags), with run.yaml flattened into params (and kept as the artifact
  resolved_config.yaml), marked FINISHED once summary.json exists;
- the step-indexed metrics of stats.jsonl (a step written twice - a resumed run repeats the steps
  after its last checkpoint - counts once, the later line wins);
- every evaluation number of the tidy table at its checkpoint's step: `eval/<metric>/nfe<K>` (test
  split) and `eval_val/<metric>/nfe<K>` (validation split).

A run that a training job logged live (an MLflow server; its run_dir/mlflow_run.json names this
store and experiment) is not imported again: only the evaluation numbers are added to it.

Re-importing never duplicates: what went into which store (and experiment) is recorded per run in
run_dir/mlflow_import.json - the MLflow run id, the last stats step imported, every evaluation point
imported, the sha256 of summary.json (a run trained again from scratch gets a new MLflow run) - and
only what is not recorded there is logged. A point is recorded only after MLflow accepted it, so an
import cut short (store unreachable, job killed) is completed by the next one. Tracking failures warn
and never fail the job: the files stay the record.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from unidad.atomic import write_text_atomic
from unidad.mlflow_tracker import MlflowTracker, resolve_tracking_uri
from unidad.tracking import read_run_record, run_tags

IMPORT_RECORD_FILE = "mlflow_import.json"
# After this many training runs in a row could not be imported, the store is taken to be down and
# the remaining runs are not tried (each failure costs its retries).
MAX_FAILED_RUNS_IN_A_ROW = 3


@dataclass
class RunImport:
    """What one import did for one training run."""

    slug: str
    run_id: str = ""
    mode: str = ""  # "imported" (created from the files) | "live" (a training job logged it)
    new_stats_points: int = 0
    new_eval_points: int = 0
    finished: bool = False
    skipped: str = ""  # why nothing was imported (no run.yaml yet, store down)
    error: str = ""


def read_stats(path: str | os.PathLike) -> dict[int, dict[str, float]]:
    """stats.jsonl as step -> finite metric values; a later line for a step replaces an earlier one,
    a line cut short (a killed job) is skipped."""
    stats: dict[int, dict[str, float]] = {}
    path = Path(path)
    if not path.is_file():
        return stats
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
            step = int(record["step"])
        except (ValueError, KeyError, TypeError):
            continue
        stats[step] = {k: float(v) for k, v in record.items()
                       if k != "step" and isinstance(v, (int, float)) and math.isfinite(v)}
    return stats


def eval_points(tidy, slug: str) -> dict[tuple[str, int], float]:
    """(key, step) -> value of every evaluation number of run `slug` in the tidy table (the rows of
    selection 'all': each number once)."""
    if tidy is None or tidy.empty:
        return {}
    rows = tidy[(tidy["slug"] == slug) & (tidy["selection"] == "all")]
    points: dict[tuple[str, int], float] = {}
    for r in rows.itertuples():
        value = float(r.value)
        if not math.isfinite(value):
            continue
        prefix = "eval" if r.split == "test" else f"eval_{r.split}"
        points.setdefault((f"{prefix}/{r.metric}/nfe{int(r.nfe)}", int(r.step)), value)
    return points


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _read_ledger(run_dir: Path) -> dict[str, Any]:
    path = run_dir / IMPORT_RECORD_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {"stores": {}}
    except ValueError:
        return {"stores": {}}  # unreadable: import afresh (a new MLflow run) rather than fail


def _write_ledger(run_dir: Path, ledger: Mapping[str, Any]) -> None:
    write_text_atomic(run_dir / IMPORT_RECORD_FILE, json.dumps(ledger, indent=1) + "\n")


def store_key(tracking_uri: str, experiment: str) -> str:
    return f"{experiment} @ {tracking_uri}"


def import_run(slug: str, run_dir: str | os.PathLike, evals: Mapping[tuple[str, int], float], tracking_uri: str,
               experiment: str, benchmark: str) -> RunImport:
    """Import one training run folder (and its evaluation numbers) into the store; see the module."""
    run_dir = Path(run_dir)
    result = RunImport(slug)
    run_yaml = run_dir / "run.yaml"
    if not run_yaml.is_file():
        result.skipped = "not trained yet (no run.yaml)"
        return result
    resolved = yaml.safe_load(run_yaml.read_text())
    summary_sha = _sha256(run_dir / "summary.json")
    ledger = _read_ledger(run_dir)
    key = store_key(tracking_uri, experiment)
    entry = ledger["stores"].get(key)
    record = read_run_record(run_dir)
    live = (record is not None and record.get("tracking_uri") == tracking_uri
            and record.get("experiment") == experiment)
    if entry is not None:
        retrained = entry.get("summary_sha256") not in (None, summary_sha)
        live_run_changed = live and entry.get("run_id") != record["run_id"]
        if retrained or live_run_changed or (entry.get("mode") == "live") != live:
            entry = None  # a different training run in the same folder: a new MLflow run

    tracker = MlflowTracker(tracking_uri, experiment)
    if entry is None:
        if live:
            tracker.resume_run(record["run_id"])
            if not tracker.run_id:
                result.error = f"the live run {record['run_id']} recorded in mlflow_run.json cannot be opened"
                return result
            # points the run already holds (evaluation numbers logged by the mirror of older versions)
            logged = tracker.logged_points("eval")
            entry = {"experiment": experiment, "run_id": tracker.run_id, "mode": "live",
                     "eval": sorted([k, s, v] for k, s, v in logged or ())}
        else:
            tags = {**run_tags(resolved["run"], benchmark, str(resolved.get("git_commit", "unknown"))),
                    "unidad.imported_from": "files"}
            tracker.start_run(slug, tags=tags, params=resolved, run_dir=run_dir, write_record=False)
            if not tracker.run_id:
                result.error = "could not create the MLflow run"
                return result
            entry = {"experiment": experiment, "run_id": tracker.run_id, "mode": "imported",
                     "stats_last_step": -1, "eval": []}
        entry.update(summary_sha256=summary_sha, finished=False)
        ledger["stores"][key] = entry
        _write_ledger(run_dir, ledger)
    else:
        tracker.resume_run(entry["run_id"])
        if not tracker.run_id:
            result.error = f"the MLflow run {entry['run_id']} recorded in {IMPORT_RECORD_FILE} cannot be opened"
            return result
        entry["summary_sha256"] = summary_sha  # unchanged, or the run has finished since the last import
    result.run_id, result.mode = entry["run_id"], entry["mode"]

    if entry["mode"] == "imported":
        stats = read_stats(run_dir / "stats.jsonl")
        new_steps = sorted(s for s in stats if s > entry["stats_last_step"])
        points = [(k, v, step) for step in new_steps for k, v in stats[step].items()]
        if new_steps:
            if not tracker.log_metric_points(points):
                result.error = "stats.jsonl could not be imported"
                return result
            entry["stats_last_step"] = new_steps[-1]
            result.new_stats_points = len(points)
            _write_ledger(run_dir, ledger)

    done = {(k, int(s), float(v)) for k, s, v in entry["eval"]}
    new_evals = sorted((k, s, v) for (k, s), v in evals.items() if (k, s, v) not in done)
    if new_evals:
        if not tracker.log_metric_points([(k, v, s) for k, s, v in new_evals]):
            result.error = "evaluation numbers could not be imported"
            return result
        entry["eval"] = sorted([k, s, v] for k, s, v in done | set(new_evals))
        result.new_eval_points = len(new_evals)
        _write_ledger(run_dir, ledger)

    if entry["mode"] == "imported" and summary_sha is not None and not entry["finished"]:
        entry["finished"] = tracker.end_run("FINISHED")
    _write_ledger(run_dir, ledger)
    result.finished = bool(entry["finished"]) or entry["mode"] == "live"
    return result


def import_runs(run_dirs: Mapping[str, str | os.PathLike], tidy, benchmark: str, kind: str = "mlflow",
                uri: str | None = None, experiment: str = "unidad-bench",
                results_dir: str | os.PathLike = "results") -> dict[str, Any]:
    """Import every training run folder of `run_dirs` (slug -> folder) and the evaluation numbers of
    the tidy table into the config's store (`tracking` keys kind, uri, experiment; the experiment is
    `<experiment>/<benchmark>` as for live runs). Returns the report the job writes."""
    if kind != "mlflow":
        return {"tracking": kind, "runs": {}}
    tracking_uri = resolve_tracking_uri(uri or None, results_dir)
    experiment = f"{experiment}/{benchmark}"
    report: dict[str, Any] = {"tracking_uri": tracking_uri, "experiment": experiment, "runs": {}}
    failed_in_a_row = 0
    for slug, run_dir in sorted(run_dirs.items()):
        if failed_in_a_row >= MAX_FAILED_RUNS_IN_A_ROW:
            result = RunImport(slug, skipped=f"not tried: the {failed_in_a_row} runs before it failed")
        else:
            result = import_run(slug, run_dir, eval_points(tidy, slug), tracking_uri, experiment, benchmark)
            failed_in_a_row = failed_in_a_row + 1 if result.error else 0
        report["runs"][slug] = asdict(result)
    return report
