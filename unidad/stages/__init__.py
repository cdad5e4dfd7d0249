"""Training stages. Importing this package registers the core stages (pretrain, unidad, unidad_dp); the other
stages come from plugins (the `baselines` package and the config key `plugins`): look stages up
through `stage_registry` or `get_stage`, which load the plugins first."""
from __future__ import annotations

from typing import Iterable

from unidad.plugins import load_plugins
from unidad.registry import Registry
from unidad.stages.base import STAGES, Stage, StageContext, TrainConfig, Update, register_stage  # noqa: F401
from unidad.stages import anchored, denoise, unidad  # noqa: F401  (registers "pretrain", "unidad", "unidad_dp")


def stage_registry(plugins: Iterable[str] = ()) -> Registry[type[Stage]]:
    """The stage registry with every plugin loaded: the installed entry points and `plugins` (the
    config key of that name)."""
    load_plugins(plugins)
    return STAGES


def get_stage(name: str, plugins: Iterable[str] = ()) -> type[Stage]:
    """The stage class registered as `name`, after loading the plugins."""
    return stage_registry(plugins).get(name)
