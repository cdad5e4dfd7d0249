"""Data jobs of the subject-driven (SDP) benchmark: the text-conditioned demo's sets on disk, the
prompts of one subject, DreamBench checks and the demo's VAE. Every function takes explicit paths
(the rules compute them)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from unidad.atomic import atomic_dir, write_json_atomic

def write_captioned_source(n: int, seed: int, image_size: int, out_dir: str | Path) -> dict:
    """The captioned source set (the demo's LAION stand-in) as PNGs + captions.jsonl."""
    from unidad.data.captioned import write_captioned_folder
    from unidad.data.scenes import sample_source

    images, captions, _ = sample_source(int(n), seed=int(seed), image_size=int(image_size))
    write_captioned_folder(images, captions, out_dir)
    return {"n": len(images), "seed": int(seed), "image_size": int(image_size)}


def write_demo_subjects(out_dir: str | Path, image_size: int, shots: int = 5, seed: int = 0,
                        subjects: Sequence[str] | None = None) -> dict:
    """The demo subjects in DreamBench's layout: <out_dir>/<subject>/*.png (the shots, all in the
    subject's one context) and <out_dir>/prompts_and_classes.txt (classes and the demo prompts)."""
    from PIL import Image

    from unidad.data.dreambench import PROMPTS_FILE, format_prompt_table
    from unidad.data.sdp_demo import DEMO_TEMPLATES, SUBJECTS, get_subject, make_shots

    chosen = [get_subject(name) for name in (subjects if subjects is not None else list(SUBJECTS))]
    if not chosen:
        raise ValueError("no demo subjects chosen; name at least one of: " + ", ".join(SUBJECTS))
    with atomic_dir(out_dir) as staging:
        for sub in chosen:
            folder = staging / sub.name
            folder.mkdir()
            for i, image in enumerate(make_shots(sub, int(shots), seed=int(seed), image_size=int(image_size))):
                Image.fromarray(image).save(folder / f"{i:02d}.png", format="PNG")
        classes = {sub.name: sub.class_noun for sub in chosen}
        text = format_prompt_table(classes, DEMO_TEMPLATES, title="Embedded SDP demo (unidad.data.sdp_demo)")
        (staging / PROMPTS_FILE).write_text(text + "\n", encoding="utf-8")
    return {"subjects": [sub.name for sub in chosen], "shots": int(shots), "seed": int(seed)}


def write_subject_prompts(dataset_dir: str | Path, subject: str, token: str, out: str | Path,
                          protocol: str = "paper") -> dict:
    """One subject's prompt record (JSON) from a DreamBench-layout folder (real or demo): class noun,
    live/object, the unique token, the instance and class prompts, and the evaluation prompts with
    and without the token (the source teacher's and CLIP-T's text)."""
    from unidad.data.dreambench import dataset_prompt_table, subject_prompts
    from unidad.prompts import drop_token

    info = subject_prompts(subject, token=token, table=dataset_prompt_table(dataset_dir), protocol=protocol)
    record = {
        "subject": info.subject,
        "class_noun": info.class_noun,
        "live": info.live,
        "token": info.token,
        "protocol": protocol,
        "instance_prompt": info.instance_prompt,
        "class_prompt": info.class_prompt,
        "prompts": list(info.prompts),
        "prompts_without_token": [drop_token(p, info.token) for p in info.prompts],
    }
    write_json_atomic(out, record)
    return record


def verify_dreambench(root: str | Path, subjects: Sequence[str] | None, min_images: int, out: str | Path) -> None:
    """Checks a staged DreamBench folder once (subjects known, enough readable images); writes a marker."""
    from unidad.data.dreambench import check_dreambench

    counts = check_dreambench(root, list(subjects) if subjects is not None else None, int(min_images))
    write_json_atomic(out, {"folder": str(root), "min_images": int(min_images), "images": counts})


def fit_demo_vae(backbone_params: Mapping[str, Any], out_dir: str | Path, n_images: int = 4000, seed: int = 0,
                 fit_params: Mapping[str, Any] | None = None, log: Callable[[str], Any] | None = print) -> dict:
    """The tiny text-to-image backbone's VAE, trained on the demo's codec scenes (broader than the
    captioned set: random colours and patterns, unidad.data.scenes.sample_codec_images) and written
    as a diffusers AutoencoderKL folder (`vae_dir` of unidad.backbones.tiny_sd.build_tiny_sd), with
    its fit summary in fit.json.

    Still not reliable at demo budget (docs/demo_tuning.md, "SDP demo codec"): with config/sdp_demo.yaml's
    VAE (8 latent channels at /2, no mid attention) and fit_tiny_vae's defaults (1200 steps of batch
    8, lr 2e-3, no posterior noise; about 90 s on 2 unloaded cores, estimated from the loaded runs) one
    fit reached a held-out error of 7.0 px and kept the subjects in 23% / 83% / 90% of round-tripped
    ground truths (checker_square / striped_circle / banded_triangle), contexts in 100%; a 1600-step
    fit of the same recipe reached 7.7 px but only 18% / 0% / 3%. The old recipe (4 latent channels,
    mid attention, 400 x 32 steps) kept 0-5%.
    """
    import json

    from unidad.backbones.tiny_sd import build_tiny_sd, fit_tiny_vae
    from unidad.data.scenes import sample_codec_images

    params = {k: v for k, v in dict(backbone_params).items() if k != "vae_dir"}
    images = sample_codec_images(int(n_images), seed=int(seed), image_size=int(params.get("image_size", 32)))
    vae = build_tiny_sd(**params).vae
    summary = fit_tiny_vae(vae, images, log=log, **{"seed": int(seed), **dict(fit_params or {})})
    summary["n_images"] = int(n_images)
    with atomic_dir(out_dir) as staging:
        vae.save_pretrained(staging)
        (staging / "fit.json").write_text(json.dumps(summary, indent=1))
    return summary


def caption_following_report(backbone: Mapping[str, Any], weights: str | Path, out_json: str | Path,
                             guidance: float = 7.5, steps: int = 25, repeats: int = 1,
                             module: str = "model", batch_size: int = 54, threads: int | None = None,
                             out_grid: str | Path | None = None, contexts: Sequence[str] | None = None) -> dict:
    """The text-to-image source teacher's positive control: its many-step CFG samples for every
    (kind, colour, context) caption of the source set (`repeats` seeds each), judged by the scene
    judge (unidad.data.scenes.caption_report), and for the demo subjects' class prompts without the
    token ("a square in the snow"), where a solid object is right and the subject absent.
    `contexts` restricts the captions to these contexts (default: all)."""
    import numpy as np

    from unidad.data import scenes
    from unidad.data.sdp_demo import SUBJECTS, SubjectOracle, demo_prompts
    from unidad.backbones import build_backbone
    from unidad.prompts import drop_token
    from unidad.runtime import set_threads
    from unidad.sampling import generate
    from unidad.weights_file import read_weights

    captions = [scenes.caption(c, k, x) for k in scenes.SHAPE_NOUNS for c in scenes.SOURCE_COLOURS
                for x in (contexts or scenes.CONTEXT_NAMES)] * int(repeats)
    sampling = {"kind": "many_step", "sampler": "euler", "steps": int(steps), "guidance": float(guidance)}
    set_threads(threads)
    model = build_backbone(dict(backbone))  # once: building the tokenizer dominates a tiny model's sampling
    model.load_state_dict(read_weights(weights)[module], strict=True)
    images, timing = generate(model, sampling, list(range(len(captions))), batch_size=batch_size, prompts=captions)
    report: dict[str, Any] = {"sampling": sampling, "timing": timing, "captions": scenes.caption_report(images, captions)}
    for name, sub in SUBJECTS.items():
        prompts = [drop_token(p, "prt") for p in demo_prompts(sub, "prt")] * int(repeats)
        seeds = list(range(10_000, 10_000 + len(prompts)))
        drawn, _ = generate(model, sampling, seeds, batch_size=batch_size, prompts=prompts)
        report[f"class_prompts_{name}"] = {**scenes.caption_report(drawn, prompts),
                                           "subject_present_rate": float(np.mean(SubjectOracle(sub).present(drawn)))}
    if out_grid is not None:
        from unidad.imageio import save_grid

        save_grid(images[:72], out_grid, nrow=12, scale=3)
    write_json_atomic(out_json, report)
    return report


def subject_grid(dataset_dir: str | Path, image_size: int, out: str | Path) -> None:
    """One picture: each subject's shots (rows), read back from the DreamBench-layout folder."""
    import numpy as np

    from unidad.data.dreambench import dataset_prompt_table, load_subject_images
    from unidad.imageio import save_grid

    table = dataset_prompt_table(dataset_dir)
    rows = [load_subject_images(dataset_dir, s, image_size, min_images=1, table=table) for s in table.subjects]
    width = max(len(r) for r in rows)
    padded = [np.concatenate([r, np.full((width - len(r), *r.shape[1:]), 255, np.uint8)]) for r in rows]
    save_grid(np.concatenate(padded), out, nrow=width, scale=4)
