"""The rehearsal's inputs: stand-in weights and dataset folders, laid out as a user stages the real ones.

`prepare(DIR, config)` writes, for a rehearsal config (`rehearsal: true`):
  DIR/weights/  the files the config's jobs load through the weights manifest, under their manifest file
                names, with random values in the real architectures: the source model (the config's ADM
                UNet), Inception-v3 in torch-fidelity's layout, torchvision's VGG16 (the LPIPS trunk).
                They are stamped stand-ins (unidad.standins): `standins.json` beside them and their sha256
                in the user's registry. (LPIPS's linear layers ship inside the lpips package: real.)
  DIR/data/fsig/<dataset>/...  the folders the config's datasets name, as generated PNGs at the size
                a user stages them (256x256), which the jobs resize to the working resolution.
The SDP rehearsal's stand-ins (SD1.5 and DINO folders, the DMD2 UNet, CLIP) and DreamBench folders
come from unidad.rehearsal_sdp.
Nothing else in the project writes a stand-in.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

STAGED_SIZE = 256  # the resolution of the paper's staged folders
NOTE = ("STAND-IN weights for the rehearsal of the paper DAG: random values in the real architectures, "
        "written by `unidad rehearsal prepare` (ci/rehearsal/make_standins.py). Never a result.")


def _inception_state() -> dict[str, Any]:
    """A random Inception-v3 with the keys torch-fidelity's FeatureExtractorInceptionV3 loads."""
    import torch_fidelity.feature_extractor_inceptionv3 as fi

    class Random(fi.FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # keep the random init
            return None

    import torch

    real_download = fi.load_state_dict_from_url
    fi.load_state_dict_from_url = lambda *a, **k: {}  # the constructor would download the real weights
    try:
        net = Random("inception-v3-compat", ["2048"])
    finally:
        fi.load_state_dict_from_url = real_download
    # With random convolutions and unit BatchNorm statistics the activations shrink layer by layer to
    # ~1e-8 at pool3, so FID, KID and PRDC would all read 0 and no bug in them could show. Statistics
    # measured on random images (one batch, cumulative average) keep every layer at unit scale.
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    net.train()
    with torch.no_grad():
        net(torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8))
    for bn in bns:
        bn.momentum = 0.1
    return net.state_dict()


def _vgg16_state() -> dict[str, Any]:
    import torchvision

    return torchvision.models.vgg16(weights=None).state_dict()


def _adm_state(backbone: dict[str, Any]) -> dict[str, Any]:
    from unidad.backbones.adm import ADMUNet, resolve_adm_config

    if backbone["kind"] != "adm" or not isinstance(backbone.get("params", {}).get("config"), dict):
        raise ValueError("the rehearsal's source stand-in is an ADM UNet: set backbone.kind adm and "
                         "backbone.params.config (guided-diffusion flags at a reduced size)")
    unet = ADMUNet(**resolve_adm_config(backbone["params"]["config"]))
    # guided-diffusion zero-initialises its output convolution; a stand-in with some output everywhere
    # exercises the samplers and metrics better
    for p in unet.parameters():
        if not p.abs().sum():
            p.data.normal_(0.0, 0.02)
    return unet.state_dict()


def write_standin_weights(folder: str | os.PathLike, config: dict[str, Any], seed: int = 0) -> dict[str, dict]:
    """The stand-in weight files a rehearsal config loads, stamped; returns their records."""
    import torch

    from unidad.preflight import required_weights
    from unidad.rehearsal_sdp import WRITERS, exported_requirements
    from unidad.standins import record
    from unidad.weights import file_sha256, get_entry

    if not config.get("rehearsal"):
        raise ValueError("stand-in weights are written only for a rehearsal config (rehearsal: true); "
                         "use config/paper_fsig_rehearsal.yaml")
    makers: dict[str, Callable[[], dict]] = {
        "adm_ffhq256": lambda: _adm_state(config["backbone"]),
        "inception_v3_tf": _inception_state,
        "lpips_vgg16": _vgg16_state,
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for req in required_weights(config) + exported_requirements(config):
        if req.name is None or get_entry(req.name).kind == "package_file":
            continue  # a path the config names, or a file shipped in a pip package (real)
        if req.name not in makers and req.name not in WRITERS:
            raise ValueError(f"no stand-in maker for weights '{req.name}' (needed by {', '.join(req.needed_by)})")
        torch.manual_seed(seed)
        entry = get_entry(req.name)
        path = folder / entry.filename
        if req.name in WRITERS:  # folders and safetensors files, stamped inside (unidad.rehearsal_sdp)
            rec = WRITERS[req.name](path, config, NOTE, seed)
        else:
            tmp = path.with_name(f".{path.name}.tmp")
            torch.save(makers[req.name](), tmp)
            os.replace(tmp, path)
            rec = {}
        if path.is_file():
            rec = {"sha256": file_sha256(path), "size": path.stat().st_size, **rec}
        files[entry.filename] = {"name": req.name, **rec, "needed_by": list(req.needed_by)}
    record(folder, files, NOTE)
    return files


def _smooth_images(n: int, seed: int, palette_shift: float) -> np.ndarray:
    """n face-sized smooth random images (bilinear upsampled 8x8 noise), uint8 [n, 256, 256, 3]."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = np.empty((n, STAGED_SIZE, STAGED_SIZE, 3), dtype=np.uint8)
    for i in range(n):
        small = np.clip(rng.normal(128 + palette_shift, 50, (8, 8, 3)), 0, 255).astype(np.uint8)
        out[i] = np.asarray(Image.fromarray(small).resize((STAGED_SIZE, STAGED_SIZE), Image.BILINEAR))
    return out


def _write_pngs(images: np.ndarray, folder: Path) -> None:
    from PIL import Image

    from unidad.atomic import atomic_dir

    with atomic_dir(folder) as staging:
        for i, img in enumerate(images):
            Image.fromarray(img).save(staging / f"{i:05d}.png", compress_level=1)


def write_folders(config: dict[str, Any], counts: dict[str, int], seed: int = 0) -> dict[str, int]:
    """Every folder the config's datasets name (path, full_path, val_path), with generated 256x256 PNGs:
    `counts[<dataset>]` for a source set, `counts["shots"]` in a few-shot folder, `counts["full"]` in a
    full set. Returns images per folder."""
    from unidad.rehearsal_sdp import write_subject_folders

    written = write_subject_folders(config, seed)  # DreamBench subjects (datasets with a class noun)
    for i, (name, ds) in enumerate(sorted(config["datasets"].items())):
        if ds["kind"] != "folder" or ds.get("class_noun"):
            continue
        is_source = name == config["source"].get("dataset")
        for key in ("path", "full_path", "val_path"):
            if not ds.get(key):
                continue
            n = counts.get(name, 1000) if is_source else counts["shots" if key == "path" else "full"]
            images = _smooth_images(n, seed + 101 * i + len(key), palette_shift=0 if is_source else 20 * (i + 1))
            _write_pngs(images, Path(ds[key]))
            written[ds[key]] = n
    return written


def prepare(config: dict[str, Any], weights_dir: str | os.PathLike, counts: dict[str, int] | None = None,
            seed: int = 0) -> dict[str, Any]:
    """Stand-in weights into `weights_dir` and the config's dataset folders (paths as the config names them)."""
    counts = {"ffhq": 1000, "shots": 10, "full": 100, **(counts or {})}
    weights = write_standin_weights(weights_dir, config, seed)
    folders = write_folders(config, counts, seed)
    return {"weights": weights, "folders": folders}
