"""Jobs of workflow/rules/teachers.smk: the source teacher as one weights file, and the reports of the
teacher and of the students distilled from it on source data (the positive controls' samples)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from unidad.atomic import write_json_atomic
from unidad.runtime import log, resolve_device, set_threads

# first per-image seed of the teacher's caption-following samples (apart from the evaluation seeds)
CAPTION_SEED = 3_000_000


def export_source_teacher(backbone: Mapping[str, Any], out: str | Path, *, trained: str | Path | None = None,
                          module: str = "model", staged: str | Path | None = None) -> None:
    """The source teacher as one weights file with module 'model', whichever way it was obtained:
    `trained` (a pretraining run's final weights, module `module`) or `staged` (real weights on disk: a
    path, or a manifest name resolved in the local weights folders)."""
    from unidad import standins
    from unidad.backbones import build_backbone, load_source_weights
    from unidad.weights import file_sha256, is_path_ref, resolve
    from unidad.weights_file import export_weights, read_weights

    if (trained is None) == (staged is None):
        raise ValueError("give the source teacher either as trained weights or as a staged file, not both")
    if trained is not None:
        model = build_backbone(dict(backbone))
        model.load_state_dict(read_weights(trained)[module], strict=True)
    else:
        path = Path(staged) if is_path_ref(str(staged)) else resolve(str(staged))
        standins.check(path, file_sha256(path) if path.is_file() else None, f"source model {staged}")
        model = load_source_weights(dict(backbone), path)
    export_weights(out, {"model": model})


def sample_product(backbone: Mapping[str, Any], weights: str | Path, module: str, sampling: Mapping[str, Any],
                   seeds: Sequence[int], batch_size: int, device: str = "auto", threads: int | None = None,
                   prompts: Sequence[str] | None = None):
    """Images (uint8 NHWC) and timing of one product (a module in a weights file), one seed per image
    (and, for a text-conditioned backbone, one prompt per image)."""
    from unidad.backbones import build_backbone
    from unidad.sampling import generate
    from unidad.weights_file import read_weights

    set_threads(threads)
    model = build_backbone(dict(backbone))
    model.load_state_dict(read_weights(weights)[module], strict=True)
    return generate(model, dict(sampling), list(seeds), batch_size=batch_size, device=resolve_device(device), log=log,
                    prompts=None if prompts is None else list(prompts))


def teacher_report(backbone: Mapping[str, Any], weights: str | Path, sampling: Mapping[str, Any], seeds: Sequence[int],
                   batch_size: int, out_json: str | Path, out_grid: str | Path, *, source_domain: str | None = None,
                   target_domains: Mapping[str, str] | None = None, device: str = "auto",
                   threads: int | None = None, module: str = "model", about: Mapping[str, Any] | None = None,
                   subject_prompts: Mapping[str, Mapping[str, Any]] | None = None) -> dict:
    """Samples the source teacher with its many-step sampler (or, with `module` and `about`: slug, seed,
    step..., a student distilled from it on source data, at its own NFE); the oracle judges them against
    the source domain (demo) and each demo target: the starting point every method adapts from.

    A text-conditioned teacher is sampled with prompts instead: `subject_prompts` (target -> subject,
    prompts without the unique token, seeds; unidad.jobs.params.teacher_subject_prompts), each target's
    samples judged by its subject's oracle (report key `subject_oracle`)."""
    from unidad.data.domains import oracle_report
    from unidad.imageio import save_grid

    if subject_prompts:
        return _subject_teacher_report(backbone, weights, sampling, batch_size, out_json, out_grid, subject_prompts,
                                       device, threads, module)
    images, timing = sample_product(backbone, weights, module, sampling, seeds, batch_size, device, threads)
    report: dict[str, Any] = {"n": len(seeds), "sampling": dict(sampling), "timing": timing, "module": module,
                              "about": dict(about or {})}
    if source_domain is not None:
        report["oracle"] = oracle_report(images, source_domain)
        report["oracle_domain"] = source_domain
    report["target_oracle"] = {t: oracle_report(images, d) for t, d in (target_domains or {}).items()}
    save_grid(images[:64], out_grid, nrow=8)
    write_json_atomic(out_json, report)
    return report


def _subject_teacher_report(backbone, weights, sampling, batch_size, out_json, out_grid, subject_prompts,
                            device, threads, module) -> dict:
    """The text-to-image teacher's report: each subject target's token-free prompts judged by the subject's
    oracle (`subject_oracle`), and, where the teacher is the demo's, one sample per caption of its
    captioned source set (every kind x colour x context) judged by the scene judge (`captions`: does it
    draw what a caption names?). The model is built once (a text backbone's tokenizer dominates)."""
    from unidad.backbones import build_backbone
    from unidad.data import scenes
    from unidad.data.sdp_demo import SubjectOracle
    from unidad.imageio import save_grid
    from unidad.sampling import generate
    from unidad.weights_file import read_weights

    set_threads(threads)
    model = build_backbone(dict(backbone))
    model.load_state_dict(read_weights(weights)[module], strict=True)
    device = resolve_device(device)

    def draw(seeds, prompts):
        return generate(model, dict(sampling), list(seeds), batch_size=batch_size, device=device, log=log,
                        prompts=list(prompts))

    report: dict[str, Any] = {"sampling": dict(sampling), "module": module, "subject_oracle": {}, "timing": {}}
    rows = []
    for target, spec in subject_prompts.items():
        images, report["timing"][target] = draw(spec["seeds"], spec["prompts"])
        report["subject_oracle"][target] = SubjectOracle(spec["subject"]).report(images, spec["prompts"])
        rows.append(images[:8])
    report["n"] = sum(r["n"] for r in report["subject_oracle"].values())
    captions = scenes.every_caption()
    images, report["timing"]["captions"] = draw(range(CAPTION_SEED, CAPTION_SEED + len(captions)), captions)
    report["captions"] = scenes.caption_report(images, captions)
    save_grid(np.concatenate(rows + [images[:16]]), out_grid, nrow=8)
    write_json_atomic(out_json, report)
    return report


def sd15_unets() -> list[str]:
    """Manifest entries the workflow turns into `weights/<name>.safetensors` (export: sd15_unet)."""
    from unidad.weights import manifest

    return sorted(name for name, entry in manifest().items() if entry.export == "sd15_unet")


def export_sd15_unet(unet: str, out: str | Path, model_dir: str | Path | None = None,
                     weights_dir: str | Path | None = None) -> None:
    """SD1.5 (the staged `sd15`, or `model_dir`) with the UNet weights `unet` (a manifest name or a
    path) as one unidad weights file (module 'model'): what a method's role reads."""
    from unidad import standins
    from unidad.backbones.sd15 import load_sd15, replace_unet
    from unidad.weights import WeightsError, file_sha256, is_path_ref, resolve
    from unidad.weights_file import export_weights

    model_dir = Path(model_dir) if model_dir else resolve("sd15", weights_dir)
    path = Path(unet) if is_path_ref(unet) or Path(unet).is_file() else resolve(unet, weights_dir)
    standin = standins.check(path, file_sha256(path), f"SD1.5 UNet {unet}") if path.is_file() else False
    try:
        model = replace_unet(load_sd15(model_dir), path)
    except (ValueError, FileNotFoundError) as err:
        raise WeightsError(str(err)) from None
    # made from a stand-in (UNet or folder): the export is one too, marked in its header, so a config
    # that is not a rehearsal refuses it wherever it is copied
    standin = standin or standins.stamp_of(model_dir) is not None
    export_weights(out, {"model": model}, metadata={"unet": str(path), "model_dir": str(model_dir),
                                                    **({standins.HEADER_KEY: "true"} if standin else {})})
    log(f"{out}: SD1.5 ({model_dir}) with the UNet of {path}")
