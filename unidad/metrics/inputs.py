"""What the metrics of one checkpoint read, given as explicit paths and loaded lazily, once.

The evaluation job builds one `MetricInputs` per checkpoint from its rule's inputs and params; every
metric's `compute` and `protocol` (unidad.metrics.registry) takes it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class MetricInputs:
    samples: Path  # samples.npz of the checkpoint (uint8 images per NFE, timing)
    references: dict[str, Path] = field(default_factory=dict)  # split ("full" = test, "val") -> statistics .npz
    extractor: str = ""  # evaluation.extractor (feature extractor registry name)
    # the weights the DAG trains for the configured extractor, distance or metrics (demo CNN or SDP demo
    # embedding: unidad.metrics.extractors.DAG_TRAINED), when one of them is used
    extractor_file: Path | None = None
    lpips: str = ""  # evaluation.lpips (distance registry name)
    intra_lpips_variant: str = "cdc"
    evaluation_protocol: str = ""  # evaluation.protocol: the label every number of this job carries
    shots_dir: Path | None = None  # the k training images of the run's target
    shots: int | None = None
    domain: str | None = None  # the target's demo domain (None for a real dataset: no oracle)
    image_size: int = 0
    unique_token: str | None = None  # the subject's unique token (text-conditioned runs only)
    subject: str | None = None  # the target's text-conditioned demo subject (its oracle), else None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "MetricInputs":
        """From the plain values a rule passes (paths as strings)."""
        p = dict(params)
        p["samples"] = Path(p["samples"])
        p["references"] = {k: Path(v) for k, v in p.get("references", {}).items()}
        for key in ("extractor_file", "shots_dir"):
            p[key] = None if p.get(key) is None else Path(p[key])
        return cls(**p)

    @cached_property
    def _samples(self) -> dict[str, Any]:
        with np.load(self.samples, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}

    @property
    def checkpoint(self) -> str:
        return str(self._samples["checkpoint"])

    @property
    def images(self) -> dict[int | str, np.ndarray]:
        """NFE -> uint8 NHWC images; a noise-corrected set is keyed by its sample key ("3_nc")."""
        keys = {k: k[len("images_nfe"):] for k in self._samples if k.startswith("images_nfe")}
        return {int(key) if key.isdigit() else key: self._samples[k] for k, key in keys.items()}

    @property
    def prompts(self) -> list[str] | None:
        """The prompt of every image (the same for every NFE); None for unconditional samples."""
        return [str(p) for p in self._samples["prompts"]] if "prompts" in self._samples else None

    @cached_property
    def timing(self) -> dict[str, Any]:
        return json.loads(str(self._samples["timing"]))

    @cached_property
    def feature_extractor(self):
        from unidad.metrics.extractors import load_extractor

        return load_extractor(self.extractor, self.extractor_file)

    @cached_property
    def distance(self):
        from unidad.metrics.extractors import load_distance

        return load_distance(self.lpips, self.extractor_file)

    @cached_property
    def shot_images(self) -> np.ndarray:
        from unidad.data.folders import load_image_folder

        if self.shots_dir is None:
            raise ValueError("this metric needs the training shots, but the evaluation job was given none")
        return load_image_folder(self.shots_dir, shots=self.shots, image_size=self.image_size)

    def generated_features(self, nfe: int) -> np.ndarray:
        """Features of the samples at one NFE, extracted once and shared by every feature metric."""
        cache = self.__dict__.setdefault("_features", {})
        if nfe not in cache:
            cache[nfe] = self.feature_extractor(self.images[nfe])
        return cache[nfe]

    def reference(self, split: str) -> dict[str, Any] | None:
        """Feature statistics of a reference split, checked against the extractor's weights; None if absent."""
        path = self.references.get(split)
        if path is None or not Path(path).exists():
            return None
        ref = dict(np.load(path, allow_pickle=False))
        sha = self.feature_extractor.weights_sha256
        if str(ref["extractor_sha256"]) != sha:
            raise ValueError(f"reference statistics {path} were made with other extractor weights "
                             f"({str(ref['extractor_sha256'])[:12]} vs {sha[:12]}); delete it to recompute")
        return ref
