# Validation, wildcard constraints, and every rule's inputs and params: the plan (unidad.plan) computes
# each path and scalar here, and each rule's script hands them to one unidad.jobs function as they are.
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir)))

# A Snakemake that runs a job (`--mode remote`: under SLURM the plugin's sbatch -> snakemake -> srun ->
# snakemake -> script chain) ignores SIGUSR1. SLURM's `--signal=USR1@...` and `scancel --signal=USR1`
# signal every process of the job step; Snakemake has no handler for USR1, so it died at once, the
# trainer saving its checkpoint was orphaned (and killed with the step where the step's processes are
# tracked by cgroup), and its exit 75 reached nobody. Ignored signals stay ignored across exec: the job's
# script starts with USR1 ignored, and the training loop installs its own handler (SIGTERM needs nothing:
# Snakemake's own handler waits for the running job).
if workflow.remote_exec:
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)

import unidad.jobs.params as P
from unidad.config import ConfigError, validate_config
from unidad.job_requests import (
    CHECKPOINT_JOB,
    SIGNAL_LEAD_SECONDS,
    JobRequests,
    gpu_resources,
    request_mem_mb,
    request_minutes,
)
from unidad.metrics.registry import check_metric_names, metrics_needing
from unidad.jobs.teachers import sd15_unets
from unidad.paths import PATHS
from unidad.plan import DAG_WRITTEN_KINDS, Plan
from unidad.preflight import refuse_in_config
from unidad.standins import StandinError

try:
    validate_config(config)
    PLAN = Plan(config)
    check_metric_names(config["evaluation"]["metrics"])
    refuse_in_config(config)  # stand-in weights only in a rehearsal config
except (ConfigError, ValueError, StandinError) as err:
    raise WorkflowError(f"invalid config: {err}") from None

R = str(PLAN.root)
EV = config["evaluation"]
# manifest UNets the workflow turns into weights/<name>.safetensors (rule export_sd15_unet)
SD15_UNETS = sd15_unets()
METRICS = EV["metrics"]
# The report groups everything under the benchmark, so reports of several configs read apart.
REPORT_CATEGORY = f"Benchmark {config['benchmark']}"


def out(name):
    """A rule's output template: PATHS[name] under the results folder, wildcards left in braces."""
    return f"{R}/{PATHS[name]}"


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.-]+",
    split=r"train|full|val|k\d+",
    slug=r"[A-Za-z0-9_.-]+",
    end=r"\d{8}",
    step=r"\d{8}",
    extractor=r"[a-z0-9_-]+",


def resource_settings(kind):
    """Config `resources.<kind>` (gpus, cpus, mem_mb, runtime in minutes) over these defaults."""
    defaults = {
        "train": {"cpus": 2, "mem_mb": 4000, "runtime": 120, "gpus": 0},
        "sample": {"cpus": 2, "mem_mb": 4000, "runtime": 60, "gpus": 0},
        "evaluate": {"cpus": 2, "mem_mb": 4000, "runtime": 30, "gpus": 0},
        "small": {"cpus": 1, "mem_mb": 2000, "runtime": 15, "gpus": 0},
    }[kind]
    return {**defaults, **config.get("resources", {}).get(kind, {})}


# Every job's runtime and memory estimate, from the plan (unidad/job_requests.py).
REQUESTS = JobRequests(PLAN)


def resources_for(kind, name=None, grouped=False):
    """The rule resources of a kind, named as the SLURM executor reads them. GPUs and CPUs are the
    kind's (config `resources.<kind>`); GPUs as the config's `gpu_request` says (gpus or gres).

    With `name`, a rule that unidad.job_requests estimates, runtime and mem_mb are each job's own
    estimate, padded, grown with the attempt on a retry, and at most the config's `resources.<kind>`
    runtime / mem_mb where set; a group job then asks for the sum of its members' own runtimes (a
    `grouped` rule's jobs leave out the lead before SLURM's signal, which a job alone asks for).
    Without `name`, the kind's runtime and mem_mb as they are.

    `step_slot`: each job takes the one slot of a SLURM job (profiles/slurm: a pool of 1 per job), so
    Snakemake counts a group's members one after another, as the plugin runs them, also where the
    GPUs are asked for as gres."""
    s = resource_settings(kind)
    res = {"cpus": s["cpus"], "cpus_per_task": s["cpus"], **gpu_resources(s["gpus"], config["gpu_request"]),
           "step_slot": 1}
    if name is None:
        return {**res, "runtime": s["runtime"], "mem_mb": s["mem_mb"]}
    caps = config.get("resources", {}).get(kind, {})
    lead = 0 if grouped else SIGNAL_LEAD_SECONDS

    def runtime(wildcards, attempt):
        return request_minutes(REQUESTS.for_rule(name, wildcards).seconds, attempt, caps.get("runtime"), lead)

    def mem_mb(wildcards, attempt):
        return request_mem_mb(REQUESTS.for_rule(name, wildcards).mem_mb, attempt, caps.get("mem_mb"), s["mem_mb"])

    return {**res, "runtime": runtime, "mem_mb": mem_mb}


def benchmark_file(rule, job=None):
    """A rule's `benchmark:` file (seconds, peak memory of the job): results/<benchmark>/benchmarks/<rule>/
    <job>.tsv, `job` a template of the rule's wildcards (the rule's name for a rule without any).
    `unidad timing` and the runtime estimates read them."""
    return out("benchmark").format(rule=rule, job=job or rule)


def pretraining_threads():
    """The source teacher and the demo extractor train while nothing else can run: two threads. Both
    asking for two also keeps the 1-thread extractor from starting on a half-free machine and
    making the teacher, the critical path, wait for it."""
    return max(resource_settings("train")["cpus"], 2)


def training_threads(wildcards):
    if wildcards.slug == PLAN.teacher_slug:
        return pretraining_threads()
    return resource_settings("train")["cpus"]


def job_params(**params):
    """A rule's params: its job's arguments, plus the config's plugin modules, which every job imports
    first (they register stages, metrics, extractors), and in a rehearsal config `standins` (the job may
    load stand-in weights, and stamps what it computes; unidad.standins)."""
    rehearsal = {"standins": True} if config.get("rehearsal") else {}
    return {"plugins": list(config.get("plugins", [])), **rehearsal, **params}


# ----------------------------------------------------------------------------------------------- data
def data_dir(dataset, split, shots=None):
    """What a job needs to depend on for a dataset split: the folder the DAG writes (demo), or the
    marker of the job that checked a staged folder (real datasets)."""
    if config["datasets"][dataset]["kind"] == "folder":
        return str(PLAN.path("staged_check", dataset=dataset, split=f"k{shots}" if split == "shots" else split))
    return str(PLAN.dataset_dir(dataset, split, shots))


def split_shots(split):
    """The shot count of a split wildcard ("k10" -> 10), None for the other splits."""
    return int(split[1:]) if split.startswith("k") and split[1:].isdigit() else None


def split_folder(dataset, split):
    """The folder of a split wildcard: where the DAG writes it (demo) or where the config stages it."""
    shots = split_shots(split)
    return str(PLAN.dataset_dir(dataset, "shots" if shots else split, shots))


# every dataset whose folders the DAG writes (rule demo_split)
DEMO_DATASETS = {k: d for k, d in config["datasets"].items() if d["kind"] in DAG_WRITTEN_KINDS}


# ------------------------------------------------------------------------------------------- training
def stage_job(wildcards):
    return P.stage_job(PLAN, wildcards.slug)


def stage_inputs(wildcards):
    """A stage run (or segment) needs its data folder, the final weights of every run it reads
    from, and the previous segment of its own run."""
    if wildcards.slug not in PLAN.runs:
        raise WorkflowError(f"no stage run named {wildcards.slug} in this config's plan")
    run = PLAN.runs[wildcards.slug]
    data = run.data
    ends = PLAN.segment_ends(wildcards.slug)
    end = int(wildcards.end) if hasattr(wildcards, "end") else ends[-1]
    if end not in ends:
        raise WorkflowError(f"run {wildcards.slug} has no segment ending at {end} (segments end at {ends})")
    earlier = [e for e in ends if e < end]
    # the teacher pretrains in the latent space of the VAE the DAG fits (backbone.vae_fit); every later
    # run reads it through the teacher's weights
    vae = [str(PLAN.path("demo_vae"))] if config["backbone"].get("vae_fit") and wildcards.slug == PLAN.teacher_slug else []
    return {
        "vae": vae,
        "data": data_dir(data["dataset"], data["split"], data.get("shots")),
        "weights": PLAN.upstream_files(wildcards.slug),
        "previous_segment": [str(PLAN.segment_marker(wildcards.slug, earlier[-1]))] if earlier else [],
    }


def teacher_inputs():
    return {"trained": str(PLAN.summary(PLAN.teacher_slug))} if PLAN.teacher_slug else {}


def teacher_params():
    """Where the source teacher comes from: the final weights of its pretraining run, or staged weights
    (a manifest name or a path; the job resolves it, so a dry run needs no weights on disk)."""
    if PLAN.teacher_slug:
        slug = PLAN.teacher_slug
        return {"trained": str(PLAN.final_weights(slug)), "module": PLAN.runs[slug].product_module, "staged": None}
    return {"trained": None, "module": "model", "staged": config["source"]["weights"]}


def teacher_report_params():
    """The source teacher's many-step samples, judged by the oracle of each demo domain involved."""
    source = config["source"]["dataset"]
    return {
        "backbone": PLAN.backbone,
        "sampling": PLAN.teacher_sampling,
        "seeds": P.report_seeds(PLAN), "batch_size": EV["batch_size"],
        "source_domain": PLAN.demo_domain(source) if source in config["datasets"] else None,
        "target_domains": {t: PLAN.demo_domain(t) for t in config["targets"] if PLAN.demo_domain(t)},
        "device": config.get("device", "auto"),
    } | P.teacher_subject_prompts(PLAN)


# ----------------------------------------------------------------------------------------- evaluation
EXTRACTOR_FILE = P.demo_extractor_file(PLAN)
EXTRACTOR_FILES = [str(EXTRACTOR_FILE)] if EXTRACTOR_FILE else []


def reference_inputs(wildcards):
    return {"data": data_dir(wildcards.dataset, wildcards.split), "extractor": EXTRACTOR_FILES}


def metric_inputs(wildcards):
    slug = wildcards.slug
    run = PLAN.runs[slug]
    dataset = PLAN.run_dataset(slug)
    inputs = {"samples": str(PLAN.samples_file(slug, int(wildcards.step))), "extractor": EXTRACTOR_FILES}
    if metrics_needing("reference", METRICS):
        inputs["reference"] = [str(PLAN.reference_file(dataset, s)) for s in P.reference_splits(PLAN, dataset)]
    if metrics_needing("shots", METRICS):
        inputs["shots"] = data_dir(dataset, "shots", run.shots)
    return inputs


def metric_inputs_params(wildcards):
    return P.metric_inputs(PLAN, wildcards.slug, int(wildcards.step))


def sample_params(wildcards):
    return P.sampling_job(PLAN, wildcards.slug, int(wildcards.step))


def metric_files():
    return sorted(str(PLAN.metric_file(slug, step, m)) for slug, step in PLAN.eval_checkpoints for m in METRICS)


def shot_sets():
    """Every demo target's k-shot folder (the oracle's reference rows)."""
    return [{"dataset": t, "shots": k, "domain": PLAN.demo_domain(t), "folder": str(PLAN.dataset_dir(t, "shots", k))}
            for t in config["targets"] if PLAN.demo_domain(t) for k in config["shots"]]


def tidy_params():
    references = None
    if "oracle" in METRICS:
        references = {"teacher_report": str(PLAN.path("teacher_report")), "shot_sets": shot_sets(),
                      "seeds": config["seeds"], "shot_counts": config["shots"], "image_size": PLAN.image_size}
    return {
        "benchmark": config["benchmark"], "units": [P.eval_unit_record(PLAN, u) for u in PLAN.eval_units],
        "references": references, "runs": {slug: run.to_dict() for slug, run in PLAN.runs.items()},
        "selections": EV["selections"],
    }


def run_dirs():
    return {slug: str(PLAN.run_dir(slug)) for slug in PLAN.runs}


# --------------------------------------------------------------------------------------------- report
def far_datasets():
    """Targets structurally distant from the source (demo: domain 'far'; real: datasets.X.domain_gap)."""
    return [t for t in config["targets"]
            if config["datasets"][t].get("domain_gap") == "far" or PLAN.demo_domain(t) == "far"]


def qualitative_inputs(wildcards):
    return {
        "shots": data_dir(wildcards.dataset, "shots", max(config["shots"])),
        "samples": [path for path, _ in qualitative_params(wildcards)["samples"].values()],
    }


def qualitative_params(wildcards):
    return {
        "shots_dir": str(PLAN.dataset_dir(wildcards.dataset, "shots", max(config["shots"]))),
        "samples": {m: [str(p), nfe] for m, (p, nfe) in P.qualitative_units(PLAN, wildcards.dataset).items()},
        "image_size": PLAN.image_size,
        "title": f"{config['benchmark']} / {wildcards.dataset}: the shots, then each method (same seeds)",
    }


def all_outputs():
    outs = [str(PLAN.path("teacher_report"))]
    if any(PLAN.demo_domain(t) for t in config["targets"]):
        outs.append(str(PLAN.path("domains_figure")))
    outs += [str(PLAN.summary(slug)) for slug in PLAN.runs]
    outs += [str(PLAN.path(p)) for p in ("tidy_csv", "tables", "figures")]
    if config["tracking"]["kind"] != "none":
        outs.append(str(PLAN.path("mlflow_import")))
    outs += [str(PLAN.path("qualitative", dataset=t)) for t in config["targets"]]
    if config["checkpoints"]["prune_evaluated"]:
        outs.append(str(PLAN.path("pruned_snapshots")))
    return outs
