"""The `unidad` command.

  unidad weights list|verify|fetch|path [NAME]    staged model/metric weights (checksummed manifest)
  unidad weights verify --config CONFIG            pre-flight: exit 1 unless every file CONFIG needs is in place
  unidad plan [CONFIG] [--checkpoint-every N]      what a config will run: jobs, runs, GPU-hours, peak/final disk
  unidad stages [-v] [--config CONFIG]             registered stages (with a config's plugins) and their options
  unidad methods [CONFIG]                          method ids and their stage lists
  unidad timing [CONFIG]                           the DAG's jobs per rule (seconds, peak memory), its wall time
  unidad train JOB_JSON [--stop-at N]              train one stage run from its job file (what the DAG's
                                                   training jobs start, under torchrun for >1 GPU)
"""
from __future__ import annotations

import argparse
import dataclasses
import sys


def _cmd_stages(args) -> int:
    from unidad.stages import stage_registry

    plugins = []
    if args.config:
        config = _load_config(args)
        if config is None:
            return 2
        plugins = config["plugins"]
    stages = stage_registry(plugins)
    for name in stages.names():
        cls = stages.get(name)
        print(f"{name}  ({cls.__module__}.{cls.__name__}; roles: {', '.join(cls.roles) or 'none'})")
        if args.verbose:
            for f in dataclasses.fields(cls.config_cls):
                print(f"    {f.name} = {f.default!r}")
    return 0


def _cmd_methods(args) -> int:
    from unidad.config import load_config_file
    from unidad.plan import load_methods

    methods = load_methods(load_config_file(args.config))
    for name, spec in methods.items():
        stages = " -> ".join(f"{s.get('name', s['stage'])}:{s['stage']}" for s in spec.get("stages", []))
        print(f"{name:14s} {stages}    {spec.get('description', '')}")
    return 0


def _load_config(args) -> dict | None:
    """The config named on the command line, or None after printing why it is invalid."""
    from unidad.config import ConfigError, load_config_file

    try:
        return load_config_file(args.config)
    except ConfigError as err:
        print(f"unidad {args.command}: {err}", file=sys.stderr)
        return None


def _cmd_plan(args) -> int:
    from unidad.planning import print_plan

    config = _load_config(args)
    if config is None:
        return 2
    if args.checkpoint_every is not None:  # e.g. the official code's cadence (500) on any config
        from unidad.stages import stage_registry

        for stage in stage_registry(config["plugins"]).names():
            config["stage_params"].setdefault(stage, {})["checkpoint_every"] = args.checkpoint_every
    print_plan(config, step_seconds=args.step_seconds)
    return 0


def _cmd_train(args) -> int:
    import json

    from unidad.jobs.train import StageJob, run_stage

    with open(args.job_json) as f:
        job = StageJob.from_dict(json.load(f))
    run_stage(job, threads=args.threads, stop_at=args.stop_at)
    return 0


def _cmd_timing(args) -> int:
    from unidad.plan import Plan
    from unidad.planning import summarise_benchmarks

    config = _load_config(args)
    return 2 if config is None else summarise_benchmarks(Plan(config).root)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unidad", description="unidad-bench: few-step, few-shot diffusion benchmark")
    sub = parser.add_subparsers(dest="command", required=True)
    from unidad.weights_cli import add_weights_subparser

    add_weights_subparser(sub)
    p = sub.add_parser("stages", help="registered stages (with -v: their options and defaults)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--config", default=None, help="also the stages of this config's plugins")
    p.set_defaults(func=_cmd_stages)
    p = sub.add_parser("methods", help="method ids and their stages")
    p.add_argument("config", nargs="?", default="config/config.yaml")
    p.set_defaults(func=_cmd_methods)
    p = sub.add_parser("train", help="train one stage run from its job file (what a multi-GPU training job runs)")
    p.add_argument("job_json", help="the run's training job as JSON (unidad.jobs.train.StageJob)")
    p.add_argument("--stop-at", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("timing", help="how long a config's DAG took (benchmark files): jobs, seconds, peak memory per rule; wall time")
    p.add_argument("config", nargs="?", default="config/config.yaml")
    p.set_defaults(func=_cmd_timing)
    p = sub.add_parser("plan", help="jobs per rule, runs, and a compute estimate for a config")
    p.add_argument("config", nargs="?", default="config/config.yaml")
    p.add_argument("--step-seconds", type=float, default=None,
                   help="seconds per training iteration to assume (default: measured from finished runs, else the backbone's class)")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="plan with this checkpoint cadence for every stage (e.g. 500, the official code's)")
    p.set_defaults(func=_cmd_plan)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
