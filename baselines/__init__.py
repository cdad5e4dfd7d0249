"""Stages other than Uni-DAD, one small module each.

Every module in this package is imported here, so a new baseline stage is one new file: define a
config dataclass and a Stage subclass decorated with @register_stage("name"), then add a method entry
to config/methods.yaml (docs/adding_a_baseline.md walks through it). No Snakemake rule is needed.
"""
import importlib
import pkgutil

import unidad.stages  # noqa: F401  (core stages first: pretrain, unidad)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    importlib.import_module(f"{__name__}.{_module}")
