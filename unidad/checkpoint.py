"""Training checkpoints: atomic on disk, exact to resume from.

Layout inside a run folder::

    checkpoints/step00001000/weights.safetensors   exported modules, keys "{module}.{param}"
                             state.pt              the training loop's state dict (optimisers, RNG, ...)
                             meta.json             step, stage, module names, sha256 of the weights
    snapshots/step00001000.safetensors             the product module only (what sampling and later
                                                   stages read, by key prefix), fp32 or bf16

Retention: the full resume state (every module + optimisers) is kept for the newest N checkpoints
only (`keep_last`); every checkpoint step keeps its product snapshot (about 1/10 of a Uni-DAD
checkpoint at ADM-256 scale), so evaluation never needs the full folders.

A checkpoint is built in a temporary folder next to its final place, every file is fsynced, and the
folder is renamed into place in one step. A crash at any point therefore leaves either the complete
`stepN` folder or none, plus at most a temporary folder, which the next save removes. One process
writes a run folder at a time (the training job that owns it).

Everything is loadable without pickled code: weights through safetensors (the weights file format
and its readers are in unidad.weights_file), state through `torch.load(weights_only=True)`;
`capture_rng_state` returns the RNG states in that form.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
import time
import warnings
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from unidad.atomic import TEMP_PREFIX
from unidad.weights_file import (
    WEIGHTS_FILE,
    CheckpointError,
    check_module_names,
    fsync_path,
    sha256_file,
    write_weights_file,
)

CHECKPOINTS_DIR = "checkpoints"
SNAPSHOTS_DIR = "snapshots"
SNAPSHOT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
STATE_FILE = "state.pt"
META_FILE = "meta.json"
FORMAT_VERSION = 1

_STEP_DIR = re.compile(r"^step(\d{8,})$")
_RESERVED_META_KEYS = ("format_version", "step", "modules", "weights_sha256", "created")


# ----------------------------------------------------------------------------------------------
# Files


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _remove_tree_quietly(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Training state


# Exact types: subclasses (numpy scalars are float subclasses, defaultdict, namedtuples) are
# pickled by class and refused by torch.load(weights_only=True).
_WEIGHTS_ONLY_SCALARS = (str, bytes, int, float, bool, complex, type(None), torch.Size, torch.dtype, torch.device)
_WEIGHTS_ONLY_MAPPINGS = (dict, OrderedDict)
_WEIGHTS_ONLY_SEQUENCES = (list, tuple, set)


def _check_weights_only_loadable(obj: Any, where: str = "state") -> None:
    """Fail at save time, not at resume time hours later, on objects that
    torch.load(weights_only=True) refuses (numpy arrays and scalars, custom classes...)."""
    kind = type(obj)
    if kind in _WEIGHTS_ONLY_MAPPINGS:
        for k, v in obj.items():
            _check_weights_only_loadable(k, f"{where} key {k!r}")
            _check_weights_only_loadable(v, f"{where}[{k!r}]")
    elif kind in _WEIGHTS_ONLY_SEQUENCES:
        for i, v in enumerate(obj):
            _check_weights_only_loadable(v, f"{where}[{i}]")
    elif kind not in _WEIGHTS_ONLY_SCALARS and not isinstance(obj, torch.Tensor):
        raise TypeError(
            f"{where} is a {kind.__module__}.{kind.__qualname__}, which torch.load(weights_only=True) "
            "cannot read back; convert it to tensors, numbers, strings, lists or dicts before saving"
        )


def load_state(ckpt_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(ckpt_dir) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {STATE_FILE} in {ckpt_dir}; pass a folder from list_checkpoints()")
    return torch.load(path, map_location=map_location, weights_only=True)


def read_meta(ckpt_dir: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(ckpt_dir) / META_FILE).read_text())


def verify_checkpoint(ckpt_dir: str | os.PathLike) -> None:
    """Raise CheckpointError when the weights file no longer has the hash recorded in meta.json."""
    ckpt_dir = Path(ckpt_dir)
    recorded = read_meta(ckpt_dir)["weights_sha256"]
    actual = sha256_file(ckpt_dir / WEIGHTS_FILE)
    if actual != recorded:
        raise CheckpointError(f"{ckpt_dir / WEIGHTS_FILE} is corrupt (sha256 {actual}, meta.json says {recorded})")


# ----------------------------------------------------------------------------------------------
# Checkpoint folders


def _checkpoints_root(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR


def step_dir_name(step: int) -> str:
    return f"step{step:08d}"


def checkpoint_weights_file(run_dir: str | os.PathLike, step: int) -> Path:
    """The product snapshot of checkpoint `step` of a run (what evaluation and later stages read)."""
    return Path(run_dir) / SNAPSHOTS_DIR / f"{step_dir_name(step)}.safetensors"


def save_snapshot(run_dir: str | os.PathLike, step: int, modules: Mapping[str, nn.Module],
                  dtype: str = "fp32") -> Path:
    """The product module(s) of checkpoint `step`, keys "{module}.{param}" as in a full checkpoint,
    floating tensors cast to `dtype` (fp32 | bf16; a bf16 snapshot is loaded back into fp32 modules);
    written atomically."""
    from unidad.atomic import atomic_path
    from unidad.weights_file import export_weights

    if dtype not in SNAPSHOT_DTYPES:
        raise ValueError(f"snapshot dtype must be one of {sorted(SNAPSHOT_DTYPES)}, got {dtype!r}")
    path = checkpoint_weights_file(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    if dtype == "fp32":
        return export_weights(path, modules, {"step": str(step), "snapshot_dtype": dtype})
    check_module_names(modules)
    import safetensors.torch

    flat = {f"{m}.{k}": (t.detach().to("cpu", SNAPSHOT_DTYPES[dtype]) if t.is_floating_point()
                         else t.detach().to("cpu")).contiguous().clone()
            for m, module in modules.items() for k, t in module.state_dict().items()}
    header = {"format": "pt", "modules": json.dumps(list(modules)), "step": str(step), "snapshot_dtype": dtype}
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(flat, str(tmp), metadata=header)
        fsync_path(tmp)
    fsync_path(path.parent)
    return path


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first. Temporary and incomplete folders (no meta.json)
    are not listed."""
    root = _checkpoints_root(run_dir)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _STEP_DIR.match(entry.name)
        if match and entry.is_dir() and (entry / META_FILE).is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1][1] if checkpoints else None


def _remove_stale_temp_dirs(root: Path) -> None:
    for entry in root.glob(f"{TEMP_PREFIX}*"):
        if entry.is_dir():
            _remove_tree_quietly(entry)
        else:
            entry.unlink(missing_ok=True)


def _retired_name(step_dir: Path) -> Path:
    return step_dir.with_name(f"{TEMP_PREFIX}retired-{step_dir.name}-{os.getpid()}-{time.monotonic_ns()}")


def _retire(step_dir: Path) -> None:
    """Delete a checkpoint folder so that a crash midway cannot leave a listed-but-broken one: first
    rename it to a temporary name (atomic), then delete."""
    trash = _retired_name(step_dir)
    os.replace(step_dir, trash)
    _remove_tree_quietly(trash)


def _move_into_place(building: Path, final: Path) -> None:
    """Rename the finished folder to its final name. A folder cannot be renamed over a non-empty one,
    so an existing checkpoint of the same step is moved aside first and put back if the rename fails."""
    if not final.exists():
        os.replace(building, final)
        return
    previous = _retired_name(final)
    os.replace(final, previous)
    try:
        os.replace(building, final)
    except BaseException:
        os.replace(previous, final)
        raise
    _remove_tree_quietly(previous)


def _checked_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    extra = dict(meta or {})
    clashes = [k for k in _RESERVED_META_KEYS if k in extra]
    if clashes:
        raise ValueError(f"meta may not set {', '.join(clashes)}; save_checkpoint fills these in itself")
    try:
        json.dumps(extra)
    except (TypeError, ValueError) as e:
        raise TypeError(f"checkpoint meta must be JSON-serialisable ({e}); pass plain numbers, strings, "
                        "lists, dicts") from None
    return extra


def _meta_record(step: int, modules: Mapping[str, nn.Module], weights_sha256: str, extra: dict[str, Any]) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "step": step,
        "stage": extra.get("stage"),
        "modules": list(modules),
        "weights_sha256": weights_sha256,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **{k: v for k, v in extra.items() if k != "stage"},
    }


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    modules: Mapping[str, nn.Module],
    state: Mapping[str, Any],
    meta: Mapping[str, Any] | None = None,
    keep_last: int | None = None,
) -> Path:
    """Write checkpoints/stepNNNNNNNN atomically and return its path.

    An existing checkpoint of the same step is replaced. keep_last=N then deletes all but the N
    newest checkpoints.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be >= 1 or None (keep all), got {keep_last}")
    check_module_names(modules)
    extra_meta = _checked_meta(meta)
    state = dict(state)
    _check_weights_only_loadable(state)

    root = _checkpoints_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_dirs(root)
    final = root / step_dir_name(step)
    building = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{final.name}-", dir=root))
    try:
        weights = building / WEIGHTS_FILE
        write_weights_file(weights, modules, {"step": str(step)})
        with open(building / STATE_FILE, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        # meta.json last: a folder without it is incomplete by definition
        _write_json(building / META_FILE, _meta_record(step, modules, sha256_file(weights), extra_meta))
        fsync_path(building)
        _move_into_place(building, final)
    except BaseException:
        _remove_tree_quietly(building)
        raise
    fsync_path(root)

    if keep_last is not None:
        for _, old in list_checkpoints(run_dir)[:-keep_last]:
            _retire(old)
    return final


# ----------------------------------------------------------------------------------------------
# RNG state


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states of python, numpy, torch (CPU and every CUDA device), as tensors, ints
    and lists only, so that state.pt loads with weights_only=True."""
    py_version, py_internal, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": py_version, "internal": list(py_internal), "gauss_next": py_gauss},
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch_cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["torch_cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(x) for x in py["internal"]), py["gauss_next"]))
    np_state = state["numpy"]
    np.random.set_state((
        np_state["kind"],
        np.asarray(torch.as_tensor(np_state["keys"]).numpy(), dtype=np.uint32),
        int(np_state["pos"]),
        int(np_state["has_gauss"]),
        float(np_state["cached_gaussian"]),
    ))
    torch.set_rng_state(torch.as_tensor(state["torch_cpu"], dtype=torch.uint8).cpu())
    cuda_states = state.get("torch_cuda")
    if not cuda_states:
        return
    if not torch.cuda.is_available():
        warnings.warn("checkpoint holds CUDA RNG states but CUDA is not available here; "
                      "GPU random draws will differ from the original run", stacklevel=2)
        return
    n_devices = torch.cuda.device_count()
    if n_devices != len(cuda_states):
        warnings.warn(f"checkpoint holds {len(cuda_states)} CUDA RNG states, this machine has {n_devices} "
                      "devices; restoring the first ones only", stacklevel=2)
    for device, rng in enumerate(cuda_states[:n_devices]):
        torch.cuda.set_rng_state(torch.as_tensor(rng, dtype=torch.uint8).cpu(), device)
