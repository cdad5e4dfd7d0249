"""The weights file of a network the DAG trains for evaluation (the demo extractor, the SDP demo
embedding): one safetensors file, keys '<module>.' prefixed as unidad.weights_file reads them, and the
training summary as its single metadata entry, so the same settings give the same bytes (and sha256)."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def write_network(out_path: str | Path, model: torch.nn.Module, module: str, key: str, summary: dict) -> Path:
    """Atomic, byte-reproducible write: timings stay out of `summary`, and the header holds one metadata
    entry because safetensors writes several in an arbitrary order."""
    from safetensors.torch import save_file

    from unidad.atomic import atomic_path

    path = Path(out_path)
    tensors = {f"{module}.{name}": t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={key: json.dumps(summary)})
    return path


def read_network_summary(path: str | Path, key: str, fmt: str, what: str, fix: str) -> dict:
    """The training summary of a file `write_network` wrote under `key`, checked to be of format `fmt`;
    `what` names the network and `fix` how to make the file, in the errors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} weights not found at {path}; {fix}")
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    summary = json.loads(metadata[key]) if key in metadata else {}
    if summary.get("format") != fmt:
        raise ValueError(f"{path} is not a weights file of the {what} in format {fmt!r} (found "
                         f"{summary.get('format')!r}); {fix}")
    return summary
