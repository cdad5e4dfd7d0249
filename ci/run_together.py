#!/usr/bin/env python3
"""Run several check commands at once and fail when any of them fails.

    python3 ci/run_together.py --log-dir DIR NAME=COMMAND [NAME=COMMAND ...]

Each COMMAND runs under bash with its output in DIR/NAME.log. Why at once: the SLURM runs of CI
(the smoke runs, the rehearsals) spend about a third of their time waiting for the plugin's next status
poll, so a node running one DAG's jobs sits idle that long; jobs of several DAGs queued on the same node
fill those gaps. Prints one line per command as it finishes (status, seconds), then the last lines of the
log of every command that failed. Exit status: 0 when all passed, else 1. Standard library only.
"""

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

TAIL_LINES = 60
HEARTBEAT_SECONDS = 300  # CI logs show the runs are alive and where each one is
NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-dir", required=True, type=Path, help="one NAME.log per command goes here")
    parser.add_argument("commands", nargs="+", metavar="NAME=COMMAND")
    args = parser.parse_args()
    named = {}
    for item in args.commands:
        name, sep, command = item.partition("=")
        if not sep or not NAME.match(name) or not command.strip():
            parser.error(f"'{item}' is not NAME=COMMAND (NAME: letters, digits, '-' or '_'); write e.g. "
                         f"fsig-smoke='make smoke-run'")
        if name in named:
            parser.error(f"two commands are named '{name}'; give each its own name")
        named[name] = command
    return args.log_dir, named


def main() -> int:
    log_dir, named = parse_args()
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    running = {}
    for name, command in named.items():
        log = log_dir / f"{name}.log"
        handle = log.open("w")
        running[name] = (subprocess.Popen(["bash", "-c", command], stdout=handle, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL), handle, log)
        print(f"[together] {name}: started ({command}); log {log}", flush=True)
    failed = []
    next_heartbeat = started + HEARTBEAT_SECONDS
    while running:
        if time.monotonic() >= next_heartbeat:
            next_heartbeat += HEARTBEAT_SECONDS
            for name, (_, _, log) in running.items():
                last = (log.read_text(errors="replace").strip().splitlines() or ["(no output yet)"])[-1]
                print(f"[together] {name}: running, {time.monotonic() - started:.0f} s; last line: {last[:160]}",
                      flush=True)
        for name, (process, handle, log) in list(running.items()):
            if process.poll() is None:
                continue
            handle.close()
            del running[name]
            seconds = time.monotonic() - started
            verdict = "ok" if process.returncode == 0 else f"FAILED (exit {process.returncode})"
            print(f"[together] {name}: {verdict} after {seconds:.0f} s", flush=True)
            if process.returncode:
                failed.append((name, log))
        time.sleep(1)
    for name, log in failed:
        lines = log.read_text(errors="replace").splitlines()
        print(f"\n[together] last {TAIL_LINES} lines of {name} ({log}):")
        print("\n".join(lines[-TAIL_LINES:]))
    if failed:
        print(f"[together] failed: {', '.join(name for name, _ in failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
