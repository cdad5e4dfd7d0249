"""A miniature Stable Diffusion 1.5 built from config, offline: the text-conditioned demo's backbone.

Exactly the classes SD1.5 uses (diffusers UNet2DConditionModel and AutoencoderKL, transformers
CLIPTextModel and CLIPTokenizer), wrapped by the same adapter (unidad.backbones.sd15.SD15Denoiser), so
the demo exercises the code path of the real model. Nothing is downloaded: the tokenizer's vocabulary
and merges are written from a closed word list (`word_level_clip_tokenizer`), and the weights are
random until trained.

The text encoder stays frozen (as SD's does): random CLIP features still tell every word and word
order apart, which is all the UNet's cross-attention needs to learn captions. The VAE cannot stay
random (its decoder would not invert its encoder): `fit_tiny_vae` trains it on the demo images before
the diffusion model is pretrained in its latent space.
"""
from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from unidad.backbones.sd15 import SD15Denoiser, load_sd15

SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
_WORD = re.compile(r"^[a-z]+$")


# ---------------------------------------------------------------------------------------- tokenizer
def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's byte-pair encoding of one lower-case word (end-of-word marker on its last symbol)."""
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    while len(parts) > 1:
        pairs = [(ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        ranked = [(r, i) for r, i in pairs if r is not None]
        if not ranked:
            break
        best = min(ranked)[0]
        merged, i = [], 0
        while i < len(parts):
            if i + 1 < len(parts) and ranks.get((parts[i], parts[i + 1])) == best:
                merged.append(parts[i] + parts[i + 1])
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = merged
    return parts


def whole_word_merges(words: Iterable[str]) -> list[tuple[str, str]]:
    """BPE merges under which every word of `words` is one token.

    A merge is only ever appended (lowest priority), so a word that is already one token keeps its
    merge sequence: at each of its steps an older, higher-priority merge applied.
    """
    ranks: dict[tuple[str, str], int] = {}
    for word in sorted(set(words), key=lambda w: (len(w), w)):
        parts = _bpe(word, ranks)
        while len(parts) > 1:
            ranks[(parts[0], parts[1])] = len(ranks)
            parts = _bpe(word, ranks)
    return sorted(ranks, key=ranks.get)


def word_level_clip_tokenizer(words: Iterable[str], max_length: int):
    """A transformers CLIPTokenizer whose vocabulary holds every word of `words` as one token, plus
    all 256 byte symbols (a word outside the list is spelled in characters, never dropped)."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    words = sorted({w.lower() for w in words})
    bad = [w for w in words if not _WORD.match(w)]
    if bad:
        raise ValueError(f"vocabulary words must be lower-case letters only, got {bad[:5]}; split or drop them")
    merges = whole_word_merges(words)
    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = list(SPECIAL_TOKENS) + symbols + [s + "</w>" for s in symbols]
    tokens += [a + b for a, b in merges if a + b not in tokens]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vocab.json").write_text(json.dumps(vocab))
        (Path(folder) / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
        return CLIPTokenizer.from_pretrained(folder, local_files_only=True, model_max_length=int(max_length))


def default_vocabulary(token: str = "prt") -> list[str]:
    """The demo's captions and prompts, the DreamBench templates and class nouns, and the two usual
    unique tokens."""
    from unidad.data.dreambench import read_prompt_table
    from unidad.data.sdp_demo import demo_vocabulary

    table = read_prompt_table()
    words = set(demo_vocabulary(token)) | {"prt", "sks"}
    for text in [*table.object_templates, *table.live_templates, *table.classes.values()]:
        words.update(w for w in re.findall(r"[a-z]+", text.lower()))
    return sorted(words)


# ------------------------------------------------------------------------------------------ models
def build_tiny_sd(
    image_size: int = 32,
    vae_channels: Sequence[int] = (16, 32),
    vae_mid_attention: bool = False,
    latent_channels: int = 12,
    unet_channels: Sequence[int] = (32, 64),
    cross_attention: Sequence[bool] = (False, True),
    layers_per_block: int = 1,
    attention_head_dim: int = 8,
    text_width: int = 32,
    text_layers: int = 2,
    text_heads: int = 4,
    max_length: int = 16,
    vocabulary: Sequence[str] | None = None,
    token: str = "prt",
    seed: int = 0,
    vae_dir: str | None = None,
    **unused: Any,
) -> SD15Denoiser:
    """A random-weight miniature SD1.5 (the VAE from `vae_dir` when given, e.g. fit_tiny_vae's output).

    image_size: pixels; the VAE downsamples by 2**(len(vae_channels) - 1), the UNet works at that
    latent size. The VAE defaults (12 latent channels at /2, as many numbers as pixels, no mid
    attention) keep the demo subjects' 3-px patterns through the round trip at a CPU fit's budget
    (docs/demo_tuning.md, "SDP demo codec"). cross_attention: per UNet level, whether its blocks
    attend to the text (the mid block always does); the default leaves the full-resolution level
    without attention, which costs most on a CPU. Leaves the global RNG untouched.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    factor = 2 ** (len(vae_channels) - 1)
    if image_size % factor or (image_size // factor) % 2 ** (len(unet_channels) - 1):
        raise ValueError(f"image_size {image_size} does not divide into latents of the VAE (/{factor}) and the "
                         f"UNet's {len(unet_channels)} levels; use a multiple of {factor * 2 ** (len(unet_channels) - 1)}")
    if len(cross_attention) != len(unet_channels) or not any(cross_attention):
        raise ValueError(f"cross_attention needs one flag per UNet level ({len(unet_channels)}) and at least one "
                         f"True, got {list(cross_attention)}")
    groups = min(8, *vae_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        down = tuple("CrossAttnDownBlock2D" if attend else "DownBlock2D" for attend in cross_attention)
        up = tuple("CrossAttnUpBlock2D" if attend else "UpBlock2D" for attend in reversed(cross_attention))
        unet = UNet2DConditionModel(
            sample_size=image_size // factor,
            in_channels=latent_channels,
            out_channels=latent_channels,
            layers_per_block=layers_per_block,
            block_out_channels=tuple(unet_channels),
            down_block_types=down,
            up_block_types=up,
            cross_attention_dim=text_width,
            attention_head_dim=attention_head_dim,
            norm_num_groups=min(32, *unet_channels),
        )
        if vae_dir:
            vae = AutoencoderKL.from_pretrained(vae_dir, local_files_only=True)
        else:
            vae = AutoencoderKL(
                in_channels=3,
                out_channels=3,
                down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
                up_block_types=("UpDecoderBlock2D",) * len(vae_channels),
                block_out_channels=tuple(vae_channels),
                layers_per_block=1,
                latent_channels=latent_channels,
                norm_num_groups=groups,
                mid_block_add_attention=bool(vae_mid_attention),
                sample_size=image_size,
                scaling_factor=1.0,  # set from the data by fit_tiny_vae, as SD's 0.18215 was
            )
        tokenizer = word_level_clip_tokenizer(vocabulary or default_vocabulary(token), max_length)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=text_width,
            intermediate_size=2 * text_width,
            num_hidden_layers=text_layers,
            num_attention_heads=text_heads,
            max_position_embeddings=max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ))
    return SD15Denoiser(unet, vae, text_encoder, tokenizer).eval()


def tiny_sd_image_size(image_size: int = 32, **unused: Any) -> int:
    return int(image_size)


def load_tiny_sd(path: str | Path, **unused: Any) -> SD15Denoiser:
    """A trained miniature from its diffusers-format folder (unidad.backbones.sd15.save_sd15)."""
    return load_sd15(path)


# ------------------------------------------------------------------------------------ VAE fitting
def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, l1: float = 1.0, mse: float = 0.0,
                        edge: float = 0.0) -> torch.Tensor:
    """Weighted L1 + MSE of the pixels, plus the L1 of their horizontal and vertical differences
    (`edge`): a blurred band edge costs the pixel loss little, its difference loss a lot."""
    error = recon - target
    loss = l1 * error.abs().mean() + mse * error.square().mean()
    if edge:
        loss = loss + edge * (error.diff(dim=-1).abs().mean() + error.diff(dim=-2).abs().mean())
    return loss


def fit_tiny_vae(vae, images: np.ndarray, steps: int = 1000, batch_size: int = 8, lr: float = 2e-3,
                 kl_weight: float = 1e-6, posterior_noise: float = 0.0, seed: int = 0, ema_decay: float = 0.0,
                 l1_weight: float = 1.0, mse_weight: float = 1.0, edge_weight: float = 3.0,
                 zero_residuals: bool = True, log: Callable[[str], Any] | None = None) -> dict:
    """Train an AutoencoderKL in place to reconstruct `images` (uint8 [N,H,W,3]), then set its
    scaling_factor to 1/std of the latents (SD's recipe for 0.18215). Returns a JSON-ready summary
    with the held-out reconstruction error (mean absolute, in [0, 255] pixel units) and the fit's
    wall and CPU seconds.

    The defaults are the demo codec's measured recipe (docs/demo_tuning.md, "SDP demo codec"):
    - zero_residuals: the last conv of every residual block starts at zero, so each block starts as
      its shortcut and the fit starts from a short path through the codec (a common residual-network
      initialisation); it learns the subjects' bands sooner.
    - the loss (reconstruction_loss) adds MSE, which weighs the large errors of a blurred two-colour
      pattern more than L1, and the L1 of pixel differences (`edge_weight`), which a blurred band
      edge costs most: the edge term is what sharpens the 3-px checkerboard.
    - the learning rate follows one cycle (10% warm-up, cosine down to ~0); many small batches beat
      fewer large ones at equal time; posterior_noise scales the posterior's sampling noise in
      training (0: the adapter encodes with the posterior mean, and the small KL term keeps the
      latents tame).
    - ema_decay > 0 ends the fit with an exponential moving average of the weights (what is saved);
      measured no better than the last weights under the annealed rate, so off by default.
    """
    if steps < 1 or batch_size < 1 or len(images) < 2:
        raise ValueError(f"fit_tiny_vae needs steps, batch_size >= 1 and >= 2 images; got {steps}, {batch_size}, "
                         f"{len(images)} images")
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"fit_tiny_vae needs 0 <= ema_decay < 1 (0 = no average), got {ema_decay}")
    data = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    held = max(1, len(data) // 20)
    train, heldout = data[held:], data[:held]
    generator = torch.Generator().manual_seed(int(seed))
    if zero_residuals:
        from diffusers.models.resnet import ResnetBlock2D

        with torch.no_grad():
            for block in (m for m in vae.modules() if isinstance(m, ResnetBlock2D)):
                block.conv2.weight.zero_()
                block.conv2.bias.zero_()
    params = list(vae.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    average = [p.detach().clone() for p in params] if ema_decay else []
    vae.requires_grad_(True).train()
    started, cpu_started = time.perf_counter(), time.process_time()
    for step in range(steps):
        x = train[torch.randint(len(train), (batch_size,), generator=generator)]
        posterior = vae.encode(x).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=generator)
        z = posterior.mean + posterior_noise * posterior.std * noise
        recon = vae.decode(z).sample
        loss = reconstruction_loss(recon, x, l1_weight, mse_weight, edge_weight) + kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if average:
            with torch.no_grad():
                torch._foreach_lerp_(average, [p.detach() for p in params], 1.0 - ema_decay)
        if log and ((step + 1) % 100 == 0 or step + 1 == steps):
            log(f"vae step {step + 1}/{steps}: loss {loss.item():.4f}, {time.perf_counter() - started:.1f} s")
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    vae.requires_grad_(False).eval()
    with torch.no_grad():
        for p, a in zip(params, average):
            p.copy_(a)
        latents = torch.cat([vae.encode(train[i:i + 256]).latent_dist.mean for i in range(0, min(len(train), 2048), 256)])
        scaling = float(1.0 / latents.std())
        recon = vae.decode(vae.encode(heldout).latent_dist.mean).sample.clamp(-1, 1)
        error = float((recon - heldout).abs().mean() * 127.5)
    vae.register_to_config(scaling_factor=scaling)
    return {"steps": steps, "batch_size": batch_size, "lr": lr, "kl_weight": kl_weight,
            "posterior_noise": posterior_noise, "seed": seed, "ema_decay": ema_decay,
            "l1_weight": l1_weight, "mse_weight": mse_weight, "edge_weight": edge_weight,
            "zero_residuals": bool(zero_residuals),
            "scaling_factor": scaling, "heldout_mae_pixels": error, "heldout_images": held,
            "train_seconds": round(seconds, 2), "train_cpu_seconds": round(cpu_seconds, 2)}


__all__ = [
    "build_tiny_sd",
    "default_vocabulary",
    "fit_tiny_vae",
    "load_tiny_sd",
    "reconstruction_loss",
    "tiny_sd_image_size",
    "whole_word_merges",
    "word_level_clip_tokenizer",
]
