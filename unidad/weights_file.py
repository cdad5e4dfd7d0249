"""Weights files: named torch modules in one safetensors file, keys "{module}.{param}".

The format of a checkpoint's weights.safetensors (unidad.checkpoint) and of every other exported
module: teachers, students, the demo CNN. Loadable without pickled code, written atomically.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import safetensors.torch
import torch
from torch import nn

from unidad.atomic import atomic_path

WEIGHTS_FILE = "weights.safetensors"  # its name inside a checkpoint folder

_MODULE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class CheckpointError(ValueError):
    """A checkpoint or weights file does not match what the caller asked for."""


@dataclass
class WeightsLoadReport:
    """What `load_weights(strict=False)` could not match (all empty after a strict load)."""

    absent_modules: list[str] = field(default_factory=list)
    missing_keys: dict[str, list[str]] = field(default_factory=dict)
    unexpected_keys: dict[str, list[str]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.absent_modules or self.missing_keys or self.unexpected_keys)


# ----------------------------------------------------------------------------------------------
# Files


def sha256_file(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
    """Flush a file or a folder entry to disk (a folder fsync makes renames inside it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------
# Writing


def check_module_names(modules: Mapping[str, nn.Module]) -> None:
    if not modules:
        raise ValueError("no modules given; pass a dict {name: nn.Module} with at least one entry")
    for name, module in modules.items():
        if not isinstance(name, str) or not _MODULE_NAME.match(name):
            raise ValueError(
                f"module name {name!r} is not allowed in a weights file; use letters, digits, '_' or '-' "
                "(no '.', which separates the module name from the parameter key)"
            )
        if not isinstance(module, nn.Module):
            raise TypeError(f"modules[{name!r}] is a {type(module).__name__}, expected a torch.nn.Module")


def _flat_tensors(modules: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """All state_dict tensors as CPU tensors that safetensors accepts: each contiguous and owning
    its memory (tied weights and views into bigger storages are copied, the rest are not)."""
    flat: dict[str, torch.Tensor] = {}
    seen_storages: set[tuple[str, int]] = set()
    for module_name, module in modules.items():
        for key, tensor in module.state_dict().items():
            t = tensor.detach().to("cpu").contiguous()
            storage = t.untyped_storage()
            storage_id = (str(storage.device), storage.data_ptr())
            owns_storage = storage.nbytes() == t.numel() * t.element_size()
            if storage_id in seen_storages or not owns_storage:
                t = t.clone()
                storage_id = (str(t.device), t.untyped_storage().data_ptr())
            seen_storages.add(storage_id)
            flat[f"{module_name}.{key}"] = t
    return flat


def write_weights_file(path: Path, modules: Mapping[str, nn.Module], metadata: Mapping[str, str] | None) -> None:
    """Write the modules to `path` in place and fsync it (export_weights is the atomic version)."""
    header = {"format": "pt", "modules": json.dumps(list(modules))}
    header.update({str(k): str(v) for k, v in (metadata or {}).items()})
    safetensors.torch.save_file(_flat_tensors(modules), str(path), metadata=header)
    fsync_path(path)


def export_weights(
    path: str | os.PathLike,
    modules: Mapping[str, nn.Module],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write the modules to one safetensors file, atomically (temp file in the same folder, fsync,
    rename). `metadata` goes into the safetensors header as strings."""
    check_module_names(modules)
    path = Path(path)
    with atomic_path(path) as tmp:
        write_weights_file(tmp, modules, metadata)
    fsync_path(path.parent)
    return path


# ----------------------------------------------------------------------------------------------
# Reading


def _weights_path(path_or_ckpt_dir: str | os.PathLike) -> Path:
    path = Path(path_or_ckpt_dir)
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}; pass a checkpoint folder or a .safetensors file")
    return path


def read_weights(path_or_ckpt_dir: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """The tensors of a weights file (or checkpoint folder), split by module name (CPU tensors)."""
    path = _weights_path(path_or_ckpt_dir)
    by_module: dict[str, dict[str, torch.Tensor]] = {}
    for full_key, tensor in safetensors.torch.load_file(str(path), device="cpu").items():
        module_name, sep, key = full_key.partition(".")
        if not sep:
            raise CheckpointError(f"{path}: key {full_key!r} has no '<module>.' prefix; not a unidad weights file")
        by_module.setdefault(module_name, {})[key] = tensor
    return by_module


def _first_few(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def load_weights(
    path_or_ckpt_dir: str | os.PathLike,
    modules: Mapping[str, nn.Module],
    strict: bool = True,
) -> WeightsLoadReport:
    """Copy weights from a file (or checkpoint folder) into `modules`, in place.

    strict: every requested module must be in the file with exactly its keys, else CheckpointError.
    With strict=False whatever matches is loaded and the rest is returned in the report. Modules in
    the file that were not requested are ignored either way (e.g. loading only the generator).
    """
    check_module_names(modules)
    path = _weights_path(path_or_ckpt_dir)
    stored = read_weights(path)
    report = WeightsLoadReport()
    for name, module in modules.items():
        if name not in stored:
            report.absent_modules.append(name)
            continue
        expected = set(module.state_dict())
        missing = sorted(expected - stored[name].keys())
        unexpected = sorted(stored[name].keys() - expected)
        if missing:
            report.missing_keys[name] = missing
        if unexpected:
            report.unexpected_keys[name] = unexpected
        if strict and (missing or unexpected):
            continue
        try:
            module.load_state_dict({k: v for k, v in stored[name].items() if k in expected}, strict=False)
        except RuntimeError as e:  # shape mismatch: never silently skipped
            first_line = str(e).strip().splitlines()[-1].strip()
            raise CheckpointError(f"{path}: module '{name}' does not fit the stored weights: {first_line}") from None
    if strict and not report.clean:
        problems = []
        if report.absent_modules:
            problems.append(
                f"modules not in the file: {', '.join(report.absent_modules)} (file has: {', '.join(sorted(stored))})"
            )
        for name, keys in report.missing_keys.items():
            problems.append(f"'{name}' lacks keys {_first_few(keys)}")
        for name, keys in report.unexpected_keys.items():
            problems.append(f"'{name}' has extra keys {_first_few(keys)}")
        raise CheckpointError(
            f"{path} does not match the modules: {'; '.join(problems)}; "
            "check the model config, or pass strict=False to load what matches"
        )
    return report
