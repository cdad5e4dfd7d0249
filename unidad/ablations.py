"""Ablations as data: a config `ablations` entry expands into one variant of a method per value.

A variant is the method with one stage option set to the value (`param: shots` instead trains the
unchanged method on that many shots of the target); it keeps the method's id and carries its
`Ablation`, which names it in tables (label and value) and records the option it changed.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from unidad.config import ConfigError

# The ablation parameter that changes the number of training shots rather than a stage option.
SHOTS_PARAM = "shots"


@dataclass(frozen=True)
class Ablation:
    """One value of a config `ablations` entry: the method trained with `param` set to `value` in one of
    its stages (`param: shots` trains the unchanged method on that many shots instead)."""

    label: str  # the entry's label (default: its param); names the ablation in tables and figures
    param: str  # a stage option, or "shots"
    value: Any
    stage: str  # the stage (name within the method) whose option changes

    def fields(self) -> dict[str, str]:
        """The tidy table's ablation columns (`ablation_param` holds the label, `ablation_option` the option)."""
        return {"ablation": f"{self.label}={self.value}", "ablation_param": self.label,
                "ablation_value": str(self.value), "ablation_option": self.param}



def expand_ablations(config: dict[str, Any],
                     methods_def: dict[str, Any]) -> list[tuple[str, Ablation, dict[str, Any], list[str], list[int]]]:
    """One (method, ablation value, method spec, targets, shot counts) per value of each config ablation.
    The parameter `shots` is not a stage option: its variants are the unchanged method trained on
    that many shots of the target (the paper's 1/5/10-shot ablation)."""
    variants = []
    for i, ab in enumerate(config.get("ablations", [])):
        where = f"config key ablations[{i}]: "
        base = ab["method"]
        if base not in methods_def:
            raise ConfigError(f"{where}unknown method '{base}'; known methods: {', '.join(sorted(methods_def))}")
        stages = methods_def[base]["stages"]
        names = [st.get("name", st["stage"]) for st in stages]
        stage_name = ab.get("stage") or names[-1]
        if stage_name not in names:
            raise ConfigError(f"{where}method '{base}' has no stage '{stage_name}' (its stages: {names})")
        targets = ab.get("targets") or list(config["targets"])
        for t in targets:
            if t not in config["datasets"]:
                raise ConfigError(f"{where}target '{t}' is not under datasets")
        if ab["param"] == SHOTS_PARAM:
            _check_shots_ablation(config, ab["values"], targets, where)
        for value in ab["values"]:
            ablation = Ablation(ab.get("label") or ab["param"], ab["param"], value, stage_name)
            spec = copy.deepcopy(methods_def[base])
            if ab["param"] == SHOTS_PARAM:
                shot_counts = [int(value)]
            else:
                st = spec["stages"][names.index(stage_name)]
                st["params"] = {**(st.get("params") or {}), ab["param"]: value}
                shot_counts = list(config["shots"])
            variants.append((base, ablation, spec, targets, shot_counts))
    return variants

def _check_shots_ablation(config: dict[str, Any], values: list[Any], targets: list[str], where: str) -> None:
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}shots values must be positive integers, got {value!r}")
    for t in targets:
        if config["datasets"][t]["kind"] != "demo":
            raise ConfigError(
                f"{where}a shots ablation draws k shots of a demo domain; target '{t}' is a folder dataset, "
                f"whose shots are the images in its folder: add one dataset entry per shot count instead"
            )
