"""Evaluation jobs: sample a checkpoint, reference statistics, one metric per job, the tidy table.

Every number written here carries its metric id, protocol variant, extractor id and weights SHA-256,
the numbers of generated and reference images and the checkpoint it came from (metrics.md).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from unidad.plan import Plan
from unidad.runner import log, plan_image_size, sample_product, set_threads, write_json_atomic

FEATURE_METRICS = ("fid", "kid", "prdc")
KNOWN_METRICS = ("fid", "kid", "prdc", "intra_lpips", "oracle", "speed")


def check_metric_names(names) -> None:
    unknown = [m for m in names if m not in KNOWN_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown} in evaluation.metrics; known metrics: {', '.join(KNOWN_METRICS)}")


# ----------------------------------------------------------------------------------- extractors
def extractor_file(plan: Plan) -> Path:
    return plan.root / "extractors" / "demo-cnn.safetensors"


def needs_demo_extractor(config: dict[str, Any]) -> bool:
    ev = config["evaluation"]
    return ev["extractor"] == "demo" or ev["lpips"] == "demo"


def train_extractor(config: dict[str, Any], out: Path, threads=None) -> dict:
    from unidad.metrics.demo_extractor import train_demo_extractor

    set_threads(threads)
    params = dict(config["evaluation"].get("extractor_train") or {})
    return train_demo_extractor(out, image_size=plan_image_size(config), log=log, **params)


def load_extractor(config: dict[str, Any]):
    name = config["evaluation"]["extractor"]
    if name == "demo":
        from unidad.metrics.demo_extractor import DemoFeatureExtractor

        return DemoFeatureExtractor(extractor_file(Plan(config)))
    if name == "inception":
        from unidad.metrics.extractors import InceptionV3Extractor
        from unidad.weights import resolve

        return InceptionV3Extractor(resolve("inception_v3_tf"))
    raise ValueError(f"evaluation.extractor '{name}' is unknown; use demo or inception")


def load_distance(config: dict[str, Any]):
    name = config["evaluation"]["lpips"]
    if name == "demo":
        from unidad.metrics.demo_extractor import DemoPerceptualDistance

        d = DemoPerceptualDistance(extractor_file(Plan(config)))
        return d, {"id": d.id, "weights_sha256": getattr(d, "weights_sha256", "")}
    if name == "vgg":
        from unidad.metrics.intra_lpips import lpips_vgg_distance

        fn = lpips_vgg_distance()
        prov = getattr(fn, "provenance", {})
        return fn, {"id": "lpips-vgg-v0.1", **(prov if isinstance(prov, dict) else {"provenance": str(prov)})}
    raise ValueError(f"evaluation.lpips '{name}' is unknown; use demo or vgg")


def reference_file(plan: Plan, dataset: str, split: str) -> Path:
    ext = plan.config["evaluation"]["extractor"]
    return plan.root / "reference" / dataset / f"{split}_{ext}.npz"


def reference_statistics(config: dict[str, Any], dataset: str, split: str, out: Path, threads=None) -> None:
    """Features, mean and covariance of a dataset split, resized to the working resolution first
    (PIL bilinear), cached with the extractor's id and weights hash."""
    from unidad.data.folders import load_image_folder
    from unidad.metrics.frechet import feature_statistics

    set_threads(threads)
    plan = Plan(config)
    folder = plan.dataset_dir(dataset, split)
    size = plan_image_size(config)
    images = load_image_folder(folder, image_size=size, on_wrong_size="resize")
    if split == "full":
        images = images[:5000]  # metrics.md: the first 5000 files in sorted order
    extractor = load_extractor(config)
    feats = extractor(images)
    mu, sigma = feature_statistics(feats)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.npz")
    np.savez(tmp, features=feats, mu=mu, sigma=sigma, extractor=extractor.id,
             extractor_sha256=extractor.weights_sha256, resize_protocol=str(extractor.resize_protocol),
             n=len(feats), folder=str(folder), image_size=size)
    os.replace(tmp, out)
    log(f"[reference] {dataset}/{split}: {len(feats)} images -> {out}")


def _load_reference(path: Path, extractor) -> dict[str, Any]:
    ref = dict(np.load(path, allow_pickle=False))
    if str(ref["extractor_sha256"]) != extractor.weights_sha256:
        raise ValueError(f"reference statistics {path} were made with other extractor weights "
                         f"({str(ref['extractor_sha256'])[:12]} vs {extractor.weights_sha256[:12]}); delete it to recompute")
    return ref


# ------------------------------------------------------------------------------------- sampling
def sample_checkpoint(config: dict[str, Any], slug: str, step: int, out_npz: Path, out_grid: Path,
                      threads=None) -> None:
    """Samples one checkpoint at every NFE the plan asks of it into one file (uint8 images per NFE,
    the same per-image seeds for every NFE and every method)."""
    from unidad.imageio import save_grid

    plan = Plan(config)
    run = plan.runs[slug]
    ev = config["evaluation"]
    seeds = [ev["sample_seed_offset"] + i for i in range(ev["n_samples"])]
    weights = plan.checkpoint_weights(slug, step)
    arrays: dict[str, Any] = {}
    timings, samplings = {}, {}
    for nfe in plan.checkpoint_nfes(slug, step):
        sampling = dict(run.sampling)
        if sampling["kind"] == "few_step":
            sampling["steps"] = nfe
        images, timing = sample_product(config, weights, run.product_module, sampling, seeds, ev["batch_size"], threads)
        arrays[f"images_nfe{nfe}"] = images
        timings[nfe], samplings[nfe] = timing, sampling
        if nfe == plan.method_nfe(slug):
            save_grid(images[:64], out_grid, nrow=8)
    out_npz = Path(out_npz)
    out_npz.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_npz.with_name(out_npz.stem + ".tmp.npz")
    # uint8 and lossless: the same values PNG files would hold
    np.savez_compressed(tmp, seeds=np.asarray(seeds), timing=json.dumps(timings), sampling=json.dumps(samplings),
                        checkpoint=str(weights), step=step, **arrays)
    os.replace(tmp, out_npz)


def _load_samples(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


# -------------------------------------------------------------------------------------- metrics
def compute_metrics(config: dict[str, Any], slug: str, step: int, samples: Path, outputs: dict[str, Path],
                    threads=None) -> None:
    """Every configured metric of one checkpoint (all its NFEs), one JSON per metric.

    A metric already computed for these exact samples and protocol is restored from a cache next to
    the samples instead of recomputed, so adding a metric to the config computes only that metric."""
    set_threads(threads)
    check_metric_names(list(outputs))
    samples = Path(samples)
    cache_dir = samples.parent / ".metric_cache"
    cache_dir.mkdir(exist_ok=True)
    from unidad.checkpoint import sha256_file

    samples_hash = sha256_file(samples)
    ctx = _MetricContext(config, slug, samples)
    for metric, out in outputs.items():
        protocol = ctx.protocol(metric)
        cached = cache_dir / f"{metric}.json"
        if cached.exists():
            rec = json.loads(cached.read_text())
            if rec.get("samples_sha256") == samples_hash and rec.get("protocol") == protocol:
                write_json_atomic(Path(out), rec)
                log(f"[metrics] {metric}: up to date for these samples (cache)")
                continue
        rec = {"metric": metric, "slug": slug, "step": step, "checkpoint": ctx.checkpoint,
               "samples_sha256": samples_hash, "protocol": protocol, "per_nfe": {}}
        for nfe, images in ctx.images.items():
            rec["per_nfe"][str(nfe)] = ctx.compute(metric, nfe, images)
        write_json_atomic(cached, rec)
        write_json_atomic(Path(out), rec)
        log(f"[metrics] {metric}: computed for NFE {sorted(ctx.images)}")


class _MetricContext:
    """Inputs shared by the metrics of one checkpoint, loaded lazily once."""

    def __init__(self, config: dict[str, Any], slug: str, samples: Path):
        self.config, self.slug = config, slug
        self.plan = Plan(config)
        self.run = self.plan.runs[slug]
        self.dataset = self.run.target or self.run.data["dataset"]
        s = _load_samples(samples)
        self.checkpoint = str(s["checkpoint"])
        self.timing = json.loads(str(s["timing"]))
        self.images = {int(k[len("images_nfe"):]): v for k, v in s.items() if k.startswith("images_nfe")}
        self._extractor = self._distance = None

    @property
    def extractor(self):
        if self._extractor is None:
            self._extractor = load_extractor(self.config)
        return self._extractor

    @property
    def distance(self):
        if self._distance is None:
            self._distance = load_distance(self.config)
        return self._distance

    def protocol(self, metric: str) -> dict[str, Any]:
        """What a number depends on besides the samples (a change invalidates the cache)."""
        ev = self.config["evaluation"]
        if metric in FEATURE_METRICS:
            ref = reference_file(self.plan, self.dataset, "full")
            return {"extractor": ev["extractor"], "reference": str(ref),
                    "reference_mtime": ref.stat().st_mtime if ref.exists() else None}
        if metric == "intra_lpips":
            return {"lpips": ev["lpips"], "variant": ev["intra_lpips_variant"], "shots": self.run.shots}
        return {}

    def compute(self, metric: str, nfe: int, images: np.ndarray) -> dict[str, Any]:
        config, plan, run, dataset = self.config, self.plan, self.run, self.dataset
        record: dict[str, Any] = {"n_generated": int(len(images)), "variant": "", "extractor": "",
                                  "extractor_sha256": "", "n_reference": 0, "values": {}, "values_val": {},
                                  "params": {}}
        if metric in FEATURE_METRICS:
            extractor = self.extractor
            gen = extractor(images)
            test = _load_reference(reference_file(plan, dataset, "full"), extractor)
            val_path = reference_file(plan, dataset, "val")
            record.update(extractor=extractor.id, extractor_sha256=extractor.weights_sha256,
                          variant=str(extractor.resize_protocol), n_reference=int(test["n"]))
            record["values"] = _feature_metric(metric, test, gen)
            if val_path.exists():
                val = _load_reference(val_path, extractor)
                record["values_val"] = _feature_metric(metric, val, gen)
                record["n_reference_val"] = int(val["n"])
        elif metric == "intra_lpips":
            import torch

            from unidad.data.folders import load_image_folder
            from unidad.imageio import to_float_nchw
            from unidad.metrics.intra_lpips import intra_lpips

            variant = config["evaluation"]["intra_lpips_variant"]
            dist, prov = self.distance
            shots = load_image_folder(plan.dataset_dir(dataset, "shots", run.shots or max(config["shots"])),
                                      shots=run.shots, image_size=plan_image_size(config))
            res = intra_lpips(torch.from_numpy(to_float_nchw(images)), torch.from_numpy(to_float_nchw(shots)), dist,
                              variant=variant)
            record.update(variant=variant, extractor=prov["id"], extractor_sha256=prov.get("weights_sha256", ""),
                          n_reference=int(len(shots)))
            record["values"] = {"intra_lpips": float(res["value"])}
            record["params"] = {k: v for k, v in res.items() if k != "value"}
        elif metric == "oracle":
            from unidad.data.domains import oracle_report

            d = config["datasets"][dataset]
            if d["kind"] != "demo":
                record["params"] = {"skipped": f"dataset {dataset} has no oracle (not a demo domain)"}
            else:
                rep = oracle_report(images, d["domain"])
                record.update(variant="rule-based", extractor=f"oracle:{d['domain']}")
                record["values"] = {"oracle_in_domain": rep["in_domain_rate"],
                                    "oracle_mode_coverage": rep["mode_coverage"], "oracle_tv": rep["tv_distance"]}
                record["params"] = {"mode_histogram": rep["mode_histogram"], "true_histogram": rep["true_histogram"],
                                    "modes": rep["modes"], "rule_pass_rates": rep["rule_pass_rates"]}
        elif metric == "speed":
            timing = self.timing[str(nfe)]
            record.update(variant=f"device={timing['device']},batch={timing['batch_size']}")
            record["values"] = {"speed_images_per_s": timing["images_per_second"],
                                "speed_s_per_image": timing["seconds_per_image"], "speed_nfe": float(timing["nfe"])}
        return record


def _feature_metric(metric: str, ref: dict[str, Any], gen: np.ndarray) -> dict[str, float]:
    from unidad.metrics.frechet import feature_statistics, frechet_distance

    if metric == "fid":
        mu, sigma = feature_statistics(gen)
        return {"fid": frechet_distance(ref["mu"], ref["sigma"], mu, sigma)}
    if metric == "kid":
        from unidad.metrics.kid import kid_from_features

        size = min(1000, len(gen), len(ref["features"]))
        mean, std = kid_from_features(ref["features"], gen, subsets=100, subset_size=size)
        return {"kid": float(mean), "kid_std": float(std)}
    from unidad.metrics.prdc import prdc

    n = min(len(ref["features"]), len(gen))
    res = prdc(ref["features"][:n], gen, k=5)
    return {f"prdc_{k}": float(v) for k, v in res.items()}


def mirror_to_tracker(config: dict[str, Any], tidy) -> int:
    """Step-indexed copies of every evaluation number in its training run's MLflow entry.

    Done once per DAG run over the tidy table (opening an MLflow client costs seconds, too much
    for each of hundreds of metric jobs). Files stay the source of truth; tracking errors only warn.
    Returns the number of runs updated."""
    if config["tracking"]["kind"] == "none" or tidy.empty:
        return 0
    from unidad.tracking import tracker_for_run_dir

    plan = Plan(config)
    updated = 0
    rows = tidy[(tidy["selection"] == "all")] if "selection" in tidy else tidy
    for slug, group in rows.groupby("slug"):
        try:
            tracker = tracker_for_run_dir(plan.run_dir(slug))
            for step, at_step in group.groupby("step"):
                tracker.log_metrics({f"eval/{r.metric}/nfe{r.nfe}": float(r.value) for r in at_step.itertuples()},
                                    step=int(step))
            updated += 1
        except Exception as exc:
            log(f"[evaluate] warning: could not mirror metrics of {slug} to MLflow: {exc}")
    return updated


# ------------------------------------------------------------------------------------ tidy table
def metric_file(plan: Plan, slug: str, step: int, metric: str) -> Path:
    return plan.eval_dir(slug, step) / "metrics" / f"{metric}.json"


def samples_file(plan: Plan, slug: str, step: int) -> Path:
    return plan.eval_dir(slug, step) / "samples.npz"


def method_compute(plan: Plan, method_run, step: int | None = None) -> dict[str, float]:
    """The method's compute up to checkpoint `step` of its last stage: every earlier stage in full
    (shared stages counted in full: the method needs them) plus the last stage pro rata."""
    tot = {"iterations": 0, "images_seen": 0, "device_hours": 0.0, "wall_seconds": 0.0}
    stages = list(dict.fromkeys(method_run.stages))
    for slug in stages:
        s = json.loads(plan.summary(slug).read_text())
        share = 1.0
        if slug == stages[-1] and step is not None and s.get("step"):
            share = min(1.0, step / s["step"])
        tot["iterations"] += int(round(s["step"] * share))
        tot["images_seen"] += int(round(s["images_seen"] * share))
        tot["device_hours"] += s["device_hours"] * share
        tot["wall_seconds"] += s["wall_seconds"] * share
    return tot


def _tidy_row(config: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """One row of the tidy table: every column, with the defaults of a reference row (no run behind it)."""
    row = {
        "benchmark": config["benchmark"], "dataset": "", "shots": 0, "method": "", "stage": "", "seed": 0, "slug": "",
        "step": 0, "nfe": 0, "method_nfe": 0, "final": True, "split": "test", "metric": "", "variant": "",
        "extractor": "", "extractor_sha256": "", "value": float("nan"), "n_generated": 0, "n_reference": 0,
        "checkpoint": "", "iterations": 0, "images_seen": 0, "device_hours": 0.0, "wall_seconds": 0.0,
        "ablation": "", "ablation_param": "", "ablation_value": "",
    }
    unknown = set(fields) - set(row)
    if unknown:
        raise KeyError(f"not columns of the tidy table: {sorted(unknown)}")
    row.update(fields)
    return row


def ablation_columns(method: str) -> dict[str, str]:
    """'unidad@a=0.25' -> method unidad with ablation 'a=0.25' (param a, value 0.25)."""
    if "@" not in method:
        return {"method": method, "ablation": "", "ablation_param": "", "ablation_value": ""}
    base, ablation = method.split("@", 1)
    param, value = ablation.split("=", 1)
    return {"method": base, "ablation": ablation, "ablation_param": param, "ablation_value": value}


def collect_tidy(config: dict[str, Any]):
    """One row per measured number (tables.py reads nothing else)."""
    import pandas as pd

    plan = Plan(config)
    rows = []
    for unit in plan.eval_units:
        mr = unit.method_run
        run = plan.runs[unit.slug]
        compute = method_compute(plan, mr, unit.step)
        for metric in config["evaluation"]["metrics"]:
            top = json.loads(metric_file(plan, unit.slug, unit.step, metric).read_text())
            rec = top["per_nfe"][str(unit.nfe)]
            rec["checkpoint"] = top["checkpoint"]
            for split, values in (("test", rec["values"]), ("val", rec.get("values_val", {}))):
                for name, value in values.items():
                    rows.append(_tidy_row(
                        config, dataset=mr.target, shots=mr.shots, stage=run.stage, seed=mr.seed, slug=unit.slug,
                        step=unit.step, nfe=unit.nfe, method_nfe=plan.method_nfe(unit.slug), final=unit.final,
                        split=split, metric=name, variant=rec["variant"], extractor=rec["extractor"],
                        extractor_sha256=rec["extractor_sha256"], value=float(value), n_generated=rec["n_generated"],
                        n_reference=rec.get("n_reference_val" if split == "val" else "n_reference", rec["n_reference"]),
                        checkpoint=rec["checkpoint"], **compute, **ablation_columns(mr.method),
                    ))
    rows += _training_shots_rows(config, plan)
    return pd.DataFrame(rows)


def _training_shots_rows(config: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
    """The oracle's verdict on the k-shot training sets themselves: what a student that only
    reproduces its training images would score (mode coverage of the shots)."""
    from unidad.data.domains import oracle_report
    from unidad.data.folders import load_image_folder

    if "oracle" not in config["evaluation"]["metrics"]:
        return []
    rows = []
    teacher = json.loads((plan.root / "source_teacher" / "report.json").read_text())
    for target, rep in teacher.get("target_oracle", {}).items():
        for seed in config["seeds"]:
            for shots in config["shots"]:
                rows += _reference_rows(config, target, shots, seed, "source_teacher", rep,
                                        int(teacher["timing"]["nfe"]))
    for target in config["targets"]:
        d = config["datasets"][target]
        if d["kind"] != "demo":
            continue
        for shots in config["shots"]:
            images = load_image_folder(plan.dataset_dir(target, "shots", shots), shots=shots,
                                       image_size=plan_image_size(config))
            rep = oracle_report(images, d["domain"])
            for seed in config["seeds"]:
                rows += _reference_rows(config, target, shots, seed, "training_shots", rep, 0)
    return rows


def _reference_rows(config, target, shots, seed, method, rep, nfe) -> list[dict[str, Any]]:
    """Oracle rows of a reference (the k shots themselves, or the source teacher before adaptation)."""
    domain = config["datasets"][target]["domain"]
    return [_tidy_row(config, dataset=target, shots=shots, method=method, seed=seed, nfe=nfe, method_nfe=nfe,
                      metric=name, variant="rule-based", extractor=f"oracle:{domain}", value=float(value),
                      n_generated=rep["n"])
            for name, value in (("oracle_in_domain", rep["in_domain_rate"]),
                                ("oracle_mode_coverage", rep["mode_coverage"]), ("oracle_tv", rep["tv_distance"]))]


def with_selection(tidy):
    """Adds rows per checkpoint-selection rule. 'all' = every checkpoint; final = last; best_val =
    lowest FID on the validation split; best_test = lowest FID on the test reference (the official
    code's optimistic choice, flagged in every table that uses it). The checkpoint is chosen at the
    method's own NFE; a selection keeps every NFE evaluated at that checkpoint (the NFE sweep runs at
    the final one), so figures over NFE use the same selection as the tables."""
    import pandas as pd

    test = tidy[tidy["split"] == "test"].copy()
    test["selection"] = "all"
    out = [test]
    keys = ["benchmark", "dataset", "shots", "method", "ablation", "seed"]
    for sel in ("final", "best_val", "best_test"):
        picks = []
        for _, group in test.groupby(keys, sort=False):  # config order, which the tables keep
            g = group[group["nfe"] == group["method_nfe"]]
            own_nfe = int(g["nfe"].iloc[0])
            steps = sorted(g["step"].unique())
            if sel == "final":
                step = steps[-1]
            else:
                split = "val" if sel == "best_val" else "test"
                fid = tidy[(tidy["split"] == split) & (tidy["metric"] == "fid") & (tidy["slug"] == g["slug"].iloc[0])
                           & (tidy["nfe"] == own_nfe)]
                if fid.empty:
                    continue
                step = int(fid.loc[fid["value"].idxmin(), "step"])
            picked = group[group["step"] == step].copy()
            picked["selection"] = sel
            picks.append(picked)
        if picks:
            out.append(pd.concat(picks))
    return pd.concat(out, ignore_index=True)
