#!/usr/bin/env python3
"""Check what every group job of a dry run asks SLURM for: enough time for its members' estimated work
plus the lead before SLURM's signal, and at most twice their estimated work.

    python ci/check_group_requests.py [SNAKEMAKE ARGS...]
    (default: --profile profiles/slurm --configfile config/paper_fsig.yaml)

Runs `snakemake --dry-run` in this process and takes each group job's resources as Snakemake computes
them for the submission (the runtime it asks sbatch for is the sum over the group's layers), and each
member's estimated seconds from the workflow's unidad.job_requests.JobRequests (`REQUESTS`). Prints the
largest group job; exits 1 naming the group jobs that ask for too little or too much.
Run from the repository root with the project importable (PYTHONPATH or an installed venv).
"""
import sys

from snakemake import cli
from snakemake.jobs import GroupJob

DEFAULT_ARGS = ["--profile", "profiles/slurm", "--configfile", "config/paper_fsig.yaml"]
MAX_RATIO = 2.0
#: reported, not failed: many GPU partitions end jobs at 24 h, and sbatch then rejects a group job
#: (the SLURM plugin does not say why: snakemake-executor-plugin-slurm#456)
LONG_MINUTES = 24 * 60

groups = []
_log_info = GroupJob.log_info


def _record(self, *args, **kwargs):
    groups.append(self)
    return _log_info(self, *args, **kwargs)


def group_rows(group_jobs):
    """(group id, members, requested minutes, estimated minutes of the members' work) per group job."""
    rows = []
    for group in group_jobs:
        requests = group.dag.workflow.globals["REQUESTS"]
        estimates = [requests.for_rule(job.rule.name, job.wildcards) for job in group.jobs]
        if any(e is None for e in estimates):
            raise SystemExit(f"check: group {group.groupid} has a member without a runtime estimate")
        rows.append((group.groupid, len(group.jobs), group.resources["runtime"],
                     sum(e.seconds for e in estimates) / 60))
    return rows


def main(argv):
    from unidad.job_requests import SIGNAL_LEAD_SECONDS

    GroupJob.log_info = _record
    try:
        cli.main(["all", *(argv or DEFAULT_ARGS), "--dry-run", "--quiet", "rules", "progress", "host"])
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            print(f"check: the dry run failed (exit {exit_.code})", file=sys.stderr)
            return 1
    finally:
        GroupJob.log_info = _log_info
    if not groups:
        print("check: the dry run scheduled no group job", file=sys.stderr)
        return 1
    rows = group_rows(groups)
    lead = SIGNAL_LEAD_SECONDS / 60
    short = [r for r in rows if r[2] < r[3] + lead]
    long = [r for r in rows if r[2] > MAX_RATIO * r[3]]
    largest = max(rows, key=lambda r: r[2])
    ratios = [r[2] / r[3] for r in rows]
    print(f"check: {len(rows)} group jobs; requested / estimated runtime from {min(ratios):.2f} to {max(ratios):.2f}")
    print(f"check: largest group job: {largest[0]} ({largest[1]} jobs) asks for {largest[2]} min "
          f"for an estimated {largest[3]:.1f} min of work")
    over = [r for r in rows if r[2] > LONG_MINUTES]
    if over:
        print(f"check: note: {len(over)} group jobs ask for more than {LONG_MINUTES // 60} h "
              f"({', '.join(sorted({r[0] for r in over}))}); lower their group-components where the partition ends "
              "jobs sooner")
    for name, what, bad in (("less than its work plus the signal lead", "short", short),
                            (f"more than {MAX_RATIO:g}x its estimated work", "long", long)):
        for gid, n, req, est in bad:
            print(f"check FAILED: group job {gid} ({n} jobs) asks for {req} min, {name} ({est:.1f} min)",
                  file=sys.stderr)
    return 1 if short or long else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
