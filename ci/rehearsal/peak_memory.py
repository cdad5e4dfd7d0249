#!/usr/bin/env python3
"""Print every job's peak memory and time from a DAG run's Snakemake benchmark files.

    python3 ci/rehearsal/peak_memory.py RESULTS_DIR [--limit-mb N]

RESULTS_DIR is the run's results folder (config results_dir); the benchmark files are
<RESULTS_DIR>/<benchmark>/benchmarks/<rule>/<job>.tsv (max_rss in MB, wall seconds). With --limit-mb,
exits 1 when a job's peak passes it. Standard library only.
"""
import argparse
import csv
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results_dir", type=Path)
    ap.add_argument("--limit-mb", type=float, default=None)
    args = ap.parse_args()
    rows = []
    for tsv in sorted(args.results_dir.glob("*/benchmarks/*/*.tsv")):
        with open(tsv, newline="") as fh:
            records = list(csv.DictReader(fh, delimiter="\t"))
        if not records:
            continue
        last = records[-1]  # a retried job appends a line; the last is the attempt that finished
        rss = float(last["max_rss"]) if last.get("max_rss", "NA") not in ("NA", "-", "") else float("nan")
        rows.append((tsv.parent.name, tsv.stem, rss, float(last["s"])))
    if not rows:
        print(f"no benchmark files under {args.results_dir}/*/benchmarks/", file=sys.stderr)
        return 1
    width = max(len(f"{rule}/{job}") for rule, job, _, _ in rows)
    print(f"{'job':<{width}}  {'peak RSS MB':>11}  {'seconds':>8}")
    for rule, job, rss, secs in sorted(rows, key=lambda r: -r[2] if r[2] == r[2] else 0):
        print(f"{rule + '/' + job:<{width}}  {rss:>11.0f}  {secs:>8.1f}")
    peak = max((r for r in rows if r[2] == r[2]), key=lambda r: r[2], default=None)
    print(f"{len(rows)} jobs; largest peak: {peak[0]}/{peak[1]} {peak[2]:.0f} MB" if peak else f"{len(rows)} jobs")
    if args.limit_mb is not None and peak and peak[2] > args.limit_mb:
        print(f"a job's peak memory passed --limit-mb {args.limit_mb:.0f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
