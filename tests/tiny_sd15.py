"""A random-weight miniature Stable Diffusion 1.5 for the tests (no downloads): the same diffusers and
transformers classes and block types as the real model, a few thousand parameters."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from unidad.backbones.sd15 import SD15Denoiser


def _tiny_clip_tokenizer(max_length: int):
    """A real CLIPTokenizer over a byte-level vocabulary with no merges (one token per character).

    Honest stand-in for SD's tokenizer: same class, same padding/truncation/special-token behaviour,
    only the vocabulary is tiny. It is read from vocab.json/merges.txt files, the construction path
    that works for both the slow (transformers 4) and the tokenizers-backed (5) CLIPTokenizer.
    """
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = ["<|startoftext|>", "<|endoftext|>"] + symbols + [s + "</w>" for s in symbols]
    vocab = {token: index for index, token in enumerate(tokens)}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vocab.json").write_text(json.dumps(vocab))
        (Path(folder) / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer.from_pretrained(folder, local_files_only=True, model_max_length=max_length)


def tiny_sd15(seed: int = 0, with_vae: bool = True, with_text: bool = True) -> SD15Denoiser:
    """Random-weight miniature SD1.5 (same classes, same block types): latents 4x8x8, images 3x64x64,
    text context (B, 16, 32). Leaves the global RNG untouched."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    text_length, text_width = 16, 32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=text_width,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        vae = None
        if with_vae:
            vae = AutoencoderKL(
                in_channels=3,
                out_channels=3,
                down_block_types=("DownEncoderBlock2D",) * 4,  # 3 downsamplers: 64 px -> 8 latent
                up_block_types=("UpDecoderBlock2D",) * 4,
                block_out_channels=(8, 8, 16, 16),
                layers_per_block=1,
                latent_channels=4,
                norm_num_groups=8,
                sample_size=64,
                scaling_factor=0.18215,
            )
        text_encoder = tokenizer = None
        if with_text:
            tokenizer = _tiny_clip_tokenizer(text_length)
            text_encoder = CLIPTextModel(
                CLIPTextConfig(
                    vocab_size=1000,
                    hidden_size=text_width,
                    intermediate_size=64,
                    num_hidden_layers=2,
                    num_attention_heads=4,
                    max_position_embeddings=text_length,
                    bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id,
                )
            )
    backbone = SD15Denoiser(unet, vae, text_encoder, tokenizer)
    return backbone.eval()
