"""Plugins: modules that register stages, metrics, extractors or backbones when imported.

Two ways in, both read here and nowhere else: a package entry point in the group `unidad.plugins`
(how `baselines/` registers its stages: pyproject.toml), and the config key `plugins` (a list of
importable module names, for a project's own additions without packaging).
"""
from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points
from typing import Iterable

GROUP = "unidad.plugins"
_loaded: set[str] = set()


@functools.lru_cache(maxsize=1)
def _entry_point_modules() -> tuple[str, ...]:
    """The installed plugins (read once per process: scanning the installed packages takes tens of ms,
    and registry lookups ask often)."""
    return tuple(ep.value for ep in entry_points(group=GROUP))


def load_plugins(modules: Iterable[str] = ()) -> list[str]:
    """Imports every entry point of the group and every module named; each once. Returns the names loaded."""
    names = list(_entry_point_modules()) + list(modules)
    for name in names:
        if name not in _loaded:
            try:
                importlib.import_module(name)
            except ImportError as err:
                raise ImportError(f"plugin module '{name}' cannot be imported ({err}); fix the config key "
                                  f"plugins or reinstall the project (make install)") from err
            _loaded.add(name)
    return names
