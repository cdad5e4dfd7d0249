"""Data jobs of the text-conditioned (SDP) demo: the captioned source set on disk and the miniature SD's
VAE. Every function takes explicit paths (the rules compute them)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from unidad.atomic import atomic_dir


def write_captioned_source(n: int, seed: int, image_size: int, out_dir: str | Path) -> dict:
    """The captioned source set (the demo's LAION stand-in) as PNGs + captions.jsonl."""
    from unidad.data.captioned import write_captioned_folder
    from unidad.data.scenes import sample_source

    images, captions, _ = sample_source(int(n), seed=int(seed), image_size=int(image_size))
    write_captioned_folder(images, captions, out_dir)
    return {"n": len(images), "seed": int(seed), "image_size": int(image_size)}


def fit_demo_vae(backbone_params: Mapping[str, Any], out_dir: str | Path, n_images: int = 4000, seed: int = 0,
                 vivid_share: float = 0.8, pattern_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 fit_params: Mapping[str, Any] | None = None,
                 log: Callable[[str], Any] | None = print) -> dict:
    """The tiny text-to-image backbone's VAE, trained on the demo's codec scenes (broader than the
    captioned set: random colours and patterns, unidad.data.scenes.sample_codec_images, `vivid_share`
    of them in saturated colours, patterns drawn by `pattern_weights` (checker, hstripes, vstripes,
    solid; more checkerboards measured no better); never a demo subject's pattern in its colours) and
    written as a diffusers AutoencoderKL folder (`vae_dir` of unidad.backbones.tiny_sd.build_tiny_sd),
    with its fit summary in fit.json. config/sdp_demo.yaml's `backbone.vae_fit` is the measured recipe
    (docs/demo_tuning.md, "SDP demo codec").
    """
    import json

    from unidad.backbones.tiny_sd import build_tiny_sd, fit_tiny_vae
    from unidad.data.scenes import sample_codec_images
    from unidad.data.sdp_demo import SUBJECTS

    params = {k: v for k, v in dict(backbone_params).items() if k != "vae_dir"}
    images = sample_codec_images(int(n_images), seed=int(seed), image_size=int(params.get("image_size", 32)),
                                 vivid_share=float(vivid_share), pattern_weights=tuple(pattern_weights),
                                 avoid=[(subject.pattern, subject.colours) for subject in SUBJECTS.values()])
    vae = build_tiny_sd(**params).vae
    summary = fit_tiny_vae(vae, images, log=log, **{"seed": int(seed), **dict(fit_params or {})})
    summary.update(n_images=int(n_images), vivid_share=float(vivid_share),
                   pattern_weights=[float(w) for w in pattern_weights])
    with atomic_dir(out_dir) as staging:
        vae.save_pretrained(staging)
        (staging / "fit.json").write_text(json.dumps(summary, indent=1))
    return summary
