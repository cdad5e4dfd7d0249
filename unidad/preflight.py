"""The pre-flight check of a config: which pretrained weights its jobs load, and whether each is in place.

`unidad weights verify --config CONFIG` prints it; a cluster user runs it before submitting.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from unidad.standins import StandinError, stamp_of
from unidad.weights import (MissingWeightsError, WeightsError, get_entry, is_path_ref, manifest, resolve, searched_text,
                             verify)

# Manifest entries behind the config's choices (registry names -> what they load at run time).
BACKBONE_WEIGHTS = {"sd15": ("sd15",)}  # backbone.kind (sd15 loads its diffusers folder at build time)
EXTRACTOR_WEIGHTS = {"inception": ("inception_v3_tf",), "inception_pytorch_fid": ("inception_v3_tf",)}  # evaluation.extractor, for metrics needing "reference"
DISTANCE_WEIGHTS = {"vgg": ("lpips_vgg16", "lpips_vgg_lin_v01")}  # evaluation.lpips, for metrics needing "distance"


@dataclass(frozen=True)
class RequiredWeights:
    """One file (or folder) a config's jobs load: a manifest entry, or a path the config names."""

    name: str | None  # manifest entry; None for a plain path
    path: str | None  # the path the config names (name is None)
    needed_by: tuple[str, ...]  # what in the config needs it, e.g. "evaluation.extractor inception"

    @property
    def label(self) -> str:
        return self.name or self.path



def required_weights(config: dict) -> list[RequiredWeights]:
    """Every weights file the jobs of a validated config load, in a stable order: the staged source
    model (source.kind file), the backbone's own weights (sd15), the extractor and distance of the
    configured metrics (evaluation.extractor / evaluation.lpips), and the .safetensors paths that
    methods' stages name as weights roles. The demo (pretrain source, demo extractor) needs none."""
    from unidad.metrics.registry import get_metric, metrics_needing
    from unidad.plan import Plan

    found: dict[tuple[str | None, str | None], list[str]] = {}

    def need(why: str, name: str | None = None, path: str | None = None) -> None:
        reasons = found.setdefault((name, path), [])
        if why not in reasons:
            reasons.append(why)

    source = config["source"]
    if source["kind"] == "file":
        ref = source["weights"]
        if is_path_ref(ref):
            need("source.weights", path=ref)
        else:
            need("source.weights", name=ref)
    backbone = config["backbone"]
    model_dir = (backbone.get("params") or {}).get("model_dir")
    if backbone["kind"] == "sd15" and model_dir:
        need("backbone.params.model_dir", path=model_dir)
    else:
        for name in BACKBONE_WEIGHTS.get(backbone["kind"], ()):
            need(f"backbone.kind {backbone['kind']}", name=name)
    evaluation = config["evaluation"]
    if metrics_needing("reference", evaluation["metrics"]):
        for name in EXTRACTOR_WEIGHTS.get(evaluation["extractor"], ()):
            need(f"evaluation.extractor {evaluation['extractor']}", name=name)
    if metrics_needing("distance", evaluation["metrics"]):
        for name in DISTANCE_WEIGHTS.get(evaluation["lpips"], ()):
            need(f"evaluation.lpips {evaluation['lpips']}", name=name)
    for metric in evaluation["metrics"]:
        for name in get_metric(metric).weights:
            need(f"evaluation.metrics {metric}", name=name)
    plan = Plan(config)
    for mr in plan.method_runs:
        for slug in mr.stages:
            run = plan.runs[slug]
            for role, ref in run.roles.items():
                if ref.startswith("file:"):
                    need(f"method {mr.method} stage {run.stage_name} role {role}", path=ref[len("file:"):])
    return [RequiredWeights(name, path, tuple(why)) for (name, path), why in found.items()]


def standins_in_config(config: dict, weights_dir: str | os.PathLike | None = None) -> list[str]:
    """The weights files a config's jobs would load that are stamped stand-ins (cheap: no hashing)."""
    found = []
    for req in required_weights(config):
        try:
            path = Path(req.path) if req.name is None else resolve(req.name, weights_dir)
        except WeightsError:
            continue  # missing files are the pre-flight check's business
        if stamp_of(path) is not None:
            found.append(f"{req.label} ({path})")
    return found


def refuse_in_config(config: dict, weights_dir: str | os.PathLike | None = None) -> None:
    """Raise StandinError when a config that is not a rehearsal would load a stand-in."""
    if config.get("rehearsal"):
        return
    found = standins_in_config(config, weights_dir)
    if found:
        raise StandinError(
            f"stand-in weights found for a config that is not a rehearsal: {', '.join(found)}; stage the real "
            f"files (unidad weights fetch NAME) or point UNIDAD_WEIGHTS_DIR elsewhere (a rehearsal's export in "
            f"weights/: python ci/rehearsal/clear_exports.py --config config/paper_sdp_rehearsal.yaml)")


@dataclass(frozen=True)
class RequiredStatus:
    """Whether one required file is usable: ok, or the problem and the command that fixes it."""

    required: RequiredWeights
    ok: bool
    message: str  # the verify message, or the problem
    fix: str = ""  # the command (or step) that gets the file; empty when ok


def check_required(config: dict, weights_dir: str | os.PathLike | None = None) -> list[RequiredStatus]:
    """Every file `required_weights(config)` lists, checked as `verify` does (present, sha256 pinned
    in the manifest matches), with the command that gets each one that is missing or wrong."""
    out = []
    for req in required_weights(config):
        if req.name is None:
            path = Path(req.path)
            if path.exists():
                out.append(RequiredStatus(req, True, f"present ({path})"))
            else:
                out.append(RequiredStatus(req, False, f"missing: {path} not found",
                                          "place the file at that path (the config names it; it is not in the manifest)"))
            continue
        try:
            report = verify(req.name, weights_dir)
        except MissingWeightsError:
            entry = get_entry(req.name)
            fix = (f"pip install {entry.package}" if entry.kind == "package_file"
                   else f"unidad weights fetch {req.name} (on a machine with internet), or place "
                        f"{entry.filename} in $UNIDAD_WEIGHTS_DIR")
            out.append(RequiredStatus(req, False, "missing: not found in " + searched_text(entry, weights_dir), fix))
        except WeightsError as err:  # a wrong hash, or a name the manifest does not know
            standin = _standin_status(config, req, resolve(req.name, weights_dir), None) if err_is_hash(err) else None
            if standin is not None:  # a stand-in cannot match a published hash: say what it is instead
                out.append(standin)
                continue
            known = req.name in manifest()
            fix = (f"delete it and run: unidad weights fetch {req.name}" if known
                   else "name a manifest entry (unidad weights list) or a path")
            out.append(RequiredStatus(req, False, str(err), fix))
        else:
            out.append(_standin_status(config, req, report.path, report.sha256)
                       or RequiredStatus(req, True, f"{report.message} ({report.path})"))
    return out


def err_is_hash(err: WeightsError) -> bool:
    return "sha256" in str(err)


def _standin_status(config: dict, req: RequiredWeights, path: Path, sha256: str | None) -> RequiredStatus | None:
    """A stand-in (unidad.standins) is refused outside a rehearsal config, and named as one inside it."""
    from unidad.standins import is_standin

    if not is_standin(path, sha256):
        return None
    if config.get("rehearsal"):
        return RequiredStatus(req, True, f"STAND-IN (rehearsal config: allowed, every number stamped) ({path})")
    return RequiredStatus(req, False, f"refused: {path} is a rehearsal stand-in (random weights)",
                          f"unidad weights fetch {req.name} (the real file), or run the rehearsal config")
