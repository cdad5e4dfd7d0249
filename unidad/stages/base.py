"""Stages: one training run each. A method is an ordered list of stages (config/methods.yaml).

A stage is
  * a config dataclass, the ONLY place its defaults live (unknown keys are rejected by name),
  * the modules it builds (trainable and frozen), from the weights its spec points at,
  * a list of `Update`s: which modules a loss trains and how often.
The one training loop (unidad.train.loop) runs every stage: ratio, accumulation, precision, clipping,
checkpoints, resume and logging live there, never in a stage.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from unidad.registry import Registry

STAGES: Registry[type["Stage"]] = Registry("stage")


class StageConfigError(ValueError):
    pass


class OptionGroup:
    """Base of stage configs and of the option groups they compose (unidad.stages.options).

    Every group is a kw-only dataclass that owns the defaults of its options and checks them in
    `validate`, calling `super().validate(where)` first so that a config made of several groups
    checks all of them."""

    def validate(self, where: str = "") -> None:
        pass


@dataclass(kw_only=True)
class TrainConfig(OptionGroup):
    """Options every stage has (the training loop reads them). A stage config composes this with the
    option groups its stage uses and sets `iterations` and the other defaults that differ for it."""

    iterations: int  # no common default: every stage config sets its own
    batch_size: int = 8
    lr: float = 2e-6
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    warmup_iters: int = 500
    lr_schedule: str = "constant"  # after warm-up: constant (Uni-DAD) | cosine (decay to 0 at the last iteration)
    grad_clip: float = 10.0
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    grad_accum: int = 1
    checkpoint_every: int = 500
    keep_checkpoints: int = 0  # full resume states kept; 0 = the config's checkpoints.keep_full (snapshots stay)
    log_every: int = 25
    flip_augment: bool = True

    @classmethod
    def from_dict(cls, params: dict[str, Any] | None, where: str = "") -> "TrainConfig":
        params = dict(params or {})
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise StageConfigError(
                f"{where}unknown option(s) {unknown} for stage config {cls.__name__}; "
                f"known options: {', '.join(sorted(known))}"
            )
        missing = sorted(name for name, f in known.items() if name not in params and _no_default(f))
        if missing:
            raise StageConfigError(f"{where}stage config {cls.__name__} has no default for option(s) {missing}; "
                                   "give them in the config or declare defaults in the class")
        for name, value in params.items():
            params[name] = _coerce(cls.__name__, name, known[name], value, where)
        cfg = cls(**params)
        cfg.validate(where)
        return cfg

    def validate(self, where: str = "") -> None:
        super().validate(where)
        if self.iterations < 1:
            raise StageConfigError(f"{where}iterations must be >= 1, got {self.iterations}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise StageConfigError(f"{where}lr_schedule must be constant or cosine, got {self.lr_schedule!r}")
        if self.precision not in ("fp32", "bf16"):
            raise StageConfigError(f"{where}precision must be fp32 or bf16, got {self.precision!r}")
        if self.checkpoint_every < 1:
            raise StageConfigError(f"{where}checkpoint_every must be >= 1")
        if self.grad_accum < 1 or self.batch_size < 1:
            raise StageConfigError(f"{where}batch_size and grad_accum must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def checkpoint_steps(self) -> list[int]:
        """Steps at which checkpoints exist when training completes (always includes the last)."""
        steps = list(range(self.checkpoint_every, self.iterations + 1, self.checkpoint_every))
        if not steps or steps[-1] != self.iterations:
            steps.append(self.iterations)
        return steps


def _no_default(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _coerce(cls_name: str, name: str, f: dataclasses.Field, value: Any, where: str) -> Any:
    """`value` as the field's declared type (bool, int, float, str, `X | None`, list[X] or
    tuple[X, ...] of those). Strings (what `snakemake --config` hands over for nested values) are
    parsed into bool, int and float; anything else of the wrong type is refused in one line."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    kind = kind.replace(" ", "")
    try:
        return _coerce_to(kind, value)
    except (TypeError, ValueError):
        raise StageConfigError(f"{where}option '{name}' of {cls_name} must be {kind}, got {value!r}") from None


def _coerce_to(kind: str, value: Any) -> Any:
    """The helper of `_coerce`: TypeError/ValueError when `value` is not (and does not parse as) `kind`."""
    from unidad.config import parse_text

    inner = kind.removesuffix("|None").removeprefix("None|")
    if inner != kind:  # an optional option: None (YAML's null or ~ on the command line) stays None
        if value is None or (isinstance(value, str) and value.strip() in ("null", "Null", "NULL", "~")):
            return None
        return _coerce_to(inner, value)
    for container, suffix in (("list[", "]"), ("tuple[", ",...]")):
        if kind.startswith(container) and kind.endswith(suffix):
            if not isinstance(value, (list, tuple)):
                raise TypeError(value)
            items = [_coerce_to(kind[len(container):-len(suffix)], v) for v in value]
            return tuple(items) if container == "tuple[" else items
    if kind in ("bool", "int", "float") and isinstance(value, str):
        return parse_text(value, kind)
    if kind == "bool" and not isinstance(value, bool):
        raise TypeError(value)
    if kind == "int" and (not isinstance(value, int) or isinstance(value, bool)):
        raise TypeError(value)
    if kind == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(value)
        return float(value)
    if kind == "str" and not isinstance(value, str):
        raise TypeError(value)
    return value


@dataclass
class Update:
    """One optimiser's job: `loss(batch)` returns named terms including 'loss'; it trains the
    parameters of `modules` every `every` iterations, with learning rate `lr`."""

    name: str
    modules: list[str]
    loss: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
    every: int = 1
    lr: float | None = None  # None -> the stage config's lr
    after_step: Callable[[], None] | None = None  # e.g. an EMA update of the trained weights


@dataclass
class StageContext:
    """Everything a stage needs from outside: built by the runner from the resolved plan."""

    backbone_factory: Callable[[], nn.Module]
    # role -> path of a safetensors file with that role's weights (source teacher, prev stage ...)
    weights: dict[str, tuple[Path, str]]  # role -> (file, module name inside the file)
    # the stage's data (unidad.data.stream.TrainingImages): the loop streams batches of float NCHW in [-1, 1]
    real_images: Any | None
    device: torch.device
    seed: int
    # one caption per real image (text-conditioned backbones); batches carry them as batch["prompts"]
    prompts: list[str] | None = None


class Stage:
    """Base class. Subclasses set `config_cls`, implement `build` and `updates`."""

    config_cls: type[TrainConfig] = TrainConfig
    #: module whose weights are this stage's product (what a later stage's `prev` means)
    primary: str = "model"
    #: weights roles the stage reads (a method's stage entry says where each comes from)
    roles: tuple[str, ...] = ()

    def __init__(self, config: TrainConfig, ctx: StageContext):
        self.config = config
        self.ctx = ctx
        self.modules: dict[str, nn.Module] = {}
        self.frozen: set[str] = set()

    # -- to implement ---------------------------------------------------------------------------
    def build(self) -> None:
        raise NotImplementedError

    def updates(self) -> list[Update]:
        raise NotImplementedError

    @classmethod
    def sampling_of(cls, config: TrainConfig) -> dict[str, Any]:
        """How to sample the product: {"kind": "many_step", "sampler": "euler", "steps": 25} or
        {"kind": "few_step", "steps": K}."""
        raise NotImplementedError

    def sampling(self) -> dict[str, Any]:
        return self.sampling_of(self.config)

    # -- helpers for subclasses -----------------------------------------------------------------
    def new_backbone(self, role: str | None = None) -> nn.Module:
        """A fresh backbone, loaded from the weights the context gives for `role` (if any)."""
        from unidad.weights_file import read_weights

        model = self.ctx.backbone_factory()
        if role is not None:
            if role not in self.ctx.weights:
                raise StageConfigError(
                    f"stage {type(self).__name__} needs weights for '{role}' but the method gives "
                    f"{sorted(self.ctx.weights) or 'none'}"
                )
            path, module_name = self.ctx.weights[role]
            tensors = read_weights(path)
            if module_name not in tensors:
                raise StageConfigError(f"{path} has no module '{module_name}' (it has {sorted(tensors)})")
            model.load_state_dict(tensors[module_name], strict=True)
        return model.to(self.ctx.device)

    def add(self, name: str, module: nn.Module, frozen: bool = False) -> nn.Module:
        self.modules[name] = module.to(self.ctx.device)
        if frozen:
            self.frozen.add(name)
            module.requires_grad_(False)
            module.eval()
        return module

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {k: v for k, v in self.modules.items() if k not in self.frozen}

    def exported_modules(self) -> dict[str, nn.Module]:
        """What goes into a checkpoint's weights file: every trainable module."""
        return self.trainable_modules()

    @classmethod
    def product_module(cls, config: TrainConfig) -> str:
        """Name of the module (inside the checkpoint weights) that is this stage's product."""
        return cls.primary

    def describe(self) -> dict[str, Any]:
        return {
            "stage": type(self).__name__,
            "primary": self.product_module(self.config),
            "sampling": self.sampling(),
            "modules": {k: sum(p.numel() for p in m.parameters()) for k, m in self.modules.items()},
            "frozen": sorted(self.frozen),
        }


def register_stage(name: str):
    def deco(cls):
        cls.stage_id = name
        return STAGES.register(name)(cls)

    return deco
