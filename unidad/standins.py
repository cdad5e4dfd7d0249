"""Stand-in weights: files with the real architecture and keys but random values, written only by the
rehearsal's preparation (`unidad rehearsal prepare`), so the paper's DAG can run end to end where the
real weights cannot be downloaded.

A stand-in is known two ways: by its stamp (a `standins.json` beside it lists its file name and sha256,
`"standin": true`) and by its checksum (every stand-in's sha256 is also recorded in the user's registry,
~/.cache/unidad/standins.json, so a copy elsewhere is still known wherever its hash is computed).
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


def stamp_of(path: str | os.PathLike) -> dict[str, Any] | None:
    """The stand-in record of the file at `path` from the `standins.json` beside it, if it lists the file."""
    path = Path(path)
    return _read(path.parent / STANDINS_FILE).get("files", {}).get(path.name)


def known_hashes() -> set[str]:
    return set(_read(registry_path()).get("sha256", []))


def is_standin(path: str | os.PathLike, sha256: str | None = None) -> bool:
    """A stand-in by its stamp, or (when its sha256 is given) by checksum."""
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
            f"config/paper_fsig_rehearsal.yaml")
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
    hashes = sorted(known_hashes() | {rec["sha256"] for rec in files.values()})
    write_json_atomic(reg, {"standin": True, "note": "sha256 of every stand-in weights file written on this "
                                                     "machine (unidad rehearsal prepare)", "sha256": hashes})
    return out
