"""The `unidad` command.

  unidad weights list|verify|fetch|path [NAME]    staged model/metric weights (checksummed manifest)
  unidad plan [CONFIG]                             what a config will run: jobs, runs, compute estimate
  unidad stages                                    registered stages and their options with defaults
  unidad methods [CONFIG]                          method ids and their stage lists
"""
from __future__ import annotations

import argparse
import dataclasses
import sys


def _cmd_stages(args) -> int:
    import baselines  # noqa: F401
    from unidad.stages import STAGES

    for name in STAGES.names():
        cls = STAGES.get(name)
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


def _cmd_plan(args) -> int:
    from unidad.config import ConfigError, load_config_file
    from unidad.planning import print_plan

    try:
        config = load_config_file(args.config)
    except ConfigError as err:
        print(f"unidad plan: {err}", file=sys.stderr)
        return 2
    print_plan(config, step_seconds=args.step_seconds)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unidad", description="unidad-bench: few-step, few-shot diffusion benchmark")
    sub = parser.add_subparsers(dest="command", required=True)
    from unidad.weights import add_weights_subparser

    add_weights_subparser(sub)
    p = sub.add_parser("stages", help="registered stages (with -v: their options and defaults)")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=_cmd_stages)
    p = sub.add_parser("methods", help="method ids and their stages")
    p.add_argument("config", nargs="?", default="config/config.yaml")
    p.set_defaults(func=_cmd_methods)
    p = sub.add_parser("plan", help="jobs per rule, runs, and a compute estimate for a config")
    p.add_argument("config", nargs="?", default="config/config.yaml")
    p.add_argument("--step-seconds", type=float, default=None,
                   help="seconds per training iteration to assume (default: measured from finished runs, else the backbone's class)")
    p.set_defaults(func=_cmd_plan)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
