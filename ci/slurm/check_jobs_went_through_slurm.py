#!/usr/bin/env python3
"""Check that a Snakemake run sent every non-local job through SLURM.

Evidence, from three independent places:
  1. the Snakemake log: every job the run executed outside `localrules` has a
     "submitted with SLURM jobid N" line (array submissions included);
  2. slurmctld's log: every such N was accepted by sbatch and ended with exit status 0
     (there is no accounting database, so no sacct);
  3. the plugin's SLURM log directory: one <N>.log per SLURM job.
Prints the SLURM job ids; exits 1 with the reason when any check fails.
Standard library only, so it runs with any python3.
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

SUBMITTED = re.compile(r"Job (\S+) has been submitted with SLURM jobid (\d+)")
SUBMITTED_ARRAY = re.compile(r"Submitted array job with Snakemake IDs ([\d,]+) and SLURM job ID (\d+)")
# Job headers Snakemake prints when it schedules work: remote rules, local rules, groups.
REMOTE_RULE = re.compile(r"^\s*rule (\w+):\s*$")
LOCAL_RULE = re.compile(r"^\s*localrule (\w+):\s*$")
GROUP_JOB = re.compile(r"Group job (\S+) \(jobs in lexicogr\. order\):")
DONE = re.compile(r"(\d+) of (\d+) steps \(100%\) done")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("snakemake_log", type=Path, help="stdout+stderr of the snakemake run")
    parser.add_argument("slurm_logdir", type=Path, help="the run's --slurm-logdir")
    parser.add_argument(
        "--slurmctld-log",
        type=Path,
        default=None,
        help="slurmctld's log file (default: SlurmctldLogFile from `scontrol show config`)",
    )
    return parser.parse_args()


def slurmctld_log_from_config():
    output = subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, check=True
    ).stdout
    for line in output.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "SlurmctldLogFile":
            return Path(value.strip())
    raise SystemExit("check: SlurmctldLogFile is not set in slurm.conf; pass --slurmctld-log.")


def count_scheduled_jobs(lines):
    """Number of SLURM submissions the run should have made: one per remote rule
    instance outside a group, one per group job."""
    expected, in_group = 0, False
    for line in lines:
        if GROUP_JOB.search(line):
            expected += 1
            in_group = True
        elif LOCAL_RULE.match(line):
            in_group = False
        elif REMOTE_RULE.match(line):
            # Rules listed under a group header are indented; a top-level rule ends the group.
            if not line.startswith((" ", "\t")):
                in_group = False
            if not in_group:
                expected += 1
    return expected


def submitted_slurm_jobs(text):
    """SLURM job id -> Snakemake job ids it carried."""
    jobs = {}
    for snakemake_id, slurm_id in SUBMITTED.findall(text):
        jobs.setdefault(slurm_id, []).append(snakemake_id)
    for snakemake_ids, slurm_id in SUBMITTED_ARRAY.findall(text):
        jobs.setdefault(slurm_id, []).extend(snakemake_ids.split(","))
    return jobs


def main():
    args = parse_args()
    problems = []
    text = args.snakemake_log.read_text(errors="replace")
    lines = text.splitlines()

    if not DONE.search(text):
        problems.append(f"{args.snakemake_log} has no '... steps (100%) done' line: the run did not finish.")

    jobs = submitted_slurm_jobs(text)
    expected = count_scheduled_jobs(lines)
    if not jobs:
        problems.append("no job was submitted with sbatch (no 'SLURM jobid' lines in the Snakemake log).")
    submissions = len(jobs)
    if submissions != expected:
        problems.append(
            f"Snakemake scheduled {expected} non-local job(s) but the log shows {submissions} SLURM submission(s)."
        )

    ctld_log_path = args.slurmctld_log or slurmctld_log_from_config()
    ctld_log = ctld_log_path.read_text(errors="replace")
    log_files = {path.stem: path for path in args.slurm_logdir.rglob("*.log")}
    for slurm_id in sorted(jobs, key=int):
        if not re.search(rf"_slurm_rpc_submit_batch_job: JobId={slurm_id}\b", ctld_log):
            problems.append(f"SLURM job {slurm_id}: slurmctld never accepted it ({ctld_log_path}).")
        if not re.search(rf"_job_complete: JobId={slurm_id} WEXITSTATUS 0\b", ctld_log):
            problems.append(f"SLURM job {slurm_id}: no 'WEXITSTATUS 0' in {ctld_log_path}.")
        if slurm_id not in log_files and not any(stem.startswith(f"{slurm_id}_") for stem in log_files):
            problems.append(f"SLURM job {slurm_id}: no {slurm_id}.log under {args.slurm_logdir}.")

    print(f"check: {submissions} SLURM job(s) for {expected} scheduled non-local job(s)")
    for slurm_id in sorted(jobs, key=int):
        print(f"  SLURM job {slurm_id:>6}  <- Snakemake job(s) {', '.join(jobs[slurm_id])}")
    if problems:
        sys.stdout.flush()
        for problem in problems:
            print(f"check FAILED: {problem}", file=sys.stderr)
        return 1
    print("check: every job went through sbatch and exited 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
