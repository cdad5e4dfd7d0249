"""`unidad weights list|verify|fetch|path [NAME]`: the command line of unidad.weights (and, with
`verify --config`, of the pre-flight check in unidad.preflight)."""
from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Sequence

from unidad.preflight import check_required
from unidad.weights import (
    MissingWeightsError,
    WeightsError,
    fetch,
    get_entry,
    list_weights,
    resolve,
    verify,
)

def _cmd_list(args) -> int:
    for entry in list_weights():
        try:
            where = str(resolve(entry.name, args.weights_dir))
        except WeightsError:
            where = "MISSING"
        pin = entry.sha256[:12] if entry.sha256 else ("prefix " + entry.sha256_prefix if entry.sha256_prefix else "unpinned")
        revision = "" if entry.revision_pinned else f" (revision {entry.hf_revision}: not pinned)"
        print(f"{entry.name:22s} {entry.kind:12s} {pin:16s} {where}{revision}")
    return 0


def _cmd_verify(args) -> int:
    if args.config:
        return _verify_config(args)
    names = [args.name] if args.name else [e.name for e in list_weights()]
    failed = False
    for name in names:
        try:
            report = verify(name, args.weights_dir)
        except MissingWeightsError:
            if args.name:
                raise
            print(f"{name}: absent")  # verifying all: a partial install is normal
            continue
        except WeightsError as err:
            failed = True
            print(f"error: {err}", file=sys.stderr)
            continue
        print(f"{name}: {report.message} ({report.path})")
    return 1 if failed else 0


def _verify_config(args) -> int:
    """`unidad weights verify --config CONFIG`: the pre-flight check of a config's weights; exit 1 when
    any file it needs is missing or wrong, with the command that gets each."""
    from unidad.config import ConfigError, load_config_file

    if args.name:
        raise WeightsError("give either NAME or --config, not both")
    try:
        statuses = check_required(load_config_file(args.config), args.weights_dir)
    except (ConfigError, KeyError) as err:  # KeyError: an unknown metric name in evaluation.metrics
        raise WeightsError(f"{args.config}: {err}") from None
    for st in statuses:
        needed_by = ", ".join(st.required.needed_by)
        if st.ok:
            print(f"{st.required.label}: {st.message} [needed by {needed_by}]")
        else:
            print(f"{st.required.label}: {st.message} [needed by {needed_by}]; get it with: {st.fix}")
    bad = [st.required.label for st in statuses if not st.ok]
    if bad:
        print(f"error: {args.config} needs {len(bad)} weights file(s) that are missing or wrong: {', '.join(bad)}",
              file=sys.stderr)
        return 1
    print(f"{args.config}: all {len(statuses)} weights file(s) it needs are in place" if statuses
          else f"{args.config}: needs no pretrained weights")
    return 0


def _cmd_fetch(args) -> int:
    dest = args.dest or args.weights_dir or os.environ.get("UNIDAD_WEIGHTS_DIR")
    if not dest:
        raise WeightsError("no destination: pass --dest DIR or set $UNIDAD_WEIGHTS_DIR")
    names = [args.name] if args.name else [e.name for e in list_weights() if e.kind != "package_file"]
    for name in names:
        path = fetch(name, dest)
        report = verify(name, dest) if get_entry(name).kind != "hf_dir" else None
        print(f"{name}: {path}" + (f" ({report.message})" if report else ""))
    return 0


def _cmd_path(args) -> int:
    print(resolve(args.name, args.weights_dir))
    return 0


def _cmd_export_sd15_unet(args) -> int:
    """A unidad weights file (module 'model') of SD1.5 with another UNet's weights: what a method's
    role reads, e.g. `init: weights/dmd2_sd15_1step.safetensors` in config/methods_sdp.yaml."""
    from unidad.jobs.teachers import export_sd15_unet

    export_sd15_unet(args.unet, args.out, args.model_dir, args.weights_dir)
    return 0


def _guarded(command, args) -> int:
    """Run one CLI command; a WeightsError becomes one stderr line and exit status 1."""
    try:
        return command(args)
    except WeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _add_commands(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights-dir", default=None, help="searched before $UNIDAD_WEIGHTS_DIR")
    commands = parser.add_subparsers(dest="weights_command", required=True)
    p = commands.add_parser("list", help="manifest entries and where they are found")
    p.set_defaults(func=functools.partial(_guarded, _cmd_list))
    p = commands.add_parser("verify", help="check sha256 of local copies (all entries without NAME); "
                            "with --config, exit 1 unless every file that config needs is in place")
    p.add_argument("name", nargs="?")
    p.add_argument("--config", default=None, metavar="CONFIG",
                   help="a workflow config: check exactly the weights it needs (the pre-flight check before a cluster run)")
    p.set_defaults(func=functools.partial(_guarded, _cmd_verify))
    p = commands.add_parser("fetch", help="download (needs internet); the only downloader")
    p.add_argument("name", nargs="?")
    p.add_argument("--dest", default=None, help="target folder (default $UNIDAD_WEIGHTS_DIR)")
    p.set_defaults(func=functools.partial(_guarded, _cmd_fetch))
    p = commands.add_parser("export-sd15-unet", help="SD1.5 with another UNet's weights (e.g. dmd2_sd15_1step) "
                            "as a unidad weights file a method's role can read")
    p.add_argument("--unet", required=True, help="manifest name or path of the UNet state dict")
    p.add_argument("--out", required=True, help="the .safetensors file to write")
    p.add_argument("--model-dir", default=None, help="SD1.5 diffusers folder (default: the staged sd15)")
    p.set_defaults(func=functools.partial(_guarded, _cmd_export_sd15_unet))
    p = commands.add_parser("path", help="print the local path of NAME")
    p.add_argument("name")
    p.set_defaults(func=functools.partial(_guarded, _cmd_path))


def add_weights_subparser(subparsers) -> argparse.ArgumentParser:
    """Add `weights` to the `unidad` command's subparsers; `args.func(args)` returns the exit status."""
    parser = subparsers.add_parser("weights", help="list, verify, fetch or locate pretrained weights")
    _add_commands(parser)
    return parser


def cli(argv: Sequence[str] | None = None) -> int:
    """`unidad weights list|verify|fetch|path [NAME]` as a standalone entry point."""
    parser = argparse.ArgumentParser(prog="unidad weights", description="pretrained weights: list, verify, fetch, locate")
    _add_commands(parser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(cli())
