"""Stages other than Uni-DAD. Importing the package registers each one (one small file each).

To add a baseline: drop a module here that defines a config dataclass and a Stage subclass decorated
with @register_stage("name"), import it below, and add a method entry to config/methods.yaml
(docs/adding_a_baseline.md walks through it).
"""
import unidad.stages  # noqa: F401  (core stages first: pretrain, unidad)
from baselines import dmd2, ft, student_ft  # noqa: F401
