"""Pretrained weights: the manifest, local lookup, checksum verification and the one explicit downloader.

Nothing here downloads implicitly. `resolve` only looks in local folders, in this order:
explicit `weights_dir` (from the config) > $UNIDAD_WEIGHTS_DIR > $TORCH_HOME/hub/checkpoints >
the Hugging Face cache under $HF_HOME (for entries hosted on the Hub). `fetch` (the `unidad weights
fetch NAME` command) is the only code path that touches the network.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

MANIFEST_PATH = Path(__file__).with_name("weights_manifest.json")
KINDS = ("file", "hf_dir", "package_file")
REQUIRED_FIELDS = ("name", "kind", "filename", "url", "sha256", "licence", "description", "used_by")
_HASH_CHUNK = 1 << 20


class WeightsError(RuntimeError):
    """A missing, corrupt or unknown weights file; the message is one line naming the fix."""


class MissingWeightsError(WeightsError):
    """The weights are not in any searched location."""


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    kind: str
    filename: str  # file name, or the folder name of an hf_dir snapshot
    url: str
    sha256: str | None  # None = not pinned yet
    licence: str
    description: str
    used_by: tuple[str, ...]
    sha256_prefix: str | None = None  # torch-hub style names carry the first hex digits of the hash
    hf_repo: str | None = None
    hf_revision: str | None = None
    # hf_dir: files that must exist; an inner tuple lists alternatives (any one suffices)
    hf_files: tuple[str | tuple[str, ...], ...] = ()
    package: str | None = None
    package_path: str | None = None

    @property
    def expected_hash_text(self) -> str:
        if self.sha256:
            return self.sha256
        if self.sha256_prefix:
            return f"{self.sha256_prefix}... (only the prefix is pinned)"
        return "(not pinned yet)"


@dataclass(frozen=True)
class VerifyReport:
    name: str
    path: Path
    sha256: str | None  # None for hf_dir entries (checked by their file list)
    pinned: bool
    message: str


def _entry_from_json(raw: dict) -> WeightsEntry:
    missing = [f for f in REQUIRED_FIELDS if f not in raw]
    name = raw.get("name", "?")
    if missing:
        raise WeightsError(f"weights manifest entry '{name}' lacks field(s) {missing}; fix {MANIFEST_PATH}")
    if raw["kind"] not in KINDS:
        raise WeightsError(f"weights manifest entry '{name}' has kind '{raw['kind']}'; use one of {KINDS}")
    sha = raw["sha256"]
    if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
        raise WeightsError(f"weights manifest entry '{name}' has a malformed sha256; use 64 lowercase hex digits")
    if raw["kind"] == "hf_dir" and not (raw.get("hf_repo") and raw.get("hf_files")):
        raise WeightsError(f"weights manifest entry '{name}' (hf_dir) needs hf_repo and hf_files")
    if raw["kind"] == "package_file" and not (raw.get("package") and raw.get("package_path")):
        raise WeightsError(f"weights manifest entry '{name}' (package_file) needs package and package_path")
    files = tuple(tuple(f) if isinstance(f, list) else f for f in raw.get("hf_files", ()))
    return WeightsEntry(
        name=raw["name"],
        kind=raw["kind"],
        filename=raw["filename"],
        url=raw["url"],
        sha256=sha,
        licence=raw["licence"],
        description=raw["description"],
        used_by=tuple(raw["used_by"]),
        sha256_prefix=raw.get("sha256_prefix"),
        hf_repo=raw.get("hf_repo"),
        hf_revision=raw.get("hf_revision"),
        hf_files=files,
        package=raw.get("package"),
        package_path=raw.get("package_path"),
    )


def load_manifest(path: Path = MANIFEST_PATH) -> dict[str, WeightsEntry]:
    raw = json.loads(Path(path).read_text())
    entries: dict[str, WeightsEntry] = {}
    for item in raw["weights"]:
        entry = _entry_from_json(item)
        if entry.name in entries:
            raise WeightsError(f"weights manifest lists '{entry.name}' twice; fix {path}")
        entries[entry.name] = entry
    return entries


@functools.lru_cache(maxsize=1)
def manifest() -> dict[str, WeightsEntry]:
    """The packaged manifest, parsed once (a mutable dict, so tests can add entries)."""
    return load_manifest()


def get_entry(name: str) -> WeightsEntry:
    entries = manifest()
    if name not in entries:
        raise WeightsError(f"unknown weights '{name}'; known: {', '.join(sorted(entries))}")
    return entries[name]


def list_weights() -> list[WeightsEntry]:
    return [manifest()[n] for n in sorted(manifest())]


# ---------------------------------------------------------------------------------------------- lookup

def _torch_home() -> Path:
    if os.environ.get("TORCH_HOME"):
        return Path(os.environ["TORCH_HOME"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "torch"


def _hf_hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "huggingface" / "hub"


def search_dirs(weights_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for a weights file, in priority order (the HF cache is searched separately)."""
    dirs = []
    if weights_dir is not None:
        dirs.append(Path(weights_dir))
    if os.environ.get("UNIDAD_WEIGHTS_DIR"):
        dirs.append(Path(os.environ["UNIDAD_WEIGHTS_DIR"]))
    dirs.append(_torch_home() / "hub" / "checkpoints")
    return dirs


def _hf_snapshots(entry: WeightsEntry) -> list[Path]:
    """Snapshot folders of the entry's repo in the HF cache: the pinned revision's first, if recorded."""
    repo_dir = _hf_hub_cache() / ("models--" + entry.hf_repo.replace("/", "--"))
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return []
    ordered = sorted(p for p in snapshots.iterdir() if p.is_dir())
    ref = repo_dir / "refs" / (entry.hf_revision or "main")
    if ref.is_file():
        pinned = snapshots / ref.read_text().strip()
        ordered = [pinned] + [p for p in ordered if p != pinned]
    return ordered


def _dir_is_complete(folder: Path, files: Sequence[str | tuple[str, ...]]) -> list[str]:
    """The required files missing from `folder` (alternatives shown as a|b)."""
    missing = []
    for item in files:
        options = item if isinstance(item, tuple) else (item,)
        if not any((folder / o).is_file() for o in options):
            missing.append("|".join(options))
    return missing


def _searched_text(entry: WeightsEntry, weights_dir) -> str:
    places = [str(d) for d in search_dirs(weights_dir)]
    if entry.hf_repo:
        places.append(f"HF cache {_hf_hub_cache()} (repo {entry.hf_repo})")
    return "[" + ", ".join(places) + "]"


def _package_file(entry: WeightsEntry) -> Path | None:
    spec = importlib.util.find_spec(entry.package)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / entry.package_path
    return path if path.is_file() else None


def resolve(name: str, weights_dir: str | os.PathLike | None = None) -> Path:
    """Local path of the weights `name`; raises WeightsError (one line, with the fix) when absent."""
    entry = get_entry(name)
    if entry.kind == "package_file":
        path = _package_file(entry)
        if path is None:
            raise MissingWeightsError(
                f"missing weights '{name}': {entry.package_path} not found in the installed package "
                f"'{entry.package}'; install it with: pip install {entry.package}"
            )
        return path
    if entry.kind == "file":
        for folder in search_dirs(weights_dir):
            if (folder / entry.filename).is_file():
                return folder / entry.filename
        if entry.hf_repo:
            for snap in _hf_snapshots(entry):
                if (snap / entry.filename).is_file():
                    return snap / entry.filename
        raise MissingWeightsError(
            f"missing weights '{name}': file {entry.filename} not found in {_searched_text(entry, weights_dir)}; "
            f"expected sha256 {entry.expected_hash_text}; get it with: unidad weights fetch {name} "
            f"(on a machine with internet) or place {entry.filename} in $UNIDAD_WEIGHTS_DIR"
        )
    # hf_dir: a folder named entry.filename in a search dir, or a snapshot in the HF cache
    candidates = [d / entry.filename for d in search_dirs(weights_dir)] + _hf_snapshots(entry)
    for folder in candidates:
        if folder.is_dir() and not _dir_is_complete(folder, entry.hf_files):
            return folder
    required = ", ".join("|".join(f) if isinstance(f, tuple) else f for f in entry.hf_files)
    raise MissingWeightsError(
        f"missing weights '{name}': folder {entry.filename} (HF repo {entry.hf_repo}) with files [{required}] "
        f"not found in {_searched_text(entry, weights_dir)}; get it with: unidad weights fetch {name} "
        f"(on a machine with internet) or place the folder {entry.filename} in $UNIDAD_WEIGHTS_DIR"
    )


def is_available(name: str, weights_dir: str | os.PathLike | None = None) -> bool:
    try:
        resolve(name, weights_dir)
    except WeightsError:
        return False
    return True


# ---------------------------------------------------------------------------------------- verification

def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(entry: WeightsEntry, actual: str, where: str) -> None:
    """Raise WeightsError if `actual` contradicts the pinned sha256 (or its pinned prefix)."""
    if entry.sha256 and actual != entry.sha256:
        raise WeightsError(
            f"sha256 mismatch for weights '{entry.name}' at {where}: expected {entry.sha256}, actual {actual}; "
            f"the file is corrupt or a different version: delete it and run: unidad weights fetch {entry.name}"
        )
    if not entry.sha256 and entry.sha256_prefix and not actual.startswith(entry.sha256_prefix):
        raise WeightsError(
            f"sha256 mismatch for weights '{entry.name}' at {where}: expected prefix {entry.sha256_prefix}, "
            f"actual {actual}; delete it and run: unidad weights fetch {entry.name}"
        )


def verify(name: str, weights_dir: str | os.PathLike | None = None) -> VerifyReport:
    """Check the local copy of `name` against its pinned sha256 (or, for hf_dir, its file list)."""
    entry = get_entry(name)
    path = resolve(name, weights_dir)
    if entry.kind == "hf_dir":
        return VerifyReport(name, path, None, False, f"ok: all {len(entry.hf_files)} required files present")
    actual = file_sha256(path)
    check_sha256(entry, actual, str(path))
    if entry.sha256:
        return VerifyReport(name, path, actual, True, "ok: sha256 matches the pinned value")
    return VerifyReport(
        name, path, actual, False,
        f"not pinned: to pin it, set \"sha256\": \"{actual}\" for '{name}' in {MANIFEST_PATH.name}",
    )


# ------------------------------------------------------------------------- what a config needs

# Manifest entries behind the config's choices (registry names -> what they load at run time).
BACKBONE_WEIGHTS = {"sd15": ("sd15",)}  # backbone.kind (sd15 loads its diffusers folder at build time)
EXTRACTOR_WEIGHTS = {"inception": ("inception_v3_tf",)}  # evaluation.extractor, for metrics needing "reference"
DISTANCE_WEIGHTS = {"vgg": ("lpips_vgg16", "lpips_vgg_lin_v01")}  # evaluation.lpips, for metrics needing "distance"


@dataclass(frozen=True)
class RequiredWeights:
    """One file (or folder) a config's jobs load: a manifest entry, or a path the config names."""

    name: str | None  # manifest entry; None for a plain path
    path: str | None  # the path the config names (name is None)
    needed_by: tuple[str, ...]  # what in the config needs it, e.g. "evaluation.extractor inception"

    @property
    def label(self) -> str:
        return self.name or self.path


def is_path_ref(ref: str) -> bool:
    """A weights reference (source.weights) that is a path rather than a manifest name."""
    return os.sep in ref or ref.endswith((".pt", ".safetensors"))


def required_weights(config: dict) -> list[RequiredWeights]:
    """Every weights file the jobs of a validated config load, in a stable order: the staged source
    model (source.kind file), the backbone's own weights (sd15), the extractor and distance of the
    configured metrics (evaluation.extractor / evaluation.lpips), and the .safetensors paths that
    methods' stages name as weights roles. The demo (pretrain source, demo extractor) needs none."""
    from unidad.metrics.registry import metrics_needing
    from unidad.plan import Plan

    found: dict[tuple[str | None, str | None], list[str]] = {}

    def need(why: str, name: str | None = None, path: str | None = None) -> None:
        reasons = found.setdefault((name, path), [])
        if why not in reasons:
            reasons.append(why)

    source = config["source"]
    if source["kind"] == "file":
        ref = source["weights"]
        if is_path_ref(ref):
            need("source.weights", path=ref)
        else:
            need("source.weights", name=ref)
    backbone = config["backbone"]
    model_dir = (backbone.get("params") or {}).get("model_dir")
    if backbone["kind"] == "sd15" and model_dir:
        need("backbone.params.model_dir", path=model_dir)
    else:
        for name in BACKBONE_WEIGHTS.get(backbone["kind"], ()):
            need(f"backbone.kind {backbone['kind']}", name=name)
    evaluation = config["evaluation"]
    if metrics_needing("reference", evaluation["metrics"]):
        for name in EXTRACTOR_WEIGHTS.get(evaluation["extractor"], ()):
            need(f"evaluation.extractor {evaluation['extractor']}", name=name)
    if metrics_needing("distance", evaluation["metrics"]):
        for name in DISTANCE_WEIGHTS.get(evaluation["lpips"], ()):
            need(f"evaluation.lpips {evaluation['lpips']}", name=name)
    plan = Plan(config)
    for mr in plan.method_runs:
        for slug in mr.stages:
            run = plan.runs[slug]
            for role, ref in run.roles.items():
                if ref.startswith("file:"):
                    need(f"method {mr.method} stage {run.stage_name} role {role}", path=ref[len("file:"):])
    return [RequiredWeights(name, path, tuple(why)) for (name, path), why in found.items()]


@dataclass(frozen=True)
class RequiredStatus:
    """Whether one required file is usable: ok, or the problem and the command that fixes it."""

    required: RequiredWeights
    ok: bool
    message: str  # the verify message, or the problem
    fix: str = ""  # the command (or step) that gets the file; empty when ok


def check_required(config: dict, weights_dir: str | os.PathLike | None = None) -> list[RequiredStatus]:
    """Every file `required_weights(config)` lists, checked as `verify` does (present, sha256 pinned
    in the manifest matches), with the command that gets each one that is missing or wrong."""
    out = []
    for req in required_weights(config):
        if req.name is None:
            path = Path(req.path)
            if path.exists():
                out.append(RequiredStatus(req, True, f"present ({path})"))
            else:
                out.append(RequiredStatus(req, False, f"missing: {path} not found",
                                          "place the file at that path (the config names it; it is not in the manifest)"))
            continue
        try:
            report = verify(req.name, weights_dir)
        except MissingWeightsError:
            entry = get_entry(req.name)
            fix = (f"pip install {entry.package}" if entry.kind == "package_file"
                   else f"unidad weights fetch {req.name} (on a machine with internet), or place "
                        f"{entry.filename} in $UNIDAD_WEIGHTS_DIR")
            out.append(RequiredStatus(req, False, "missing: not found in " + _searched_text(entry, weights_dir), fix))
        except WeightsError as err:  # a wrong hash, or a name the manifest does not know
            known = req.name in manifest()
            fix = (f"delete it and run: unidad weights fetch {req.name}" if known
                   else "name a manifest entry (unidad weights list) or a path")
            out.append(RequiredStatus(req, False, str(err), fix))
        else:
            out.append(RequiredStatus(req, True, f"{report.message} ({report.path})"))
    return out


# ------------------------------------------------------------------------------------------- download

def _download_file(entry: WeightsEntry, dest: Path) -> Path:
    target = dest / entry.filename
    request = urllib.request.Request(entry.url, headers={"User-Agent": "unidad-bench weights fetch"})
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.filename}.", suffix=".part", dir=dest)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=60) as response:
            for chunk in iter(lambda: response.read(_HASH_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        check_sha256(entry, digest.hexdigest(), entry.url)
        os.replace(tmp_name, target)  # atomic: a crash never leaves a half-written file under the real name
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return target


def _download_hf_dir(entry: WeightsEntry, dest: Path) -> Path:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise WeightsError(f"cannot fetch '{entry.name}': HF_HUB_OFFLINE is set; unset it on a machine with internet")
    from huggingface_hub import snapshot_download  # the only place the Hub is contacted

    patterns = [p for item in entry.hf_files for p in (item if isinstance(item, tuple) else (item,))]
    target = dest / entry.filename
    snapshot_download(
        repo_id=entry.hf_repo, revision=entry.hf_revision, local_dir=str(target), allow_patterns=patterns
    )
    missing = _dir_is_complete(target, entry.hf_files)
    if missing:
        raise WeightsError(f"fetched '{entry.name}' into {target} but {missing} are missing; check hf_files in the manifest")
    return target


def fetch(name: str, dest: str | os.PathLike) -> Path:
    """Download `name` into folder `dest`, checking the checksum; returns the local path."""
    entry = get_entry(name)
    if entry.kind == "package_file":
        raise WeightsError(f"weights '{name}' ship inside the pip package '{entry.package}'; run: pip install {entry.package}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if entry.kind == "hf_dir":
        return _download_hf_dir(entry, dest)
    existing = dest / entry.filename
    if existing.is_file():
        check_sha256(entry, file_sha256(existing), str(existing))
        return existing
    return _download_file(entry, dest)


# ------------------------------------------------------------------------------------------------ CLI

def _cmd_list(args) -> int:
    for entry in list_weights():
        try:
            where = str(resolve(entry.name, args.weights_dir))
        except WeightsError:
            where = "MISSING"
        pin = entry.sha256[:12] if entry.sha256 else ("prefix " + entry.sha256_prefix if entry.sha256_prefix else "unpinned")
        print(f"{entry.name:22s} {entry.kind:12s} {pin:16s} {where}")
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
    parser = argparse.ArgumentParser(prog="unidad weights", description=__doc__.splitlines()[0])
    _add_commands(parser)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(cli())
