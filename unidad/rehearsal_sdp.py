"""The subject-driven personalization (SDP) part of the rehearsal's inputs (unidad.rehearsal.prepare).

Stand-ins for the manifest entries config/paper_sdp.yaml loads, at SD1.5's classes and key layout:
  sd15             a diffusers folder (model_index.json, scheduler, unet, vae, text_encoder, tokenizer)
                   of SD1.5's classes and block types at a reduced width and resolution, its tokenizer a
                   CLIPTokenizer built offline over DreamBench's words (unidad.backbones.tiny_sd)
  dmd2_sd15_1step  a UNet state dict of that same UNet (other random values), as DMD2's pytorch_model.bin;
                   the workflow's export_sd15_unet job turns it into weights/dmd2_sd15_1step.safetensors
  dino_vits16      transformers' ViTModel at DINO ViT-S/16's real architecture (the metric checks it)
  clip_vit_b32_openai  open_clip's ViT-B-32-quickgelu at its real architecture (loaded strictly)
Folders are stamped by their own `standins.json` and every safetensors file by its header
(unidad.standins.HEADER_KEY), so the loaders refuse them outside a rehearsal config without hashing.

DreamBench subjects are written as a user stages google/dreambooth's dataset/: `<root>/<subject>/NN.jpg`
(512x512 JPGs) beside upstream's prompts_and_classes.txt.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

STAGED_SUBJECT_SIZE = 512  # DreamBench's photos, as staged
SUBJECT_IMAGES = (6, 5)  # images per subject, cycled over the config's subjects (upstream has 4-6)

# SD1.5's configuration (stable-diffusion-v1-5 unet/vae/text_encoder config.json) with the widths
# reduced: same classes, block types, layer counts and key layout, so every adapter path is the real one
_UNET_CHANNELS = (32, 32, 64, 64)  # SD1.5: 320, 640, 1280, 1280
_VAE_CHANNELS = (8, 8, 16, 16)  # SD1.5: 128, 256, 512, 512 (4 levels: latents at 1/8 of the pixels)
_TEXT_WIDTH = 32  # SD1.5 (CLIP ViT-L/14 text tower): 768
_MAX_LENGTH = 77
_SCHEDULER = {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
              "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
              "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "clip_sample": False}
_MODEL_INDEX = {"_class_name": "StableDiffusionPipeline", "scheduler": ["diffusers", "PNDMScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
                "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
_TOKENIZER_FILES = ("merges.txt", "special_tokens_map.json", "tokenizer_config.json", "vocab.json")


def _sd15_unet(image_size: int, seed: int):
    import torch
    from diffusers import UNet2DConditionModel

    if image_size % (8 * 2 ** (len(_UNET_CHANNELS) - 1)):
        raise ValueError(f"backbone.params.image_size {image_size}: the stand-in SD1.5 needs a multiple of 64 "
                         "(latents at 1/8, three UNet downsamplers)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=image_size // 8, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=_UNET_CHANNELS,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=_TEXT_WIDTH, attention_head_dim=8, norm_num_groups=32,
        )
        # diffusers zero-initialises nothing SD1.5 relies on here, but random attention outputs keep
        # every path's gradients alive in a 2-iteration run
    return unet


def _image_size(config: dict[str, Any]) -> int:
    if config["backbone"]["kind"] != "sd15":
        raise ValueError("the rehearsal's SD1.5 stand-ins need backbone.kind sd15")
    return int((config["backbone"].get("params") or {}).get("image_size", 512))


def _safetensors_marked(folder: Path) -> None:
    """Rewrite every safetensors file under `folder` with the stand-in mark in its header."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from unidad.standins import HEADER_KEY

    for file in sorted(folder.rglob("*.safetensors")):
        with safe_open(str(file), "pt") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
            metadata = dict(fh.metadata() or {})
        save_file(tensors, str(file), metadata={**metadata, HEADER_KEY: "true"})


def _folder_record(folder: Path, note: str) -> dict[str, Any]:
    """Stamp a stand-in folder (its own standins.json) and return its record: the sha256 of each weight
    file (known by checksum anywhere) and one digest of them all."""
    import hashlib

    from unidad.atomic import write_json_atomic
    from unidad.weights import file_sha256

    _safetensors_marked(folder)
    hashes = {str(f.relative_to(folder)): file_sha256(f) for f in sorted(folder.rglob("*"))
              if f.is_file() and f.suffix in (".safetensors", ".bin")}
    digest = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    write_json_atomic(folder / "standins.json", {"standin": True, "note": note, "file_sha256": hashes})
    return {"sha256": digest, "file_sha256": hashes, "size": size, "kind": "folder"}


def _fresh(path: Path) -> Path:
    """An empty staging folder beside `path` (renamed onto it when complete)."""
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _publish(tmp: Path, path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def write_sd15(path: Path, config: dict[str, Any], note: str, seed: int = 0) -> dict[str, Any]:
    """The SD1.5 stand-in folder, in the layout `unidad weights fetch sd15` stages."""
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    from unidad.backbones.tiny_sd import default_vocabulary, word_level_clip_tokenizer

    size = _image_size(config)
    tmp = _fresh(path)
    _sd15_unet(size, seed).save_pretrained(tmp / "unet")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                      up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=_VAE_CHANNELS,
                      layers_per_block=2, latent_channels=4, norm_num_groups=8, sample_size=size,
                      scaling_factor=0.18215).save_pretrained(tmp / "vae")
        tokenizer = word_level_clip_tokenizer(default_vocabulary(config.get("unique_token", "prt")), _MAX_LENGTH)
        CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=_TEXT_WIDTH, intermediate_size=4 * _TEXT_WIDTH,
            num_hidden_layers=12, num_attention_heads=4, max_position_embeddings=_MAX_LENGTH,
            hidden_act="quick_gelu", bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )).save_pretrained(tmp / "text_encoder")
    tokenizer.save_pretrained(tmp / "tokenizer")
    for name in _TOKENIZER_FILES:  # newer transformers fold the special tokens into tokenizer_config.json
        file = tmp / "tokenizer" / name
        if not file.exists():
            file.write_text(json.dumps({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                                        "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}))
    (tmp / "scheduler").mkdir()
    (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(_SCHEDULER, indent=2))
    (tmp / "model_index.json").write_text(json.dumps(_MODEL_INDEX, indent=2))
    record = _folder_record(tmp, note)
    _publish(tmp, path)
    return record


def write_dmd2_unet(path: Path, config: dict[str, Any], note: str, seed: int = 0) -> dict[str, Any]:
    """The one-step DMD2 student's UNet state dict (a torch file, as DMD2's pytorch_model.bin), fitting
    the SD1.5 stand-in; known by checksum (the caller records its sha256)."""
    import torch

    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(_sd15_unet(_image_size(config), seed + 7).state_dict(), tmp)
    os.replace(tmp, path)
    return {}


def write_dino(path: Path, config: dict[str, Any], note: str, seed: int = 0) -> dict[str, Any]:
    """DINO ViT-S/16 (facebook/dino-vits16's config) with random values, as a transformers folder."""
    import torch
    from transformers import ViTConfig, ViTModel

    from unidad.metrics.dino import VITS16

    tmp = _fresh(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 2)
        ViTModel(ViTConfig(**VITS16, qkv_bias=True), add_pooling_layer=False).save_pretrained(tmp)
    record = _folder_record(tmp, note)
    _publish(tmp, path)
    return record


def write_clip(path: Path, config: dict[str, Any], note: str, seed: int = 0) -> dict[str, Any]:
    """OpenAI CLIP ViT-B/32's architecture (open_clip ViT-B-32-quickgelu) with random values, as the
    manifest's safetensors file, marked in its header."""
    import logging

    import open_clip
    import torch
    from safetensors.torch import save_file

    from unidad.metrics.clip_model import ARCH
    from unidad.standins import HEADER_KEY

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # "initialized randomly": intended here
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 3)
            state = open_clip.create_model(ARCH, pretrained=None).state_dict()
    finally:
        logging.disable(previous)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={HEADER_KEY: "true"})
    os.replace(tmp, path)
    return {}


#: manifest entry -> writer(path, config, note, seed) of its stand-in (a folder or a file); returns
#: record fields beyond name and sha256 (a folder's own sha256 and those of its files)
WRITERS: dict[str, Callable[..., dict[str, Any]]] = {
    "sd15": write_sd15,
    "dmd2_sd15_1step": write_dmd2_unet,
    "dino_vits16": write_dino,
    "clip_vit_b32_openai": write_clip,
}


def exported_requirements(config: dict[str, Any]) -> list:
    """The manifest UNets behind the config's `weights/<name>.safetensors` roles that the workflow
    exports (rule export_sd15_unet), which the pre-flight list names only as paths."""
    from unidad.jobs.teachers import sd15_unets
    from unidad.preflight import RequiredWeights, required_weights

    out = []
    for req in required_weights(config):
        name = Path(req.path or "").name.removesuffix(".safetensors")
        if req.name is None and Path(req.path).parent == Path("weights") and name in sd15_unets():
            out.append(RequiredWeights(name, None, (f"rule export_sd15_unet -> {req.path}", *req.needed_by)))
    return out


def _subject_images(n: int, seed: int, shift: float) -> np.ndarray:
    """n 512x512 photos of one 'subject': the same smooth random object, shifted and lit differently."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = np.clip(rng.normal(128 + shift, 60, (8, 8, 3)), 0, 255)
    out = np.empty((n, STAGED_SUBJECT_SIZE, STAGED_SUBJECT_SIZE, 3), dtype=np.uint8)
    for i in range(n):
        small = np.clip(np.roll(base, i, axis=1) + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        out[i] = np.asarray(Image.fromarray(small).resize((STAGED_SUBJECT_SIZE,) * 2, Image.BILINEAR))
    return out


def write_subject_folders(config: dict[str, Any], seed: int = 0) -> dict[str, int]:
    """Every DreamBench subject folder the config's datasets name (datasets with a class noun), with
    upstream's prompts_and_classes.txt in each dataset root. Returns JPGs per folder."""
    from PIL import Image

    from unidad.atomic import atomic_dir
    from unidad.data.dreambench import PACKAGED_PROMPTS, PROMPTS_FILE

    written = {}
    subjects = sorted(n for n, ds in config["datasets"].items() if ds["kind"] == "folder" and ds.get("class_noun"))
    for i, name in enumerate(subjects):
        folder = Path(config["datasets"][name]["path"])
        n = SUBJECT_IMAGES[i % len(SUBJECT_IMAGES)]
        with atomic_dir(folder) as staging:
            for j, img in enumerate(_subject_images(n, seed + 31 * i, shift=25 * i)):
                Image.fromarray(img).save(staging / f"{j:02d}.jpg", quality=90)
        shutil.copyfile(PACKAGED_PROMPTS, folder.parent / PROMPTS_FILE)
        written[str(folder)] = n
    return written


def clear_exports(config: dict[str, Any]) -> list[str]:
    """Remove the stand-in exports of earlier rehearsals at the config's `weights/<unet>.safetensors`
    paths (the workflow writes them into the working tree, where a real run would find them; the
    header mark makes any other config refuse them, this removes them). A real file there is left alone
    and stops the rehearsal, which would otherwise load it. Returns the removed paths."""
    from unidad.standins import stamp_of

    removed = []
    for req in exported_requirements(config):
        path = Path("weights") / f"{req.name}.safetensors"
        if not path.exists():
            continue
        if stamp_of(path) is None:
            raise ValueError(f"{path} is a real export (no stand-in mark) and the rehearsal would load it into "
                             "the stand-in SD1.5; move it aside while the rehearsal runs")
        path.unlink()
        removed.append(str(path))
    return removed
