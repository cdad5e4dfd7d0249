#!/usr/bin/env python3
"""Preempt a training job on the CI SLURM and check that it resumes to the same weights.

What SLURM does before a job's time limit (profiles/slurm: `--signal=USR1@300`) is done here by hand:
  1. Snakemake runs one training job (the source teacher of ci/slurm/preempt.yaml) through SLURM
     (profiles/slurm-ci, with the training rules marked preemptible: one retry; its training images are
     made on this machine first, which saves a SLURM job), and, side by side, the same training on this
     machine without SLURM (profiles/local), the reference;
  2. once the SLURM job runs and has written its first checkpoint: `scancel --signal=USR1 <job>`, which
     signals every process of the job's steps (the in-job Snakemake and the trainer);
  3. checks that the trainer saved and exited 75 while the in-job Snakemake survived and reported it,
     that Snakemake resubmitted the job and the new job resumed from the signal's checkpoint, that the
     trainer read the job's end time, and that the final weights equal the reference's bit for bit.
Prints what it did and how long it took; exits 1 with the reasons when a check fails.

    .venv/bin/python ci/slurm/check_preemption.py [--workdir DIR]     (run from the checkout, as root,
                                                                        with SLURM up: make slurm-start)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TRAIN_RULES = ["train_stage", "train_segment"]
SUBMITTED = re.compile(r"Job \S+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")


def log(msg: str) -> None:
    print(f"[check_preemption] {msg}", flush=True)


class CheckFailed(Exception):
    pass


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=ROOT / ".slurm-ci" / "preempt",
                   help="emptied, then holds both runs' results, logs and SLURM logs")
    p.add_argument("--config", type=Path, default=ROOT / "ci" / "slurm" / "preempt.yaml")
    p.add_argument("--snakemake", default=str(Path(sys.executable).parent / "snakemake"))
    p.add_argument("--signal", default="USR1", help="what scancel sends (default USR1, as --signal=USR1@300)")
    p.add_argument("--timeout", type=float, default=480, help="seconds for the whole check")
    return p.parse_args()


def teacher_paths(config_file: Path, results_dir: Path) -> tuple[Path, Path, int, Path]:
    """The teacher run's summary.json, final weights, iterations and training images, for the config as
    Snakemake sees it: the Snakefile's config/config.yaml, then the --configfile, then --config results_dir."""
    import yaml
    from snakemake.utils import update_config

    from unidad.config import validate_config
    from unidad.plan import Plan

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    update_config(config, yaml.safe_load(config_file.read_text()))
    config["results_dir"] = str(results_dir)
    validate_config(config)
    plan = Plan(config)
    slug = plan.teacher_slug
    data = plan.dataset_dir(config["source"]["dataset"], "train")
    return plan.summary(slug), plan.final_weights(slug), int(plan.runs[slug].params["iterations"]), data


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def weights_sha256(path: Path) -> str:
    """sha256 of a safetensors file with its JSON header's keys sorted. The file's own bytes differ
    between two processes that write the same tensors: safetensors writes the header's __metadata__ map
    in a per-process random order (a Rust HashMap). Header (sorted) and tensor bytes are hashed as they are."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.dumps(json.loads(raw[8:8 + n]), sort_keys=True).encode()
    return hashlib.sha256(header + raw[8 + n:]).hexdigest()


def tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(f"    | {line}" for line in lines[-n:])


class Run:
    """A snakemake run in its own process group, stdout+stderr to `log_path`."""

    def __init__(self, name: str, cmd: list[str], log_path: Path):
        self.name, self.log_path = name, log_path
        self.started = time.monotonic()
        self.ended: float | None = None
        with open(log_path, "w") as fh:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=fh,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def poll(self) -> int | None:
        status = self.proc.poll()
        if status is not None and self.ended is None:
            self.ended = time.monotonic()
        return status

    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            log(f"stopping the {self.name} run (pid {self.proc.pid})")
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def wait_for(what: str, predicate, deadline: float, runs: list[Run], interval: float = 0.2):
    """Poll `predicate` until it returns something truthy; fail at the deadline or when a run ends."""
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for run in runs:
            if run.poll() is not None:
                raise CheckFailed(f"the {run.name} run ended (exit {run.proc.returncode}) while waiting for "
                                  f"{what}; its log:\n{tail(run.log_path)}")
        time.sleep(interval)
    raise CheckFailed(f"timed out waiting for {what}")


def train_jobs(text: str) -> list[tuple[str, str]]:
    """(SLURM job id, SLURM log) of every submission of a training rule, in order."""
    return [(job, path) for job, path in SUBMITTED.findall(text) if any(f"/rule_{r}/" in path for r in TRAIN_RULES)]


def job_state(job: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True)
    return out.stdout.strip()


def checkpoint_steps(run_dir: Path) -> list[int]:
    return sorted(int(p.name[4:]) for p in (run_dir / "checkpoints").glob("step[0-9]*") if p.is_dir())


def main() -> int:
    args = parse_args()
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    work = args.workdir.resolve()
    subprocess.run(["rm", "-rf", str(work)], check=True)
    slurm_dir, ref_dir = work / "slurm", work / "reference"
    for d in (slurm_dir, ref_dir):
        d.mkdir(parents=True)
    summary, weights, iterations, data = teacher_paths(args.config, slurm_dir / "results")
    ref_summary, ref_weights, _, _ = teacher_paths(args.config, ref_dir / "results")
    run_dir = summary.parent
    train_log = summary.parents[2] / "logs" / "train" / f"{run_dir.name}.log"
    log(f"training job: {run_dir.name}, {iterations} iterations ({args.config.relative_to(ROOT)})")

    common = ["--configfile", str(args.config)]
    # the same thread count as the SLURM job (profiles/slurm-ci: max-threads 1): the same floating point
    local = ["--profile", "profiles/local", "--cores", "1", "--max-threads", "1", *common]
    runs: list[Run] = []
    slurm_jobs: list[str] = []
    try:
        reference = Run("reference", [args.snakemake, str(ref_summary), *local,
                                      "--config", f"results_dir={ref_dir / 'results'}"], ref_dir / "snakemake.log")
        runs.append(reference)
        log(f"started the reference run without SLURM (log {reference.log_path})")
        images = Run("images", [args.snakemake, str(data), *local, "--config", f"results_dir={slurm_dir / 'results'}"],
                     slurm_dir / "images.log")
        runs.append(images)
        wait_for("the training images of the SLURM run", lambda: images.poll() is not None, deadline, [], 0.5)
        if images.proc.returncode != 0:
            raise CheckFailed(f"making the training images failed:\n{tail(images.log_path)}")
        log(f"{time.monotonic() - t0:5.0f} s: made the SLURM run's training images on this machine")

        slurm = Run("SLURM", [args.snakemake, str(summary), "--profile", "profiles/slurm-ci",
                              "--slurm-logdir", str(slurm_dir / "logs" / "slurm"), *common,
                              "--config", f"results_dir={slurm_dir / 'results'}",
                              # as profiles/slurm: a training job stopped for requeue is resubmitted
                              "--preemptible-retries", "1", "--preemptible-rules", *TRAIN_RULES],
                    slurm_dir / "snakemake.log")
        runs.append(slurm)
        log(f"started the SLURM run (log {slurm.log_path})")
        first = wait_for("the training job's submission", lambda: train_jobs(slurm.text()), deadline, [slurm])
        signalled_job, first_log = first[0]
        slurm_jobs.append(signalled_job)
        wait_for(f"SLURM job {signalled_job} to run", lambda: job_state(signalled_job) == "RUNNING", deadline,
                 [slurm])
        log(f"{time.monotonic() - t0:5.0f} s: SLURM job {signalled_job} is running; waiting for its first checkpoint")
        steps = wait_for("the first checkpoint", lambda: checkpoint_steps(run_dir), deadline, [slurm], 0.05)
        subprocess.run(["scancel", f"--signal={args.signal}", signalled_job], check=True)
        log(f"{time.monotonic() - t0:5.0f} s: scancel --signal={args.signal} {signalled_job} "
            f"(checkpoints then: {steps})")

        while [run.poll() for run in (slurm, reference)].count(None):
            slurm_jobs[:] = [j for j, _ in train_jobs(slurm.text())]
            if time.monotonic() > deadline:
                raise CheckFailed("timed out waiting for the runs to finish")
            time.sleep(0.5)
        log(f"{time.monotonic() - t0:5.0f} s: SLURM run done (exit {slurm.proc.returncode}); the reference run "
            f"took {reference.seconds():.0f} s (exit {reference.proc.returncode})")
        problems = check(args, slurm, reference, signalled_job, first_log, run_dir, train_log, iterations,
                         weights, ref_weights)
    except CheckFailed as err:
        problems = [str(err)]
    finally:
        for run in runs:  # still running only after a failure
            run.stop()
        for job in slurm_jobs:
            if job_state(job) in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
                log(f"cancelling SLURM job {job}")
                subprocess.run(["scancel", job])
    log(f"took {time.monotonic() - t0:.0f} s")
    if problems:
        sys.stdout.flush()
        for problem in problems:
            print(f"check_preemption FAILED: {problem}", file=sys.stderr)
        print(f"  logs: {' '.join(str(run.log_path) for run in runs)} {train_log}", file=sys.stderr)
        return 1
    log("PASSED: the signalled job saved, exited for requeue, was resubmitted, resumed, and its final "
        "weights equal the unsignalled run's")
    return 0


def check(args, slurm, reference, job, job_log, run_dir, train_log, iterations, weights, ref_weights) -> list[str]:
    problems = []
    if slurm.proc.returncode != 0:
        problems.append(f"the SLURM run failed (exit {slurm.proc.returncode}):\n{tail(slurm.log_path)}")
    if reference.proc.returncode != 0:
        problems.append(f"the reference run failed (exit {reference.proc.returncode}):\n{tail(reference.log_path)}")
    if problems:
        return problems
    text = train_log.read_text(errors="replace")  # the last attempt's: Snakemake deletes it before a retry
    job_text = Path(job_log).read_text(errors="replace")
    sig = f"SIG{args.signal}"

    # 1. the trainer got the signal, saved and exited for requeue (its one-line reason in the job's SLURM log)
    stopped = re.search(rf"{sig} received: checkpoint at step (\d+) saved, exiting for requeue \(exit 75\)", job_text)
    if stopped is None:
        return [f"the SLURM log of job {job} has no '{sig} received: checkpoint at step N saved' (did the training "
                f"end before the signal? then raise iterations in {args.config.name}):\n{tail(Path(job_log))}"]
    step = int(stopped.group(1))
    if step >= iterations:
        return [f"the signal came at the last step ({step}); raise iterations in {args.config.name}"]
    log(f"1. the trainer got {sig} in SLURM job {job}, saved a checkpoint at step {step} of {iterations} "
        "and exited 75 for requeue")

    # 2. the in-job Snakemake survived the signal and reported the trainer's exit status
    if "non-zero exit status 75" not in job_text:
        problems.append(f"the in-job Snakemake of SLURM job {job} did not report the trainer's exit 75 "
                        f"({job_log}):\n{tail(Path(job_log))}")
    elif re.search(r"srun: error: .*task \d+: (User defined signal|Terminated)", job_text):
        problems.append(f"the in-job Snakemake of SLURM job {job} was killed by the signal ({job_log})")
    else:
        log(f"2. the in-job Snakemake survived the signal and reported the trainer's exit 75 ({Path(job_log).name})")

    # 3. Snakemake resubmitted the job, and the new job resumed from the signal's checkpoint
    jobs = [j for j, _ in train_jobs(slurm.text())]
    resumed = re.search(rf"\[train\] resumed \S+ at step {step} from step{step:08d}", text)
    if len(jobs) != 2 or "Trying to restart job" not in slurm.text():
        problems.append(f"expected the training job to be submitted twice (a retry), got SLURM jobs {jobs}")
    elif resumed is None:
        problems.append(f"the retry (SLURM job {jobs[1]}) did not resume at step {step}:\n{tail(train_log)}")
    elif checkpoint_steps(run_dir) != [iterations]:
        # retention (checkpoints.keep_full: 1): the full state of the signal's step goes once a newer
        # checkpoint exists; only the final step's stays
        problems.append(f"expected the full state of the final step {iterations} only, found steps "
                        f"{checkpoint_steps(run_dir)} in {run_dir / 'checkpoints'}")
    else:
        log(f"3. Snakemake resubmitted it as SLURM job {jobs[1]}, which resumed at step {step} and finished "
            f"(the full state is kept for the final step only)")

    # 4. the trainer read the job's end time (the stop before the time limit needs no signal)
    end = re.search(r"\[train\] job ends at (.+?), stopping for requeue from .+ \(end time from (\S+)\)", text)
    if end is None:
        problems.append(f"the training log does not show the SLURM job's end time:\n{tail(train_log)}")
    else:
        log(f"4. the trainer read the job's end time from {end.group(2)}: {end.group(1)}")

    # 5. bit-for-bit the same weights as the run without a signal
    if not weights.exists() or not ref_weights.exists():
        problems.append(f"final weights missing: {weights} or {ref_weights}")
    else:
        got, want = weights_sha256(weights), weights_sha256(ref_weights)
        if got != want:
            problems.append(f"final weights differ: {weights} sha256 {got} (header keys sorted), unsignalled "
                            f"{ref_weights} sha256 {want}")
        else:
            same_file = "the files too" if sha256(weights) == sha256(ref_weights) else \
                "the files differ only in the order of their header's metadata"
            log(f"5. final weights (step {iterations}) equal the unsignalled run's: sha256 {got} over the "
                f"tensors and the sorted header ({same_file})")
    return problems


if __name__ == "__main__":
    sys.exit(main())
