"""The demo CNN: a small classifier of the demo domains' (domain, mode) pairs, trained here, and its file.

No published network knows the procedural demo domains, so the demo's metrics use a small CNN
trained here, inside the workflow, in well under a minute on a CPU. It classifies every
(domain, mode) pair of the registered domains plus one "garbage" class (noise, blends of two
images, heavy blur, heavy noise), so its features also move away from the data for images that
belong to no domain.

This module holds the network, the images it is trained on, `train_demo_extractor` and the weights
file it writes; unidad.metrics.demo_extractor turns a trained file into the demo's feature extractor
and perceptual distance.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unidad.data.domains import DOMAINS, get_domain
from unidad.metrics.network_file import read_network_summary, write_network
from unidad.weights import file_sha256
from unidad.weights_file import load_weights

EXTRACTOR_ID = "demo-cnn-v1"
GARBAGE_CLASS = "garbage"
_MODULE_NAME = "demo_cnn"  # the module name inside the weights file
_FORMAT = "unidad-demo-cnn/1"


# ------------------------------------------------------------------------------------------- network
@dataclass(frozen=True)
class DemoCNNConfig:
    n_classes: int
    widths: tuple[int, ...] = (16, 32, 64)
    feature_dim: int = 128
    pooled_size: int = 4  # adaptive pooling grid before the feature layer: any input size works


def conv_trunk(widths) -> tuple[nn.ModuleList, int]:
    """The demo networks' trunk: 3x3 convolutions of these widths, all but the first stride 2; and its
    output channels."""
    convs, in_channels = [], 3
    for i, width in enumerate(widths):
        convs.append(nn.Conv2d(in_channels, width, 3, stride=1 if i == 0 else 2, padding=1))
        in_channels = width
    return nn.ModuleList(convs), in_channels


class DemoCNN(nn.Module):
    """Three 3x3 conv layers (the last two stride 2), adaptive average pooling, a feature layer, a classifier."""

    def __init__(self, config: DemoCNNConfig):
        super().__init__()
        self.config = config
        self.convs, in_channels = conv_trunk(config.widths)
        self.feature = nn.Linear(in_channels * config.pooled_size**2, config.feature_dim)
        self.classifier = nn.Linear(config.feature_dim, config.n_classes)

    def conv_activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Post-ReLU activations of every conv layer; x float NCHW in [-1, 1]."""
        taps = []
        for conv in self.convs:
            x = F.relu(conv(x))
            taps.append(x)
        return taps

    def features_from_last(self, last: torch.Tensor) -> torch.Tensor:
        if last.shape[-2:] != (self.config.pooled_size, self.config.pooled_size):  # identity at the training size
            last = F.adaptive_avg_pool2d(last, self.config.pooled_size)
        return self.feature(last.flatten(1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer before its ReLU: denser and closer to Gaussian than after it."""
        return self.features_from_last(self.conv_activations(x)[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.relu(self.features(x)))


# ------------------------------------------------------------------------------------- training data
def class_names() -> list[str]:
    """'<domain>/<mode>' for every registered domain (sorted by name), then the garbage class."""
    return [f"{name}/{mode}" for name in DOMAINS.names() for mode in get_domain(name).modes] + [GARBAGE_CLASS]


def _derived_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _unit_nchw(u8_nhwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(u8_nhwc)).permute(0, 3, 1, 2).float() / 255.0


def _domain_batch(n: int, seed: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """About n in-domain images with uniform class frequencies: float NCHW [0, 1] and labels."""
    names = DOMAINS.names()
    n_modes = [len(get_domain(name).modes) for name in names]
    images, labels, offset = [], [], 0
    for index, (name, count) in enumerate(zip(names, n_modes)):
        share = max(1, round(n * count / sum(n_modes)))
        u8, modes = get_domain(name).sample(share, seed=_derived_seed(seed, index), image_size=image_size)
        images.append(_unit_nchw(u8))
        labels.append(torch.from_numpy(modes + offset))
        offset += count
    return torch.cat(images), torch.cat(labels)


def _blur3(x: torch.Tensor) -> torch.Tensor:
    """Separable [1, 2, 1] / 4 blur with edge padding (shifted sums: much faster than a grouped conv)."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    rows = 0.25 * p[..., :-2] + 0.5 * p[..., 1:-1] + 0.25 * p[..., 2:]
    return 0.25 * rows[..., :-2, :] + 0.5 * rows[..., 1:-1, :] + 0.25 * rows[..., 2:, :]


def _garbage_batch(n: int, seed: int, image_size: int, generator: torch.Generator) -> torch.Tensor:
    """n off-distribution images, float NCHW [0, 1], a quarter each of four kinds of corruption."""
    s = image_size
    quarter = -(-n // 4)
    clean, _ = _domain_batch(2 * quarter, seed, image_size)
    clean = clean[torch.randperm(len(clean), generator=generator)]

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator)

    def gaussian(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    # pixel noise around a random colour, or smooth colour blobs (a random 2x2 .. 4x4 grid upsampled)
    noise = uniform(quarter, 3, 1, 1) + (uniform(quarter, 1, 1, 1) * 0.5 + 0.1) * gaussian(quarter, 3, s, s)
    grid = int(torch.randint(2, 5, (1,), generator=generator))
    blobs = F.interpolate(uniform(quarter, 3, grid, grid), size=(s, s), mode="bilinear", align_corners=False)
    noise = torch.where(uniform(quarter, 1, 1, 1) < 0.5, noise, blobs)
    # two images blended: ghosts of two shapes, shapes over stripes, ...
    alpha = uniform(quarter, 1, 1, 1) * 0.4 + 0.3
    blends = alpha * clean[:quarter] + (1 - alpha) * clean[quarter : 2 * quarter].flip(0)
    # heavy blur: average down to 2x2 .. 4x4 and back up
    low = int(torch.randint(2, 5, (1,), generator=generator))
    blurred = F.adaptive_avg_pool2d(clean[:quarter], low)
    blurred = F.interpolate(blurred, size=(s, s), mode="bilinear", align_corners=False)
    # heavy noise on an in-domain image
    noisy = clean[quarter : 2 * quarter] + (uniform(quarter, 1, 1, 1) * 0.25 + 0.2) * gaussian(quarter, 3, s, s)
    return torch.cat([noise, blends, blurred, noisy])[:n].clamp(0, 1)


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The imperfections of generated images: slight colour shift, mild blur (half), light noise, 8-bit."""
    n = x.shape[0]
    x = x + (torch.rand(n, 3, 1, 1, generator=generator) * 2 - 1) * 0.04
    blurred = torch.rand(n, generator=generator) < 0.5
    strength = torch.rand(int(blurred.sum()), 1, 1, 1, generator=generator)
    x[blurred] += strength * (_blur3(x[blurred]) - x[blurred])
    x = x + torch.rand(n, 1, 1, 1, generator=generator) * 0.03 * torch.randn(x.shape, generator=generator)
    return torch.round(x.clamp(0, 1) * 255) / 255


def _labelled_batch(n: int, seed: int, image_size: int, garbage_share: float,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A shuffled mix of in-domain and garbage images, float NCHW [0, 1], with labels."""
    n_garbage = int(round(n * garbage_share))
    images, labels = _domain_batch(n - n_garbage, seed, image_size)
    garbage = _garbage_batch(n_garbage, _derived_seed(seed, 1_000), image_size, generator)
    garbage_label = len(class_names()) - 1
    images = torch.cat([images, garbage])
    labels = torch.cat([labels, torch.full((n_garbage,), garbage_label, dtype=torch.int64)])
    order = torch.randperm(len(images), generator=generator)
    return images[order], labels[order]


def _to_model_range(unit: torch.Tensor) -> torch.Tensor:
    return unit * 2 - 1


# ------------------------------------------------------------------------------------------ training
_TRAIN_TAG, _HELDOUT_TAG = 1, 2
_CHUNK_STEPS = 25  # batches generated at once (vectorised rendering is much faster in bulk)
_GARBAGE_SHARE = 0.1


def check_positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


@torch.no_grad()
def _heldout_accuracy(model: DemoCNN, seed: int, image_size: int, per_class: int = 100) -> dict[str, float]:
    """Accuracy on fresh, un-augmented images (and fresh garbage): overall, per domain and on garbage."""
    generator = torch.Generator().manual_seed(_derived_seed(seed, _HELDOUT_TAG))
    names = class_names()
    n_domain_classes = len(names) - 1
    images, labels = _domain_batch(per_class * n_domain_classes, _derived_seed(seed, _HELDOUT_TAG, 0), image_size)
    garbage = _garbage_batch(per_class * 2, _derived_seed(seed, _HELDOUT_TAG, 1), image_size, generator)
    garbage = torch.round(garbage * 255) / 255
    predicted = model(_to_model_range(torch.cat([images, garbage]))).argmax(1)
    truth = torch.cat([labels, torch.full((len(garbage),), n_domain_classes, dtype=torch.int64)])
    correct = (predicted == truth).float()
    report = {"overall": float(correct.mean())}
    for name in DOMAINS.names():
        in_domain = torch.tensor([names[int(t)].startswith(f"{name}/") for t in truth])
        report[name] = float(correct[in_domain].mean())
    report[GARBAGE_CLASS] = float(correct[len(images):].mean())
    return report


def train_demo_extractor(out_path: str | Path, image_size: int = 16, iterations: int = 1500, batch_size: int = 128,
                         lr: float = 5e-3, seed: int = 0, log: Callable[[str], Any] | None = print,
                         threads: int | None = 1) -> dict:
    """Train the demo CNN on freshly rendered demo images and write it to `out_path` (safetensors, atomic).

    threads: torch CPU threads while training (restored afterwards); None keeps the current setting.
    One thread is the default because this tiny network gains little from a second core and loses
    several-fold when the cores are shared with other jobs.
    Returns the summary that also goes into the file's metadata (architecture, image size, class
    names, held-out accuracy, settings) plus the training time, path and sha256 of the file.
    """
    if threads is None:
        return _train(out_path, image_size, iterations, batch_size, lr, seed, log)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(check_positive_int(threads, "threads"))
    try:
        return _train(out_path, image_size, iterations, batch_size, lr, seed, log)
    finally:
        torch.set_num_threads(previous_threads)


def _train(out_path: str | Path, image_size: int, iterations: int, batch_size: int, lr: float, seed: int,
           log: Callable[[str], Any] | None) -> dict:
    iterations = check_positive_int(iterations, "iterations")
    batch_size = check_positive_int(batch_size, "batch_size")
    if check_positive_int(image_size, "image_size") < 12:
        raise ValueError(f"image_size must be >= 12 (the demo domains' minimum; default 16), got {image_size}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    seed = int(seed)
    log = log or (lambda _message: None)

    names = class_names()
    config = DemoCNNConfig(n_classes=len(names))
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's RNG
        torch.manual_seed(_derived_seed(seed, 0))
        model = DemoCNN(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=iterations, pct_start=0.1)
    generator = torch.Generator().manual_seed(_derived_seed(seed, _TRAIN_TAG))

    started, cpu_started = time.perf_counter(), time.process_time()
    model.train()
    running_loss, running_hits, seen = 0.0, 0.0, 0
    for chunk_start in range(0, iterations, _CHUNK_STEPS):
        steps = min(_CHUNK_STEPS, iterations - chunk_start)
        chunk_seed = _derived_seed(seed, _TRAIN_TAG, chunk_start)
        images, labels = _labelled_batch(steps * batch_size, chunk_seed, image_size, _GARBAGE_SHARE, generator)
        images = _to_model_range(_augment(images, generator))
        for step in range(steps):
            batch = slice(step * batch_size, (step + 1) * batch_size)
            logits = model(images[batch])
            loss = F.cross_entropy(logits, labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running_loss += float(loss.detach()) * len(logits)
            running_hits += float((logits.argmax(1) == labels[batch]).sum())
            seen += len(logits)
        done = chunk_start + steps
        if done % 250 < _CHUNK_STEPS or done == iterations:
            log(f"demo extractor step {done}/{iterations}: loss {running_loss / seen:.4f}, "
                f"train accuracy {running_hits / seen:.3f}, {time.perf_counter() - started:.1f} s")
            running_loss, running_hits, seen = 0.0, 0.0, 0
    train_seconds, train_cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started

    model.eval()
    accuracy = _heldout_accuracy(model, seed, image_size)
    summary = {
        "format": _FORMAT,
        "id": EXTRACTOR_ID,
        "architecture": {"name": "DemoCNN", **asdict(config)},
        "image_size": image_size,
        "class_names": names,
        "heldout_accuracy": accuracy,
        "iterations": iterations,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "threads": torch.get_num_threads(),  # thread count can change float round-off, so it is recorded
    }
    path = _write_weights(out_path, model, summary)
    summary["train_seconds"] = round(train_seconds, 2)
    summary["train_cpu_seconds"] = round(train_cpu_seconds, 2)
    summary["path"] = str(path)
    summary["weights_sha256"] = file_sha256(path)
    log(f"demo extractor trained in {train_seconds:.1f} s ({train_cpu_seconds:.1f} s CPU); held-out accuracy "
        + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()) + f"; wrote {path}")
    return summary


def _write_weights(out_path: str | Path, model: DemoCNN, summary: dict) -> Path:
    return write_network(out_path, model, _MODULE_NAME, "demo_extractor", summary)


# ------------------------------------------------------------------------------------------- loading
def read_summary(path: str | Path) -> dict:
    """The training summary stored in a demo extractor weights file."""
    return read_network_summary(path, "demo_extractor", _FORMAT, "demo extractor",
                                "train it with train_demo_extractor() (rule demo_extractor)")


def load_demo_cnn(path: str | Path, device: str | torch.device) -> tuple[DemoCNN, dict, str]:
    """The trained network (eval mode, no gradients, on `device`), its training summary and the file's sha256."""
    summary = read_summary(path)
    architecture = dict(summary["architecture"])
    architecture.pop("name")
    architecture["widths"] = tuple(architecture["widths"])
    model = DemoCNN(DemoCNNConfig(**architecture))
    load_weights(path, {_MODULE_NAME: model})
    return model.to(device).eval().requires_grad_(False), summary, file_sha256(path)
