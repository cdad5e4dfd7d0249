"""Expands a validated config into the runs the DAG executes.

A method (config/methods.yaml) is an ordered list of stages. Each stage names its data
(`source` or `target`) and where each weights *role* it needs comes from: `source` (the source
teacher), the name of an earlier stage of the same method, or a file path. The plan turns every
(target, shots, method, seed) into concrete stage runs with folders, and recognises stages that do
not depend on the target (e.g. Distill-then-Adapt's distillation on the source): those run once
per seed and are shared by every method and target that needs them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from unidad.ablations import Ablation, expand_ablations
from unidad.checkpoint import checkpoint_weights_file
from unidad.config import PROJECT_ROOT, ConfigError
from unidad.eval_units import EvalUnit, expand_eval_units
from unidad.paths import PATHS
from unidad.registry import UnknownNameError

SOURCE = "source"
TEACHER_PREFIX = "source__teacher"
# dataset options that change what a stage trains on (sizes of evaluation splits do not)
_TRAINING_DATA_KEYS = ("kind", "domain", "seed", "train_size", "path", "on_wrong_size")

# Dataset kinds whose folders the DAG writes (rule demo_split); the other kind, folder, is staged.
DAG_WRITTEN_KINDS = ("demo", "demo_captions", "demo_subject")

# The config key of a staged folder dataset that names each split's folder.
FOLDER_KEYS = {"shots": "path", "train": "path", "full": "full_path", "val": "val_path"}

@dataclass
class StageRun:
    slug: str
    stage: str  # stage registry id
    params: dict[str, Any]  # fully resolved stage options
    data: dict[str, Any]  # {"dataset": key, "split": "train"|"shots", "shots": k}
    roles: dict[str, str]  # role -> "source" | upstream slug | "file:<path>"
    seed: int
    product_module: str
    sampling: dict[str, Any]
    checkpoint_steps: list[int]
    method: str | None = None
    target: str | None = None
    shots: int | None = None
    stage_name: str = ""
    shared: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class MethodRun:
    target: str
    shots: int
    method: str  # the method's id in the methods file
    seed: int
    stages: list[str]  # slugs, in order
    ablation: Ablation | None = None

    @property
    def final(self) -> str:
        return self.stages[-1]

    @property
    def label(self) -> str:
        """How the method is named in grids and logs: its id, with the ablation value if any."""
        return self.method if self.ablation is None else f"{self.method}@{self.ablation.label}={self.ablation.value}"

    def ablation_fields(self) -> dict[str, str]:
        if self.ablation is None:
            return {"ablation": "", "ablation_param": "", "ablation_value": "", "ablation_option": ""}
        return self.ablation.fields()


def methods_path(config: dict[str, Any]) -> Path:
    """The methods file a config names (relative paths: to the working directory, else the project)."""
    path = Path(config["methods_file"])
    if not path.is_absolute() and not path.exists():
        path = PROJECT_ROOT / path
    return path


def load_methods(config: dict[str, Any]) -> dict[str, Any]:
    path = methods_path(config)
    if not path.exists():
        raise ConfigError(f"config key methods_file: {config['methods_file']} not found")
    with open(path) as f:
        methods = yaml.safe_load(f) or {}
    methods.update(config.get("extra_methods", {}))
    # rows of the tables only (reference data, numbers quoted from the paper): nothing to run
    rows = {m: "reference" if spec.get("reference") else "quoted" for m, spec in methods.items()
            if isinstance(spec, dict) and (spec.get("reference") or spec.get("quoted"))}
    chosen = [m for m in config.get("methods", []) if m in rows]
    if chosen:
        raise ConfigError(f"config key methods: '{chosen[0]}' is a {rows[chosen[0]]} row of the tables in {path}, "
                          "not a method that can run; remove it")
    return {m: spec for m, spec in methods.items() if m not in rows}


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:8]


class Plan:
    def __init__(self, config: dict[str, Any]):
        from unidad.stages import stage_registry

        self.config = config
        try:
            self.stages_registry = stage_registry(config.get("plugins", []))
        except ImportError as err:
            raise ConfigError(str(err)) from None
        self.methods_path = methods_path(config)
        self.methods_def = load_methods(config)
        self.root = Path(config["results_dir"]) / config["benchmark"]
        self.runs: dict[str, StageRun] = {}
        self.method_runs: list[MethodRun] = []
        self.teacher_slug: str | None = None
        self._add_teacher()
        for method in config["methods"]:
            if method not in self.methods_def:
                raise ConfigError(
                    f"unknown method '{method}' in config key methods; known methods: {', '.join(sorted(self.methods_def))}"
                )
        for target in config["targets"]:
            for shots in config["shots"]:
                for method in config["methods"]:
                    for seed in config["seeds"]:
                        self._add_method_run(target, shots, method, seed)
        for method, ablation, spec, targets, shot_counts in expand_ablations(config, self.methods_def):
            for target in targets:
                for shots in shot_counts:
                    for seed in config["seeds"]:
                        self._add_method_run(target, shots, method, seed, spec, ablation)

    # -- paths ----------------------------------------------------------------------------------
    def path(self, name: str, **fields: Any) -> Path:
        """An output of the DAG: `PATHS[name]` under the benchmark's results folder. Steps are formatted
        as the rules' `{step}` wildcard (8 digits)."""
        if "step" in fields and isinstance(fields["step"], int):
            fields["step"] = f"{fields['step']:08d}"
        if "end" in fields and isinstance(fields["end"], int):
            fields["end"] = f"{fields['end']:08d}"
        return self.root / PATHS[name].format(**fields)

    def run_dir(self, slug: str) -> Path:
        return self.path("run_dir", slug=slug)

    def final_weights(self, slug: str) -> Path:
        run = self.runs[slug]
        return self.checkpoint_weights(slug, run.checkpoint_steps[-1])

    def checkpoint_weights(self, slug: str, step: int) -> Path:
        return checkpoint_weights_file(self.run_dir(slug), step)

    def summary(self, slug: str) -> Path:
        return self.path("summary", slug=slug)

    def segment_ends(self, slug: str) -> list[int]:
        """Where the jobs of a segmented run stop (config `segment_iters`); the last is the end of
        training. One job per stage when segment_iters is 0."""
        total = self.runs[slug].params["iterations"]
        size = int(self.config.get("segment_iters", 0))
        if size <= 0 or size >= total:
            return [total]
        return list(range(size, total, size)) + [total]

    def segment_marker(self, slug: str, end: int) -> Path:
        return self.path("segment_marker", slug=slug, end=end)

    def trained_until(self, slug: str, step: int) -> Path:
        """The file whose existence means checkpoint `step` of `slug` exists: the marker of the
        segment that reaches it, or the summary for the last segment."""
        ends = self.segment_ends(slug)
        end = next(e for e in ends if e >= step)
        return self.summary(slug) if end == ends[-1] else self.segment_marker(slug, end)

    def source_weights(self) -> Path:
        return self.path("source_weights")

    def dataset_dir(self, dataset: str, split: str, shots: int | None = None) -> Path:
        """Folder of a dataset split as the DAG writes (demo) or as the config names (folder)."""
        d = self.config["datasets"][dataset]
        if d["kind"] == "folder":
            key = FOLDER_KEYS[split]
            if key not in d:
                raise ConfigError(f"config key datasets.{dataset}.{key} is needed for the {split} split")
            return Path(d[key])
        return self.path("demo_split", dataset=dataset, split=f"k{shots}" if split == "shots" else split)

    # -- building ----------------------------------------------------------------------------------

    def stage_config(self, stage_id: str, params: dict[str, Any], where: str, dataset: str | None = None):
        """Options of one stage run: stage defaults < stage_params < datasets.<dataset>.stage_params
        < the method's (and ablation's) params."""
        try:
            cls = self.stages_registry.get(stage_id)
        except UnknownNameError as e:
            raise ConfigError(f"{where}{e}") from None
        merged = dict(self.config.get("stage_params", {}).get(stage_id, {}))
        if dataset is not None:
            merged.update(self.config["datasets"].get(dataset, {}).get("stage_params", {}).get(stage_id, {}))
        merged.update(params or {})
        try:
            cfg = cls.config_cls.from_dict(merged, where=where)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return cls, cfg

    def _add_teacher(self) -> None:
        src = self.config["source"]
        if src["kind"] != "pretrain":
            return
        cls, cfg = self.stage_config("pretrain", src["params"], "config key source.params: ")
        data_spec = {"dataset": src["dataset"], "split": "train", "shots": None}
        # The name changes with anything that changes the teacher, so a new teacher retrains every
        # run that starts from it instead of silently mixing with results of the old one.
        ident = ["pretrain", cfg.to_dict(), data_spec, self._data_identity(src["dataset"]), src["seed"],
                 self.config["backbone"]]
        self.teacher_slug = f"{TEACHER_PREFIX}-{_hash(ident)}"
        run = StageRun(
            slug=self.teacher_slug, stage="pretrain", params=cfg.to_dict(), data=data_spec,
            roles={}, seed=src["seed"], product_module=cls.product_module(cfg),
            sampling=self.teacher_sampling,
            checkpoint_steps=cfg.checkpoint_steps(), stage_name="teacher", shared=True,
        )
        self.runs[run.slug] = run

    @property
    def teacher_sampling(self) -> dict[str, Any]:
        """The source teacher's many-step sampler (with its CFG scale on a text-conditioned backbone)."""
        src = self.config["source"]
        guidance = float(src.get("sample_guidance", 1.0))
        return {"kind": "many_step", "sampler": "euler", "steps": src["sample_steps"]} | (
            {"guidance": guidance} if guidance != 1.0 else {})

    def _data_identity(self, dataset: str) -> dict[str, Any]:
        entry = self.config["datasets"].get(dataset, {})
        return {k: entry[k] for k in _TRAINING_DATA_KEYS if k in entry}

    @cached_property
    def source_identity(self) -> Any:
        """What the role `source` means: the pretrained teacher's run, or the staged weights."""
        if self.teacher_slug is not None:
            return self.teacher_slug
        return [self.config["source"]["kind"], self.config["source"]["weights"], self.config["backbone"]]

    def _add_method_run(self, target: str, shots: int, method: str, seed: int, spec: dict[str, Any] | None = None,
                        ablation: Ablation | None = None) -> None:
        spec = self.methods_def[method] if spec is None else spec
        mr = MethodRun(target, shots, method, seed, [], ablation)
        stages = spec.get("stages") if isinstance(spec, dict) else None
        if not stages:
            raise ConfigError(f"method '{mr.label}' has no stages (methods file entry needs 'stages: [...]')")
        slugs_by_name: dict[str, str] = {}
        slugs: list[str] = []
        for i, st in enumerate(stages):
            where = f"method '{mr.label}' stage {i + 1}: "
            st = dict(st)
            stage_id = st.pop("stage", None)
            if stage_id is None:
                raise ConfigError(f"{where}missing 'stage' (the stage kind, e.g. ft, dmd2, unidad)")
            name = st.pop("name", stage_id)
            data = st.pop("data", "target")
            if data not in ("source", "target"):
                raise ConfigError(f"{where}data must be 'source' or 'target', got {data!r}")
            dataset = self.config["source"]["dataset"] if data == "source" else target
            params = st.pop("params", {}) or {}
            if not isinstance(st.pop("why", ""), str):  # documentation of the weights' origins only
                raise ConfigError(f"{where}'why' must be text (where each weight comes from and why)")
            cls, cfg = self.stage_config(stage_id, params, where, dataset)
            roles: dict[str, str] = {}
            for role in cls.roles:
                ref = st.pop(role, SOURCE)
                if ref == SOURCE:
                    roles[role] = SOURCE
                elif ref in slugs_by_name:
                    roles[role] = slugs_by_name[ref]
                elif isinstance(ref, str) and (ref.endswith(".safetensors") or "/" in ref):
                    roles[role] = f"file:{ref}"
                else:
                    raise ConfigError(
                        f"{where}role '{role}' refers to '{ref}', which is neither 'source', an earlier stage "
                        f"({', '.join(slugs_by_name) or 'none'}) nor a .safetensors path"
                    )
            if st:
                raise ConfigError(
                    f"{where}unknown key(s) {sorted(st)}; a stage takes stage, name, data, params, why and its roles "
                    f"({', '.join(cls.roles) or 'none'})"
                )
            depends_on_target = data == "target" or any(
                r in self.runs and not self.runs[r].shared for r in roles.values()
            )
            if data == "source":
                data_spec = {"dataset": dataset, "split": "train", "shots": None}
            else:
                data_spec = {"dataset": dataset, "split": "shots", "shots": shots}
            # Runs are named by what they compute, not by the method that asked: identical stages
            # (e.g. the fine-tune shared by ft, ft_dmd2 and unidad_pre) train once.
            scope = f"{target}-k{shots}" if depends_on_target else "shared"
            slug = f"{scope}__{stage_id}-{_hash([stage_id, cfg.to_dict(), roles, data_spec, self._data_identity(dataset), self.source_identity])}__seed{seed}"
            sampling = cls.sampling_of(cfg)
            run = StageRun(
                slug=slug, stage=stage_id, params=cfg.to_dict(), data=data_spec, roles=roles, seed=seed,
                product_module=cls.product_module(cfg), sampling=sampling,
                checkpoint_steps=cfg.checkpoint_steps(),
                method=None if not depends_on_target else mr.label,
                target=target if depends_on_target else None,
                shots=shots if depends_on_target else None,
                stage_name=name, shared=not depends_on_target,
            )
            self.runs.setdefault(slug, run)
            slugs_by_name[name] = slug
            slugs.append(slug)
        mr.stages = slugs
        self.method_runs.append(mr)

    # -- evaluation units ---------------------------------------------------------------------------
    @cached_property
    def eval_units(self) -> list[EvalUnit]:
        """Every (method run, checkpoint, NFE, noise correction) the tables report (unidad.eval_units)."""
        return expand_eval_units(self.method_runs, self.runs, self.config["evaluation"], self.method_nfe)

    def method_nfe(self, slug: str) -> int:
        from unidad.sampling import sampling_nfe  # x2 for a many-step sampler with CFG (DreamBooth: 2x50)

        return sampling_nfe(self.runs[slug].sampling)

    def checkpoint_nfes(self, slug: str, step: int) -> list[int]:
        """NFEs sampled at one checkpoint: the method's own, plus the sweep at the last checkpoint."""
        return sorted({u.nfe for u in self.eval_units if u.slug == slug and u.step == step and not u.noise_correction})

    def corrected_nfes(self, slug: str, step: int) -> list[int]:
        """NFEs sampled with noise correction at one checkpoint (config evaluation.noise_correction)."""
        return sorted({u.nfe for u in self.eval_units if u.slug == slug and u.step == step and u.noise_correction})

    @cached_property
    def eval_checkpoints(self) -> list[tuple[str, int]]:
        """Every (run, step) that is sampled once and measured once (for all its NFEs)."""
        return sorted({(u.slug, u.step) for u in self.eval_units})

    def role_weights(self, run: StageRun) -> dict[str, tuple[str, str]]:
        """role -> (weights file, module inside it), for the stage runner."""
        out = {}
        for role, ref in run.roles.items():
            if ref == SOURCE:
                out[role] = (str(self.source_weights()), "model")
            elif ref.startswith("file:"):
                out[role] = (ref[5:], "model")
            else:
                out[role] = (str(self.final_weights(ref)), self.runs[ref].product_module)
        return out

    def upstream_files(self, slug: str) -> list[str]:
        """Files whose existence means every input weight of `slug` is ready: the source teacher
        file and the summary.json of each upstream run (written last, when its training completes)."""
        files = set()
        for ref in self.runs[slug].roles.values():
            if ref == SOURCE:
                files.add(str(self.source_weights()))
            elif ref.startswith("file:"):
                files.add(ref[5:])
            else:
                files.add(str(self.summary(ref)))
        return sorted(files)

    # -- scalars and paths the jobs are given ---------------------------------------------------
    @cached_property
    def image_size(self) -> int:
        from unidad.backbones import backbone_image_size

        return backbone_image_size(self.config["backbone"])

    @cached_property
    def backbone(self) -> dict[str, Any]:
        """config `backbone` as the jobs build it: with `vae_fit`, params.vae_dir is the VAE the DAG fits
        (rule demo_vae). The config's own entry (not this) names the teacher, so its identity does not
        depend on where the results folder is."""
        backbone = dict(self.config["backbone"])
        if backbone.get("vae_fit"):
            backbone["params"] = {**backbone.get("params", {}), "vae_dir": str(self.path("demo_vae"))}
        return backbone

    def has_split(self, dataset: str, split: str) -> bool:
        """Whether a dataset has a split: the DAG writes every split of a demo dataset; a staged folder
        dataset has the splits the config names (a missing val split means no best-val selection)."""
        d = self.config["datasets"][dataset]
        if d["kind"] == "demo_subject":
            return split == "shots"
        return d["kind"] in DAG_WRITTEN_KINDS or FOLDER_KEYS[split] in d

    def demo_subject(self, dataset: str) -> str | None:
        """The text-conditioned demo's subject of a dataset (its oracle), or None."""
        d = self.config["datasets"][dataset]
        return d["subject"] if d["kind"] == "demo_subject" else None

    def demo_domain(self, dataset: str) -> str | None:
        """The demo domain of a dataset (its oracle), or None for a staged folder."""
        d = self.config["datasets"][dataset]
        return d["domain"] if d["kind"] == "demo" else None

    def run_dataset(self, slug: str) -> str:
        """The dataset a run is evaluated on: its target, or its training data for shared runs."""
        run = self.runs[slug]
        return run.target or run.data["dataset"]

    def sample_seeds(self, n: int | None = None) -> list[int]:
        ev = self.config["evaluation"]
        return [ev["sample_seed_offset"] + i for i in range(ev["n_samples"] if n is None else n)]

    def reference_file(self, dataset: str, split: str) -> Path:
        return self.path("reference", dataset=dataset, split=split, extractor=self.config["evaluation"]["extractor"])

    def metric_file(self, slug: str, step: int, metric: str) -> Path:
        return self.path("metric", slug=slug, step=step, metric=metric)

    def samples_file(self, slug: str, step: int) -> Path:
        return self.path("samples", slug=slug, step=step)
