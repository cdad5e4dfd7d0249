"""Training of the SDP demo's text-image embedding (unidad.metrics.demo_sdp_embed), inside the DAG.

Two contrastive losses on one image trunk, from images rendered here (never a demo subject, its shots
or its renders: the embedding stands for DINO and CLIP, which never saw the subject):

* text-image (CLIP's loss) on the captioned source scenes (unidad.data.scenes.sample_source), with
  every caption that describes an image as its positive (a caption may leave out the colour or the
  context, so several captions of a batch describe one image);
* subject (SimCLR's loss, the self-supervised DINO stand-in) on two views of one object: the same
  shape, pattern and colours (random, solid or in a two-colour pattern, as the VAE's codec scenes),
  in two random contexts, positions, sizes and pattern phases. Half the objects have a sibling with
  the same colours but another pattern or shape among the negatives, so colour alone cannot match.

Both kinds of image get the generated images' imperfections (unidad.metrics.demo_cnn._augment).
"""
from __future__ import annotations

import time
import zlib
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from unidad.data import scenes
from unidad.data.pixels import SHAPE_KINDS
from unidad.metrics.demo_cnn import _augment, _derived_seed, _unit_nchw, check_positive_int
from unidad.metrics.demo_sdp_embed import (EMBED_ID, FORMAT, SdpEmbedConfig, SdpEmbedNet, architecture,
                                           caption_vocabulary, write_embedding)
from unidad.weights import file_sha256

_TRAIN_TAG, _HELDOUT_TAG = 1, 2
_CHUNK_STEPS = 20  # batches rendered at once
SSL_TEMPERATURE = 0.1
FILL_KINDS = scenes.PATTERNS + ("solid",)


# ------------------------------------------------------------------------------------- training data
def object_views(n: int, seed: int, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Two views (uint8 [n,S,S,3] each) of n objects, row i of both the same object; the last n // 2
    objects are siblings of the first (same colours, another pattern or shape)."""
    s = scenes.check_scene_size(image_size)
    rng = np.random.default_rng(np.random.SeedSequence([zlib.crc32(b"sdp-embed-objects"), int(seed)]))
    kinds, fills = rng.integers(0, len(SHAPE_KINDS), n), rng.integers(0, len(FILL_KINDS), n)
    colours = rng.random((n, 2, 3)).astype(np.float32)
    apart = np.linalg.norm(colours[:, 0] - colours[:, 1], axis=-1) < 0.4  # a pattern must be visible
    colours[apart, 1] = 1.0 - colours[apart, 0]
    widths = 2.0 + 3.0 * rng.random(n)
    half = n // 2
    sibling = slice(n - half, n)
    colours[sibling], widths[sibling] = colours[:half], widths[:half]
    change_kind = rng.random(half) < 0.5
    shift = rng.integers(1, 3, half)
    kinds[sibling] = np.where(change_kind, (kinds[:half] + shift) % len(SHAPE_KINDS), kinds[:half])
    fills[sibling] = np.where(change_kind, fills[:half], (fills[:half] + shift) % len(FILL_KINDS))
    solid = fills == len(FILL_KINDS) - 1
    colours[solid, 1] = colours[solid, 0]
    views = []
    for purpose in ("sdp-embed-view-a", "sdp-embed-view-b"):
        u = scenes.scene_uniforms(n, seed, purpose)
        ctx = scenes.pick(u[:, 0], len(scenes.CONTEXTS))
        jitter = scenes.COLOUR_JITTER * (2 * u[:, 16:19] - 1).astype(np.float32)
        labels = np.zeros((n, s, s), np.int64)
        for p, pattern in enumerate(scenes.PATTERNS):
            rows = np.flatnonzero(fills == p)
            if len(rows):
                labels[rows] = scenes.pattern_labels(pattern, u[rows], s, widths[rows])
        fill = np.where(labels[..., None] == 0, colours[:, None, None, 0], colours[:, None, None, 1]) + jitter[:, None, None]
        views.append(scenes.compose(scenes.render_background(ctx, u, s), scenes.object_coverage(kinds, u, s), fill))
    return views[0], views[1]


def caption_factors(captions: list[str], factors: dict[str, np.ndarray]) -> np.ndarray:
    """[N,3] (kind, colour, context) each caption names; -1 where it leaves the factor out."""
    named_colour = np.array([any(w in scenes.SOURCE_COLOURS for w in cap.split())
                             for cap in captions])
    named_context = np.array([scenes.context_of_prompt(cap) >= 0 for cap in captions])
    return np.stack([factors["kind"], np.where(named_colour, factors["colour"], -1),
                     np.where(named_context, factors["context"], -1)], 1)


def compatible(image_factors: np.ndarray, text_factors: np.ndarray) -> torch.Tensor:
    """bool [images, texts]: the text describes the image (every factor it names matches)."""
    i, t = image_factors[:, None, :], text_factors[None, :, :]
    return torch.from_numpy(((t < 0) | (i == t)).all(-1))


# ------------------------------------------------------------------------------------------- losses
def clip_loss(image: torch.Tensor, text: torch.Tensor, positives: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross-entropy, every describing caption a positive (targets spread evenly)."""
    logits = logit_scale.clamp(max=4.6052).exp() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    target = positives.float()
    to_text = -(F.log_softmax(logits, 1) * target / target.sum(1, keepdim=True)).sum(1).mean()
    to_image = -(F.log_softmax(logits, 0) * target / target.sum(0, keepdim=True)).sum(0).mean()
    return (to_text + to_image) / 2


def view_loss(a: torch.Tensor, b: torch.Tensor, temperature: float = SSL_TEMPERATURE) -> torch.Tensor:
    """SimCLR's NT-Xent: each view's positive is the other view of its object, all others negatives."""
    z = F.normalize(torch.cat([a, b]), dim=-1)
    sim = (z @ z.T) / temperature
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
    n = len(a)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


def _model_input(u8: np.ndarray, generator: torch.Generator | None) -> torch.Tensor:
    x = _unit_nchw(u8)
    if generator is not None:
        x = _augment(x, generator)
    return x * 2 - 1


# ------------------------------------------------------------------------------------------ held out
@torch.no_grad()
def heldout_report(model: SdpEmbedNet, seed: int, image_size: int, n: int = 400) -> dict[str, float]:
    """Fresh, un-augmented images: zero-shot accuracy of picking the full caption (shape, colour, context)
    among all of them, and of each factor; top-1 retrieval of an object's other view among n."""
    images, _, factors = scenes.sample_source(n, _derived_seed(seed, _HELDOUT_TAG), image_size)
    names = list(scenes.SOURCE_COLOURS)
    combos = [(k, c, x) for k in range(len(SHAPE_KINDS)) for c in range(len(names)) for x in range(len(scenes.CONTEXTS))]
    texts = [scenes.caption(names[c], SHAPE_KINDS[k], scenes.CONTEXT_NAMES[x]) for k, c, x in combos]
    img = F.normalize(model.embed_images(_model_input(images, None))[1], dim=-1)
    txt = F.normalize(model.embed_texts(texts), dim=-1)
    picked = np.array(combos)[(img @ txt.T).argmax(1).numpy()]
    truth = np.stack([factors["kind"], factors["colour"], factors["context"]], 1)
    report = {"caption_top1": float((picked == truth).all(1).mean())}
    report |= {f"{name}_top1": float((picked[:, i] == truth[:, i]).mean()) for i, name in enumerate(("shape", "colour", "context"))}
    a, b = object_views(n, _derived_seed(seed, _HELDOUT_TAG, 1), image_size)
    za = F.normalize(model.embed_images(_model_input(a, None))[0], dim=-1)
    zb = F.normalize(model.embed_images(_model_input(b, None))[0], dim=-1)
    report["view_top1"] = float(((za @ zb.T).argmax(1) == torch.arange(n)).float().mean())
    return report


# ------------------------------------------------------------------------------------------ training
def train_sdp_embedding(out_path, image_size: int = 32, iterations: int = 300, batch_size: int = 64,
                        lr: float = 3e-3, seed: int = 0, widths=(16, 32, 64), dim: int = 64,
                        log: Callable[[str], Any] | None = print, threads: int | None = 1) -> dict:
    """Train the embedding on freshly rendered images and write it to `out_path` (safetensors, atomic,
    the same bytes for the same settings and thread count). Each step: `batch_size` captioned scenes
    and `batch_size` objects, two views each. Returns the summary stored in the file, plus the training
    time, path and sha256."""
    iterations, batch_size = check_positive_int(iterations, "iterations"), check_positive_int(batch_size, "batch_size")
    if batch_size < 4:
        raise ValueError(f"batch_size must be >= 4 (contrastive losses need negatives), got {batch_size}")
    scenes.check_scene_size(image_size)
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(check_positive_int(threads, "threads"))
    try:
        return _train(out_path, image_size, iterations, batch_size, float(lr), int(seed),
                      tuple(int(w) for w in widths), int(dim), log or (lambda _m: None))
    finally:
        torch.set_num_threads(previous)


def _train(out_path, image_size, iterations, batch_size, lr, seed, widths, dim, log) -> dict:
    config = SdpEmbedConfig(vocabulary=tuple(caption_vocabulary()), widths=widths, dim=dim)
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's RNG
        torch.manual_seed(_derived_seed(seed, 0))
        model = SdpEmbedNet(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=iterations, pct_start=0.1)
    generator = torch.Generator().manual_seed(_derived_seed(seed, _TRAIN_TAG))
    started, cpu_started = time.perf_counter(), time.process_time()
    model.train()
    running = {"text_image": 0.0, "subject": 0.0}
    for chunk_start in range(0, iterations, _CHUNK_STEPS):
        steps = min(_CHUNK_STEPS, iterations - chunk_start)
        chunk_seed = _derived_seed(seed, _TRAIN_TAG, chunk_start)
        images, captions, factors = scenes.sample_source(steps * batch_size, chunk_seed, image_size)
        images = _model_input(images, generator)
        text_factors = caption_factors(captions, factors)
        image_factors = np.stack([factors["kind"], factors["colour"], factors["context"]], 1)
        for step in range(steps):
            rows = slice(step * batch_size, (step + 1) * batch_size)
            a, b = object_views(batch_size, _derived_seed(seed, _TRAIN_TAG, chunk_start + step, 1), image_size)
            views = torch.cat([_model_input(a, generator), _model_input(b, generator)])
            subject, _ = model.embed_images(views)
            _, image = model.embed_images(images[rows])
            text = model.embed_texts(captions[rows])
            terms = {"text_image": clip_loss(image, text, compatible(image_factors[rows], text_factors[rows]),
                                             model.logit_scale),
                     "subject": view_loss(subject[:batch_size], subject[batch_size:])}
            optimizer.zero_grad(set_to_none=True)
            sum(terms.values()).backward()
            optimizer.step()
            schedule.step()
            for k, v in terms.items():
                running[k] += float(v.detach()) / steps
        done = chunk_start + steps
        log(f"demo SDP embedding step {done}/{iterations}: " + ", ".join(f"{k} loss {v:.3f}" for k, v in running.items())
            + f", {time.perf_counter() - started:.1f} s")
        running = dict.fromkeys(running, 0.0)
    train_seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    model.eval()
    report = heldout_report(model, seed, image_size)
    summary = {"format": FORMAT, "id": EMBED_ID, "architecture": architecture(config), "image_size": image_size,
               "heldout": report, "iterations": iterations, "batch_size": batch_size, "lr": lr, "seed": seed,
               "threads": torch.get_num_threads()}  # thread count can change float round-off: recorded
    path = write_embedding(out_path, model, summary)
    log(f"demo SDP embedding trained in {train_seconds:.1f} s ({cpu_seconds:.1f} s CPU); held-out "
        + ", ".join(f"{k} {v:.3f}" for k, v in report.items()) + f"; wrote {path}")
    return {**summary, "train_seconds": round(train_seconds, 2), "train_cpu_seconds": round(cpu_seconds, 2),
            "path": str(path), "weights_sha256": file_sha256(path)}
