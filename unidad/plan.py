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
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from unidad.config import PROJECT_ROOT, ConfigError
from unidad.registry import UnknownNameError

SOURCE = "source"
TEACHER_PREFIX = "source__teacher"
# The ablation parameter that changes the number of training shots rather than a stage option.
SHOTS_PARAM = "shots"
# dataset options that change what a stage trains on (sizes of evaluation splits do not)
_TRAINING_DATA_KEYS = ("kind", "domain", "seed", "train_size", "path", "on_wrong_size")


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
    method: str
    seed: int
    stages: list[str]  # slugs, in order

    @property
    def final(self) -> str:
        return self.stages[-1]

    @property
    def key(self) -> str:
        return f"{self.target}-k{self.shots}__{self.method}__seed{self.seed}"


@dataclass
class EvalUnit:
    """One sample set: a checkpoint of a method's final stage sampled at one NFE."""

    method_run: MethodRun
    slug: str
    step: int
    nfe: int
    final: bool

    @property
    def name(self) -> str:
        return f"step{self.step:08d}_nfe{self.nfe}"


def load_methods(config: dict[str, Any]) -> dict[str, Any]:
    path = Path(config["methods_file"])
    if not path.is_absolute() and not path.exists():
        path = PROJECT_ROOT / path
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
        import baselines  # noqa: F401  (registers the baseline stages)
        from unidad.stages import STAGES

        self.config = config
        self.stages_registry = STAGES
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
        for variant, (targets, shot_counts) in self._ablation_variants().items():
            for target in targets:
                for shots in shot_counts:
                    for seed in config["seeds"]:
                        self._add_method_run(target, shots, variant, seed)

    # -- paths ----------------------------------------------------------------------------------
    def run_dir(self, slug: str) -> Path:
        return self.root / "runs" / slug

    def final_weights(self, slug: str) -> Path:
        run = self.runs[slug]
        return self.checkpoint_weights(slug, run.checkpoint_steps[-1])

    def checkpoint_weights(self, slug: str, step: int) -> Path:
        return self.run_dir(slug) / "checkpoints" / f"step{step:08d}" / "weights.safetensors"

    def summary(self, slug: str) -> Path:
        return self.run_dir(slug) / "summary.json"

    def segment_ends(self, slug: str) -> list[int]:
        """Where the jobs of a segmented run stop (config `segment_iters`); the last is the end of
        training. One job per stage when segment_iters is 0."""
        total = self.runs[slug].params["iterations"]
        size = int(self.config.get("segment_iters", 0))
        if size <= 0 or size >= total:
            return [total]
        return list(range(size, total, size)) + [total]

    def segment_marker(self, slug: str, end: int) -> Path:
        return self.run_dir(slug) / "segments" / f"until{end:08d}.done"

    def trained_until(self, slug: str, step: int) -> Path:
        """The file whose existence means checkpoint `step` of `slug` exists: the marker of the
        segment that reaches it, or the summary for the last segment."""
        ends = self.segment_ends(slug)
        end = next(e for e in ends if e >= step)
        return self.summary(slug) if end == ends[-1] else self.segment_marker(slug, end)

    def source_weights(self) -> Path:
        return self.root / "source_teacher" / "weights.safetensors"

    def dataset_dir(self, dataset: str, split: str, shots: int | None = None) -> Path:
        """Folder of a dataset split as the DAG writes (demo) or as the config names (folder)."""
        d = self.config["datasets"][dataset]
        if d["kind"] == "folder":
            key = {"shots": "path", "train": "path", "full": "full_path", "val": "val_path"}[split]
            if key not in d:
                raise ConfigError(f"config key datasets.{dataset}.{key} is needed for the {split} split")
            return Path(d[key])
        sub = f"k{shots}" if split == "shots" else split
        return self.root / "data" / dataset / sub

    # -- building ----------------------------------------------------------------------------------
    def _ablation_variants(self) -> dict[str, tuple[list[str], list[int]]]:
        """Adds a method per ablation value ("<method>@<label>=<value>"); returns variant -> (targets,
        shot counts). The parameter `shots` is not a stage option: its variants are the unchanged
        method trained on that many shots of the target (the paper's 1/5/10-shot ablation)."""
        import copy

        variants: dict[str, tuple[list[str], list[int]]] = {}
        for i, ab in enumerate(self.config.get("ablations", [])):
            where = f"config key ablations[{i}]: "
            base = ab["method"]
            if base not in self.methods_def:
                raise ConfigError(f"{where}unknown method '{base}'; known methods: {', '.join(sorted(self.methods_def))}")
            stages = self.methods_def[base]["stages"]
            names = [st.get("name", st["stage"]) for st in stages]
            stage_name = ab.get("stage") or names[-1]
            if stage_name not in names:
                raise ConfigError(f"{where}method '{base}' has no stage '{stage_name}' (its stages: {names})")
            label = ab.get("label") or ab["param"]
            targets = ab.get("targets") or list(self.config["targets"])
            for t in targets:
                if t not in self.config["datasets"]:
                    raise ConfigError(f"{where}target '{t}' is not under datasets")
            if ab["param"] == SHOTS_PARAM:
                self._check_shots_ablation(ab["values"], targets, where)
            for value in ab["values"]:
                spec = copy.deepcopy(self.methods_def[base])
                if ab["param"] == SHOTS_PARAM:
                    shot_counts = [int(value)]
                else:
                    st = spec["stages"][names.index(stage_name)]
                    st["params"] = {**(st.get("params") or {}), ab["param"]: value}
                    shot_counts = list(self.config["shots"])
                name = f"{base}@{label}={value}"
                spec["description"] = f"{base} with {ab['param']}={value} (ablation '{label}')"
                self.methods_def[name] = spec
                variants[name] = (targets, shot_counts)
        return variants

    def _check_shots_ablation(self, values: list[Any], targets: list[str], where: str) -> None:
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where}shots values must be positive integers, got {value!r}")
        for t in targets:
            if self.config["datasets"][t]["kind"] != "demo":
                raise ConfigError(
                    f"{where}a shots ablation draws k shots of a demo domain; target '{t}' is a folder dataset, "
                    f"whose shots are the images in its folder: add one dataset entry per shot count instead"
                )

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
            slug=self.teacher_slug, stage="pretrain", params=cfg.to_dict(),
            data=data_spec,
            roles={}, seed=src["seed"], product_module=cls.product_module(cfg),
            sampling={"kind": "many_step", "sampler": "euler", "steps": src["sample_steps"]},
            checkpoint_steps=cfg.checkpoint_steps(), stage_name="teacher", shared=True,
        )
        self.runs[run.slug] = run

    def _data_identity(self, dataset: str) -> dict[str, Any]:
        entry = self.config["datasets"].get(dataset, {})
        return {k: entry[k] for k in _TRAINING_DATA_KEYS if k in entry}

    @cached_property
    def source_identity(self) -> Any:
        """What the role `source` means: the pretrained teacher's run, or the staged weights."""
        if self.teacher_slug is not None:
            return self.teacher_slug
        return [self.config["source"]["kind"], self.config["source"]["weights"], self.config["backbone"]]

    def _add_method_run(self, target: str, shots: int, method: str, seed: int) -> None:
        spec = self.methods_def[method]
        stages = spec.get("stages") if isinstance(spec, dict) else None
        if not stages:
            raise ConfigError(f"method '{method}' has no stages (methods file entry needs 'stages: [...]')")
        slugs_by_name: dict[str, str] = {}
        slugs: list[str] = []
        for i, st in enumerate(stages):
            where = f"method '{method}' stage {i + 1}: "
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
                    f"{where}unknown key(s) {sorted(st)}; a stage takes stage, name, data, params and its roles "
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
                method=None if not depends_on_target else method,
                target=target if depends_on_target else None,
                shots=shots if depends_on_target else None,
                stage_name=name, shared=not depends_on_target,
            )
            self.runs.setdefault(slug, run)
            slugs_by_name[name] = slug
            slugs.append(slug)
        self.method_runs.append(MethodRun(target, shots, method, seed, slugs))

    # -- evaluation units ---------------------------------------------------------------------------
    @cached_property
    def eval_units(self) -> list[EvalUnit]:
        """Every (method run, checkpoint, NFE) the tables report; several may share one sample set."""
        ev = self.config["evaluation"]
        units = []
        for mr in self.method_runs:
            run = self.runs[mr.final]
            nfe = self.method_nfe(mr.final)
            last = run.checkpoint_steps[-1]
            for step in run.checkpoint_steps:
                units.append(EvalUnit(mr, mr.final, step, nfe, step == last))
            if run.sampling["kind"] == "few_step":
                for k in ev["nfe_sweep"]:
                    if k != nfe:
                        units.append(EvalUnit(mr, mr.final, last, k, True))
        return units

    def method_nfe(self, slug: str) -> int:
        s = self.runs[slug].sampling
        if s["kind"] == "few_step":
            return int(s["steps"])
        from unidad.edm import nfe_of

        return nfe_of(s["sampler"], int(s["steps"]))

    def eval_dir(self, slug: str, step: int) -> Path:
        # keyed by the run, not the method: methods that end in the same run share its samples
        return self.root / "eval" / slug / f"step{step:08d}"

    def checkpoint_nfes(self, slug: str, step: int) -> list[int]:
        """NFEs sampled at one checkpoint: the method's own, plus the sweep at the last checkpoint."""
        return sorted({u.nfe for u in self.eval_units if u.slug == slug and u.step == step})

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
