"""What each job asks the cluster for: its run time and memory, estimated from the plan job by job.

Snakemake adds up the runtimes of a group job's members (the SLURM plugin runs them one after
another), so each job asks for its own need, never a constant of its kind:

  training    iterations of the segment the job trains x seconds per iteration
  sampling    the NFEs it samples, summed, x images x seconds per image-step
  metrics     NFEs x images x seconds per image (features, Intra-LPIPS)
  reference   images x seconds per image-step (about one network pass per image)

each plus the backbone's start-up cost. Rates come from finished work where there is some (seconds per
iteration from the runs' summary.json, per stage kind; sampling and metrics from the Snakemake benchmark
files of finished jobs), else from the backbone's figures (unidad.backbones). Memory: the backbone's
process memory plus the images the job holds at once.

A request pads the estimate (x MARGIN, at least FLOOR_MINUTES / FLOOR_MEM_MB), grows with the attempt (a
retry after a timeout or an out-of-memory kill asks for 2x, then 3x) and stops at the config's
`resources.<kind>.runtime` / `mem_mb` where set: the most one job may ask for (the partition's limit). A
job alone in its SLURM job also asks for the SIGNAL_LEAD_SECONDS before its limit at which SLURM signals
it; a group job's members do not each (that would add one lead per member): the group's margin holds
one lead once its members' work passes 10 minutes (ci/check_group_requests.py checks it).
"""
from __future__ import annotations

import json
import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from unidad.backbones import backbone_kind
from unidad.paths import PATHS
from unidad.plan import Plan

#: the request is the estimate times this (estimates are rough; a job that runs out of time is lost)
MARGIN = 1.5
MEM_MARGIN = 1.25
#: no job asks for less
FLOOR_MINUTES = 5
FLOOR_MEM_MB = 1000
#: SLURM signals a job this long before its time limit (profiles/slurm: --signal=USR1@300); a training
#: job then saves a checkpoint and exits, so its request holds this on top of its work
SIGNAL_LEAD_SECONDS = 300

#: the benchmark file name of a checkpoint's sampling and metrics jobs (rules' `benchmark:`)
CHECKPOINT_JOB = "{slug}_step{step}"
_CHECKPOINT_JOB = re.compile(r"(?P<slug>.+)_step(?P<step>\d+)")
_MB = 2**20


@dataclass(frozen=True)
class Estimate:
    """What one job needs: seconds of work (start-up included) and peak memory in MB (None where the
    plan cannot tell, e.g. a staged dataset not on disk yet); `source` says where the rate came from."""

    seconds: float
    mem_mb: float | None
    source: str


def request_minutes(seconds: float, attempt: int = 1, cap: int | None = None, lead_seconds: float = 0.0) -> int:
    """The runtime (minutes) a job asks for: the padded estimate plus `lead_seconds`, at least the floor,
    times the attempt, at most `cap`."""
    minutes = max(FLOOR_MINUTES, math.ceil((MARGIN * seconds + lead_seconds) / 60)) * max(1, int(attempt))
    return minutes if cap is None else min(minutes, int(cap))


def request_mem_mb(mb: float | None, attempt: int = 1, cap: int | None = None, unknown: int = FLOOR_MEM_MB) -> int:
    """The memory (MB) a job asks for: as request_minutes; `unknown` (as given) where nothing is estimated."""
    if mb is None:
        return int(unknown)
    need = max(FLOOR_MEM_MB, math.ceil(MEM_MARGIN * mb)) * max(1, int(attempt))
    return need if cap is None else min(need, int(cap))


def gpu_resources(gpus: int, request: str = "gpus") -> dict[str, Any]:
    """How a job asks SLURM for its GPUs (config `gpu_request`): the plugin's `gpu` resource (sbatch
    --gpus=N), or `gres` / `gres:<type>`: a generic resource (sbatch --gres=gpu:N / gpu:<type>:N)."""
    if gpus == 0 or request == "gpus":
        return {"gpu": int(gpus)}
    gpu_type = request.partition(":")[2]
    return {"gres": f"gpu:{gpu_type}:{gpus}" if gpu_type else f"gpu:{gpus}"}


# ------------------------------------------------------------------------------ benchmark files
@dataclass(frozen=True)
class BenchmarkRecord:
    """One Snakemake benchmark file: the job's seconds, peak resident memory (MB) and CPU seconds; `end`
    is the file's modification time, written when the job ended."""

    rule: str
    job: str
    seconds: float
    max_rss_mb: float | None
    cpu_seconds: float | None
    end: float


def benchmark_dir(root: Path) -> Path:
    """Where the rules' `benchmark:` files go: results/<benchmark>/benchmarks/<rule>/<job>.tsv."""
    return root / PATHS["benchmark"].split("/")[0]


def _number(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):  # "-" or "NA" where psutil could not measure
        return None


def read_benchmarks(root: Path) -> list[BenchmarkRecord]:
    """Every benchmark file under a results folder (one record each: the job's latest run)."""
    base = benchmark_dir(root)
    records = []
    for path in sorted(base.glob("*/*.tsv")) if base.is_dir() else []:
        lines = path.read_text().splitlines()
        if len(lines) < 2:
            continue
        row = dict(zip(lines[0].split("\t"), lines[1].split("\t")))
        seconds = _number(row.get("s"))
        if seconds is not None:
            records.append(BenchmarkRecord(path.parent.name, path.stem, seconds, _number(row.get("max_rss")),
                                           _number(row.get("cpu_time")), path.stat().st_mtime))
    return records


# ------------------------------------------------------------------------------------- estimates
def measured_step_seconds(plan: Plan) -> dict[str, float]:
    """Seconds per iteration of every stage kind that has finished runs under this results folder."""
    per_kind: dict[str, list[float]] = defaultdict(list)
    for slug, run in plan.runs.items():
        path = plan.summary(slug)
        if path.exists():
            s = json.loads(path.read_text())
            if s.get("step"):
                per_kind[run.stage].append(s["wall_seconds"] / s["step"])
    return {k: sum(v) / len(v) for k, v in per_kind.items()}


def _image_mb(n: int, size: int) -> float:
    return n * size * size * 3 / _MB


def _field(wildcards: Any, key: str) -> str:
    return wildcards[key] if isinstance(wildcards, Mapping) else getattr(wildcards, key)


class JobRequests:
    """The estimates of one plan's jobs. Measured rates are read once, on first use."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.backbone = backbone_kind(plan.config["backbone"])
        self.n_samples = int(plan.config["evaluation"]["n_samples"])
        self.metrics = list(plan.config["evaluation"]["metrics"])
        self._folder_sizes: dict[str, int | None] = {}

    def for_rule(self, rule: str, wildcards: Any) -> Estimate | None:
        """The estimate of one job of a rule (wildcards: Snakemake's or a mapping); None for rules whose
        jobs ask for their kind's resources as configured."""
        if rule in ("train_stage", "train_segment"):
            end = int(_field(wildcards, "end")) if rule == "train_segment" else None
            return self.train(_field(wildcards, "slug"), end)
        if rule in ("sample_checkpoint", "checkpoint_metrics"):
            job = self.sample if rule == "sample_checkpoint" else self.checkpoint_metrics
            return job(_field(wildcards, "slug"), int(_field(wildcards, "step")))
        if rule == "reference_statistics":
            return self.reference(_field(wildcards, "dataset"), _field(wildcards, "split"))
        if rule == "teacher_report":
            return self.teacher_report()
        return None

    # -- rates ------------------------------------------------------------------------------------
    @cached_property
    def step_seconds(self) -> dict[str, float]:
        return measured_step_seconds(self.plan)

    @cached_property
    def _benchmarks(self) -> dict[str, list[BenchmarkRecord]]:
        by_rule: dict[str, list[BenchmarkRecord]] = defaultdict(list)
        for rec in read_benchmarks(self.plan.root):
            by_rule[rec.rule].append(rec)
        return by_rule

    def _checkpoint_rate(self, rule: str, units, default: float) -> tuple[float, str]:
        """Median seconds per unit of work (start-up taken off) of a rule's finished checkpoint jobs."""
        rates = []
        for rec in self._benchmarks.get(rule, []):
            m = _CHECKPOINT_JOB.fullmatch(rec.job)
            if m and m["slug"] in self.plan.runs and (n := units(m["slug"], int(m["step"]))) > 0:
                rates.append(max(0.0, rec.seconds - self.backbone.startup_seconds) / n)
        return (statistics.median(rates), "measured") if rates else (default, "backbone")

    @cached_property
    def image_step_seconds(self) -> tuple[float, str]:
        return self._checkpoint_rate("sample_checkpoint", self._image_steps, self.backbone.image_step_seconds)

    @cached_property
    def metric_image_seconds(self) -> tuple[float, str]:
        per_image = self.backbone.metric_image_seconds
        if "intra_lpips" in self.metrics:
            per_image += self.backbone.lpips_image_seconds
        return self._checkpoint_rate("checkpoint_metrics", self._metric_images, per_image)

    # -- work and images ---------------------------------------------------------------------------
    @cached_property
    def _checkpoint_nfes(self) -> dict[tuple[str, int], list[int]]:
        """(run, step) -> the NFEs it is sampled at (Plan.checkpoint_nfes, for every checkpoint at once)."""
        nfes: dict[tuple[str, int], set[int]] = defaultdict(set)
        for unit in self.plan.eval_units:
            nfes[unit.slug, unit.step].add(unit.nfe)
        return {key: sorted(v) for key, v in nfes.items()}

    def nfes(self, slug: str, step: int) -> list[int]:
        return self._checkpoint_nfes.get((slug, step), [])

    def _image_steps(self, slug: str, step: int) -> int:
        return sum(self.nfes(slug, step)) * self.n_samples

    def _metric_images(self, slug: str, step: int) -> int:
        return len(self.nfes(slug, step)) * self.n_samples

    def dataset_images(self, dataset: str, split: str, shots: int | None = None) -> int | None:
        """Images in a dataset split (train, full, val, shots with `shots`, or a wildcard's kN): the shot
        count, a demo split's configured size, or the files of a staged folder (None while not on disk)."""
        if re.fullmatch(r"k\d+", split):
            split, shots = "shots", int(split[1:])
        if split == "shots":
            return shots
        d = self.plan.config["datasets"][dataset]
        if d["kind"] == "demo":
            return int(d[{"train": "train_size", "full": "full_size", "val": "val_size"}[split]])
        folder = str(self.plan.dataset_dir(dataset, split, shots))
        if folder not in self._folder_sizes:
            from unidad.data.folders import list_image_files

            self._folder_sizes[folder] = len(list_image_files(folder)) if Path(folder).is_dir() else None
        return self._folder_sizes[folder]

    def _memory(self, base_mb: float, images_mb: float | None) -> float | None:
        return None if images_mb is None else base_mb + images_mb

    # -- jobs -----------------------------------------------------------------------------------------
    def train(self, slug: str, end: int | None = None) -> Estimate:
        """A training job: the segment ending at `end` (the last one by default). Every image of its
        data is held as float32 next to the uint8 it was read as; several copies of the network live in
        the process (generator, fake score, teachers)."""
        run = self.plan.runs[slug]
        ends = self.plan.segment_ends(slug)
        end = ends[-1] if end is None else end
        iterations = end - max((e for e in ends if e < end), default=0)
        if run.stage in self.step_seconds:
            rate, source = self.step_seconds[run.stage], "measured"
        else:
            rate, source = self.backbone.step_seconds.get(run.stage, 1.0), "backbone"
        data = run.data
        n = self.dataset_images(data["dataset"], data["split"], data.get("shots"))
        images = None if n is None else _image_mb(n, self.plan.image_size) * 5
        return Estimate(iterations * rate + self.backbone.startup_seconds,
                        self._memory(2 * self.backbone.host_mem_mb, images), source)

    def sample(self, slug: str, step: int) -> Estimate:
        """Sampling one checkpoint at each of its NFEs; every NFE's images stay in memory until saved."""
        rate, source = self.image_step_seconds
        images = _image_mb(self.n_samples, self.plan.image_size) * (len(self.nfes(slug, step)) + 1)
        return Estimate(self._image_steps(slug, step) * rate + self.backbone.startup_seconds,
                        self._memory(self.backbone.host_mem_mb, images), source)

    def checkpoint_metrics(self, slug: str, step: int) -> Estimate:
        """Every metric of one checkpoint, NFE by NFE: all NFEs' images as uint8, one NFE's as float32
        (twice, while distances are computed)."""
        rate, source = self.metric_image_seconds
        one = _image_mb(self.n_samples, self.plan.image_size)
        return Estimate(self._metric_images(slug, step) * rate + self.backbone.startup_seconds,
                        self._memory(self.backbone.host_mem_mb, one * (len(self.nfes(slug, step)) + 8)), source)

    def teacher_report(self) -> Estimate:
        """The source teacher's 1000 many-step samples."""
        from unidad.edm import nfe_of

        rate, source = self.image_step_seconds
        steps = nfe_of("euler", int(self.plan.config["source"]["sample_steps"]))
        return Estimate(1000 * steps * rate + self.backbone.startup_seconds,
                        self._memory(self.backbone.host_mem_mb, _image_mb(1000, self.plan.image_size) * 2), source)

    def reference(self, dataset: str, split: str) -> Estimate:
        """Features of a dataset split (the first 5000 images of a full set): about one network pass per
        image (the evaluation's n_samples images while a staged folder is not on disk); the images held
        as uint8 and, batch by batch, as float32."""
        n = self.dataset_images(dataset, split)
        if n is not None and split == "full":
            n = min(n, 5000)
        rate, source = self.image_step_seconds
        seconds = (n if n is not None else self.n_samples) * rate + self.backbone.startup_seconds
        images = None if n is None else _image_mb(n, self.plan.image_size) * 2
        return Estimate(seconds, self._memory(self.backbone.host_mem_mb, images), source)
