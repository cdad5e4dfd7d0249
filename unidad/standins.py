"""Stand-in weights: files with the real architecture and keys but random values, written only by the
rehearsal's preparation (`unidad rehearsal prepare`), so the paper's DAG can run end to end where the
real weights cannot be downloaded.

A stand-in is known three ways: by its stamp (a `standins.json` beside it lists its file name and
sha256, `"standin": true`), by its checksum (every stand-in's sha256 is also recorded in the user's
registry, ~/.cache/unidad/standins.json, so a copy elsewhere is still known wherever its hash is
computed), and, for what travels as a folder or a safetensors file, by a mark inside it that a copy
keeps without hashing gigabytes: a folder (a manifest `hf_dir` entry: SD1.5, DINO) holds its own
`standins.json`, and every safetensors file a stand-in writes (or a job exports from one) carries
`unidad_standin` in its header.
Loading one is refused unless the job runs for a rehearsal config (config `rehearsal: true`), which it
says by running inside `allowed()`; every number such a job writes carries `standin: true`.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import os
from pathlib import Path
from typing import Any, Iterator

STANDINS_FILE = "standins.json"
HEADER_KEY = "unidad_standin"  # safetensors header key of a stand-in (value: "true")
_ALLOWED: contextvars.ContextVar[bool] = contextvars.ContextVar("unidad_standins_allowed", default=False)
_SEEN: contextvars.ContextVar[list | None] = contextvars.ContextVar("unidad_standins_seen", default=None)


class StandinError(RuntimeError):
    """A stand-in weights file where a real one is required; the message names the fix."""


def registry_path() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "unidad" / STANDINS_FILE


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("standin") is True else {}


def header_stamp(path: str | os.PathLike) -> bool:
    """Whether a safetensors file carries the stand-in mark in its header (reads the header only)."""
    import struct

    try:
        with open(path, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            if size > 100_000_000:
                return False
            header = json.loads(fh.read(size))
    except (OSError, ValueError, struct.error):
        return False
    return isinstance(header, dict) and (header.get("__metadata__") or {}).get(HEADER_KEY) == "true"


def folder_stamp(folder: Path) -> dict[str, Any] | None:
    """A folder's own stamp (its `standins.json`), or that of a safetensors file in it or a subfolder."""
    own = _read(folder / STANDINS_FILE)
    if own:
        return own
    for file in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*/*.safetensors")):
        if header_stamp(file):
            return {"standin": True, "file": str(file.relative_to(folder))}
    return None


def stamp_of(path: str | os.PathLike) -> dict[str, Any] | None:
    """The stand-in record of the file or folder at `path`: the `standins.json` beside it lists it, a
    folder's own stamp, or a safetensors header's mark (cheap: nothing is hashed)."""
    path = Path(path)
    beside = _read(path.parent / STANDINS_FILE).get("files", {}).get(path.name)
    if beside is not None:
        return beside
    if path.is_dir():
        return folder_stamp(path)
    if path.suffix == ".safetensors" and header_stamp(path):
        return {"standin": True, "header": HEADER_KEY}
    return None


def known_hashes() -> set[str]:
    return set(_read(registry_path()).get("sha256", []))


def is_standin(path: str | os.PathLike, sha256: str | None = None) -> bool:
    """A stand-in by its stamp (file or folder), or (when its sha256 is given) by checksum."""
    return stamp_of(path) is not None or (sha256 is not None and sha256 in known_hashes())


def check(path: str | os.PathLike, sha256: str | None, what: str) -> bool:
    """True if the file is a stand-in and the running job allows them; raises StandinError if it is one
    and the job does not; False for a real file. A stand-in used is recorded for `used()`."""
    if not is_standin(path, sha256):
        return False
    if not _ALLOWED.get():
        raise StandinError(
            f"{what}: {path} is a rehearsal stand-in (random weights written by `unidad rehearsal prepare`), "
            f"refused outside a rehearsal config; stage the real file (unidad weights fetch) or run "
            f"a rehearsal config (config/paper_fsig_rehearsal.yaml, config/paper_sdp_rehearsal.yaml)")
    seen = _SEEN.get()
    if seen is not None and str(path) not in seen:
        seen.append(str(path))
    return True


def active() -> bool:
    """Whether the running job belongs to a rehearsal config (stand-ins allowed): everything it computes
    derives from stand-in weights and is stamped `standin`."""
    return _ALLOWED.get()


@contextlib.contextmanager
def allowed(allow: bool = True) -> Iterator[list[str]]:
    """Run a job's weight loading with stand-ins allowed (a rehearsal config) or refused; yields the list
    of stand-in files the block loaded."""
    seen: list[str] = []
    token_a, token_s = _ALLOWED.set(bool(allow)), _SEEN.set(seen)
    try:
        yield seen
    finally:
        _ALLOWED.reset(token_a)
        _SEEN.reset(token_s)


def record(folder: str | os.PathLike, files: dict[str, dict[str, Any]], note: str) -> Path:
    """Stamp `files` (file name -> {name, sha256, ...}) as stand-ins: `standins.json` in `folder`, and
    their sha256 in the user's registry."""
    from unidad.atomic import write_json_atomic

    folder = Path(folder)
    out = folder / STANDINS_FILE
    write_json_atomic(out, {"standin": True, "note": note,
                            "files": {name: {**rec, "standin": True} for name, rec in files.items()}})
    reg = registry_path()
    reg.parent.mkdir(parents=True, exist_ok=True)
    # a folder's record lists its weight files' sha256 (file_sha256): each is known by checksum too
    hashes = sorted(known_hashes() | {rec["sha256"] for rec in files.values()}
                    | {h for rec in files.values() for h in (rec.get("file_sha256") or {}).values()})
    write_json_atomic(reg, {"standin": True, "note": "sha256 of every stand-in weights file written on this "
                                                     "machine (unidad rehearsal prepare)", "sha256": hashes})
    return out
