"""What the tables and figures know about methods, read from the methods file (config/methods.yaml).

- Display order: the order of the entries in the file; methods the file does not list follow in
  alphabetical order, and reference rows come last.
- `single_stage:` (yes | no | adaptation only): the tables' "single-stage" column. A method without
  the key shows "no"; a reference row shows nothing.
- `reference: true`: a row that describes data rather than a trained method (the training shots, the
  source teacher before adaptation): shown for reference, never ranked "best".
- `quoted: true`: a row of the paper's tables that this project has no code for (baselines.md);
  the paper comparison marks it "(quoted)".

Reference and quoted entries have a description and no stages; the workflow's plan skips them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

SINGLE_STAGE = ("yes", "no", "adaptation only")
DEFAULT_METHODS_FILE = Path(__file__).resolve().parents[2] / "config" / "methods.yaml"


@dataclass(frozen=True)
class MethodInfo:
    name: str
    description: str = ""
    single_stage: str | None = "no"  # None: a reference row (the column stays empty)
    reference: bool = False
    quoted: bool = False
    note: str = ""  # a footnote the main table prints when the method is in it


def _single_stage(name: str, value: Any) -> str:
    if isinstance(value, bool):  # YAML 1.1 reads an unquoted yes / no as a boolean
        value = "yes" if value else "no"
    if value not in SINGLE_STAGE:
        raise ValueError(f"methods file entry '{name}': single_stage must be one of {', '.join(SINGLE_STAGE)}, "
                         f"got {value!r}")
    return value


class MethodCatalogue:
    """The methods file's entries, in file order, as the tables and figures use them."""

    def __init__(self, entries: Iterable[MethodInfo] = ()):
        self._entries: dict[str, MethodInfo] = {}
        for info in entries:
            if info.name in self._entries:
                raise ValueError(f"method '{info.name}' is listed twice")
            self._entries[info.name] = info

    @classmethod
    def from_dict(cls, spec: Mapping[str, Mapping[str, Any]]) -> "MethodCatalogue":
        """From the parsed methods file ({name: entry}); entries keep the mapping's order."""
        entries = []
        for name, entry in spec.items():
            entry = entry or {}
            if not isinstance(entry, Mapping):
                raise ValueError(f"methods file entry '{name}' must be a mapping, got {type(entry).__name__}")
            reference, quoted = bool(entry.get("reference", False)), bool(entry.get("quoted", False))
            if reference and quoted:
                raise ValueError(f"methods file entry '{name}' is marked both reference and quoted; pick one")
            if (reference or quoted) and entry.get("stages"):
                raise ValueError(f"methods file entry '{name}' is a {'reference' if reference else 'quoted'} row "
                                 "and cannot have stages (the workflow never runs it)")
            single = None if reference else _single_stage(name, entry.get("single_stage", "no"))
            entries.append(MethodInfo(name, str(entry.get("description", "")), single, reference, quoted,
                                      str(entry.get("note", ""))))
        return cls(entries)

    @classmethod
    def from_file(cls, path: str | Path) -> "MethodCatalogue":
        import yaml

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"methods file {path} not found (the project's is config/methods.yaml)")
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(yaml.safe_load(f) or {})

    @classmethod
    def default(cls) -> "MethodCatalogue":
        """The project's config/methods.yaml (read once)."""
        return _default_catalogue()

    # ------------------------------------------------------------------------------ queries
    def __contains__(self, method: str) -> bool:
        return method in self._entries

    def get(self, method: str) -> MethodInfo | None:
        return self._entries.get(method)

    @property
    def order(self) -> tuple[str, ...]:
        """Every entry, in file order."""
        return tuple(self._entries)

    @property
    def runnable(self) -> tuple[str, ...]:
        """Entries that are methods of this project (neither reference nor quoted rows), in file order."""
        return tuple(m for m, i in self._entries.items() if not i.reference and not i.quoted)

    @property
    def references(self) -> tuple[str, ...]:
        return tuple(m for m, i in self._entries.items() if i.reference)

    @property
    def quoted(self) -> tuple[str, ...]:
        return tuple(m for m, i in self._entries.items() if i.quoted)

    def is_reference(self, method: str) -> bool:
        info = self._entries.get(method)
        return bool(info and info.reference)

    def is_quoted(self, method: str) -> bool:
        info = self._entries.get(method)
        return bool(info and info.quoted)

    def single_stage(self, method: str) -> str | None:
        """The "single-stage" column: yes, no, adaptation only; "no" for a method the file does not
        list; None for a reference row."""
        info = self._entries.get(method)
        return info.single_stage if info else "no"

    def note(self, method: str) -> str:
        info = self._entries.get(method)
        return info.note if info else ""

    def ordered(self, methods: Iterable[str]) -> list[str]:
        """The methods given, in file order, then methods the file does not list alphabetically,
        reference rows last."""
        present = list(dict.fromkeys(methods))
        listed = [m for m in self._entries if m in present and not self._entries[m].reference]
        reference = [m for m in self.references if m in present]
        others = sorted(m for m in present if m not in self._entries)
        return listed + others + reference


@functools.lru_cache(maxsize=1)
def _default_catalogue() -> MethodCatalogue:
    return MethodCatalogue.from_file(DEFAULT_METHODS_FILE)


def catalogue(methods: MethodCatalogue | None) -> MethodCatalogue:
    """The catalogue given, or the project's default one."""
    return methods if methods is not None else MethodCatalogue.default()
