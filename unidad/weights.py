"""Pretrained weights: the manifest, local lookup, checksum verification and the one explicit downloader.

Pins: a file entry pins its full sha256 where the publisher gives one; where only a prefix is
published (torch hub names such as vgg16-397923af.pth) `verify` checks the prefix. A file without a
full pinned sha256 gets its full sha256 recorded on its first verification (a small JSON next to the
file, or in the user's weights folder when that is not writable; never in the installed package), and
later verifications (and the metric code) compare against that record. Hugging Face entries pin a commit
(`hf_revision`, 40 hex digits) or say in `revision_note` that they still follow a branch and how to
pin them.

Nothing here downloads implicitly. `resolve` only looks in local folders, in this order:
explicit `weights_dir` (from the config) > $UNIDAD_WEIGHTS_DIR > $TORCH_HOME/hub/checkpoints >
the Hugging Face cache under $HF_HOME (for entries hosted on the Hub). `fetch` (the `unidad weights
fetch NAME` command) is the only code path that touches the network.
"""
from __future__ import annotations

import datetime
import functools
import hashlib
import importlib.util
import json
import os
import re
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

MANIFEST_PATH = Path(__file__).with_name("weights_manifest.json")
KINDS = ("file", "hf_dir", "package_file")
REQUIRED_FIELDS = ("name", "kind", "filename", "url", "sha256", "licence", "description", "used_by")
_HASH_CHUNK = 1 << 20
HASH_RECORD_SUFFIX = ".sha256.json"  # the full sha256 recorded on first verification, next to the file
_COMMIT = re.compile(r"[0-9a-f]{40}")


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
    revision_note: str | None = None  # why hf_revision is not a commit yet, and how to pin it
    export: str | None = None  # "sd15_unet": the workflow makes weights/<name>.safetensors from it

    @property
    def revision_pinned(self) -> bool:
        """A Hugging Face entry names a commit, not a branch (entries not on the Hub: True)."""
        return self.hf_repo is None or bool(self.hf_revision and _COMMIT.fullmatch(self.hf_revision))

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
    revision = raw.get("hf_revision")
    if raw.get("hf_repo") and not (revision and _COMMIT.fullmatch(revision)) and not raw.get("revision_note"):
        raise WeightsError(f"weights manifest entry '{name}' follows the branch '{revision}' of {raw['hf_repo']}; "
                           "pin hf_revision to a 40-hex commit or say in revision_note how it is to be pinned")
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
        revision_note=raw.get("revision_note"),
        export=raw.get("export"),
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


def searched_text(entry: WeightsEntry, weights_dir) -> str:
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
            f"missing weights '{name}': file {entry.filename} not found in {searched_text(entry, weights_dir)}; "
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
        f"not found in {searched_text(entry, weights_dir)}; get it with: unidad weights fetch {name} "
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


def _user_weights_dir() -> Path:
    if os.environ.get("UNIDAD_WEIGHTS_DIR"):
        return Path(os.environ["UNIDAD_WEIGHTS_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "unidad" / "weights"


def hash_record_paths(path: str | os.PathLike) -> list[Path]:
    """Where the first-verification record of a weights file may be, in order: next to the file
    (`<file>.sha256.json`; not inside the Hugging Face cache), then in the user's weights folder
    ($UNIDAD_WEIGHTS_DIR, else ~/.cache/unidad/weights) under .sha256/, named after the file's path."""
    path = Path(path).absolute()
    beside = path.with_name(path.name + HASH_RECORD_SUFFIX)
    in_user_dir = (_user_weights_dir() / ".sha256" /
                   f"{path.name}-{hashlib.sha1(str(path).encode()).hexdigest()[:12]}{HASH_RECORD_SUFFIX}")
    in_hf_cache = _hf_hub_cache().absolute() in path.parents
    return [in_user_dir] if in_hf_cache else [beside, in_user_dir]


def read_hash_record(path: str | os.PathLike) -> tuple[dict, Path] | None:
    """The recorded full sha256 of the file at `path` (and where it is recorded), if any."""
    for record_path in hash_record_paths(path):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("file") == str(Path(path).absolute()) and record.get("sha256"):
            return record, record_path
    return None


def write_hash_record(entry: WeightsEntry, path: str | os.PathLike, actual: str) -> Path | None:
    """Record `actual` as the full sha256 of the file at `path`: next to it, else in the user's weights
    folder; None when neither can be written."""
    path = Path(path).absolute()
    record = {"name": entry.name, "file": str(path), "size": path.stat().st_size, "sha256": actual,
              "checked_prefix": entry.sha256_prefix,
              "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "by": "unidad weights verify (first verification)"}
    for record_path in hash_record_paths(path):
        try:
            record_path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{record_path.name}.", dir=record_path.parent)
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(record, indent=2) + "\n")
            os.replace(tmp, record_path)
            return record_path
        except OSError:
            continue
    return None


def check_local_file(entry: WeightsEntry, path: str | os.PathLike, actual: str) -> tuple[dict, Path] | None:
    """Raise WeightsError if `actual` contradicts the manifest (sha256 or prefix) or, for a file
    without a pinned sha256, the sha256 recorded at its first verification; returns that record."""
    check_sha256(entry, actual, str(path))
    if entry.sha256:
        return None
    found = read_hash_record(path)
    if found is not None and found[0]["sha256"] != actual:
        record, record_path = found
        raise WeightsError(
            f"sha256 of weights '{entry.name}' at {path} changed since its first verification on "
            f"{record.get('recorded', '?')}: recorded {record['sha256']}, actual {actual} (record {record_path}); "
            f"the file was replaced or is corrupt: delete it and run: unidad weights fetch {entry.name} "
            f"(or, if the new file is intended, delete the record and verify again)"
        )
    return found


def verify(name: str, weights_dir: str | os.PathLike | None = None) -> VerifyReport:
    """Check the local copy of `name` against its pinned sha256 (or, for hf_dir, its file list). A file
    without a pinned sha256 has its pinned prefix checked, if any, and is compared with the sha256
    recorded at its first verification; the first verification records it."""
    entry = get_entry(name)
    path = resolve(name, weights_dir)
    revision = "" if entry.revision_pinned else f"; revision not pinned ({entry.hf_revision}): {entry.revision_note}"
    if entry.kind == "hf_dir":
        return VerifyReport(name, path, None, False,
                            f"ok: all {len(entry.hf_files)} required files present{revision}")
    actual = file_sha256(path)
    found = check_local_file(entry, path, actual)
    if entry.sha256:
        return VerifyReport(name, path, actual, True, "ok: sha256 matches the pinned value" + revision)
    prefix = f"prefix {entry.sha256_prefix} ok; " if entry.sha256_prefix else ""
    if found is not None:
        how = f"{prefix}sha256 matches the one recorded at its first verification ({found[1]})"
    else:
        record_path = write_hash_record(entry, path, actual)
        how = (f"{prefix}first verification: sha256 {actual} recorded in {record_path}" if record_path
               else f"{prefix}sha256 {actual} (could not be recorded: no writable folder)")
    return VerifyReport(
        name, path, actual, False,
        f"{how}; not pinned in the manifest: to pin it, set \"sha256\": \"{actual}\" for '{name}' in "
        f"{MANIFEST_PATH.name}{revision}",
    )


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
        check_local_file(entry, existing, file_sha256(existing))
        return existing
    return _download_file(entry, dest)


def is_path_ref(ref: str) -> bool:
    """A weights reference (source.weights) that is a path rather than a manifest name."""
    return os.sep in ref or ref.endswith((".pt", ".safetensors"))
