rule demo_extractor:
    """The demo's feature extractor and LPIPS-style distance, trained on the demo domains (no downloads)."""
    output:
        out("demo_extractor"),
    params:
        **job_params(image_size=PLAN.image_size, train=EV.get("extractor_train") or {}),
    log:
        f"{R}/logs/extractors/demo-cnn.log",
    benchmark:
        benchmark_file("demo_extractor")
    threads: pretraining_threads()
    resources:
        **resources_for("train"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/demo_extractor.py"


rule demo_sdp_embedding:
    """The SDP demo's text-image embedding (its DINO, CLIP-I and CLIP-T stand-in and the distance
    demo_sdp), trained on captioned source scenes and patterned objects, never a demo subject."""
    output:
        out("demo_sdp_embedding"),
    params:
        **job_params(image_size=PLAN.image_size, train=EV.get("sdp_embedding_train") or {}),
    log:
        f"{R}/logs/extractors/demo-sdp-embed.log",
    benchmark:
        benchmark_file("demo_sdp_embedding")
    threads: pretraining_threads()
    resources:
        **resources_for("train"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/demo_sdp_embedding.py"


rule reference_statistics:
    """Features, mean and covariance of a target's full set (test reference) or validation split."""
    input:
        unpack(reference_inputs),
    output:
        out("reference"),
    params:
        **job_params(
            folder=lambda w: split_folder(w.dataset, w.split),
            image_size=PLAN.image_size,
            extractor=EV["extractor"],
            extractor_file=EXTRACTOR_FILES[0] if EXTRACTOR_FILES else None,
        ),
    log:
        f"{R}/logs/reference/{{dataset}}_{{split}}_{{extractor}}.log",
    benchmark:
        benchmark_file("reference_statistics", "{dataset}_{split}_{extractor}")
    threads: resources_for("evaluate")["cpus"]
    resources:
        **resources_for("evaluate", "reference_statistics"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/reference_statistics.py"


rule sample_checkpoint:
    """N images of one checkpoint at each NFE it is evaluated at, one seed per image (never sampled twice)."""
    input:
        trained=lambda w: str(PLAN.trained_until(w.slug, int(w.step))),
    output:
        # consumed by the metrics job (and the final checkpoint's by the qualitative grid); 5000 images
        # are about 1 GB, thousands of sample sets at paper scale
        samples=temp(out("samples")),
        grid=out("samples_grid"),
    params:
        **job_params(sampling=sample_params),
    log:
        f"{R}/logs/sample/{{slug}}_step{{step}}.log",
    benchmark:
        benchmark_file("sample_checkpoint", CHECKPOINT_JOB)
    threads: resources_for("sample")["cpus"]
    group:
        "sample"
    resources:
        **resources_for("sample", "sample_checkpoint", grouped=True),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/sample_checkpoint.py"


rule checkpoint_metrics:
    """Every configured metric of one checkpoint: one JSON per metric next to the samples."""
    input:
        unpack(metric_inputs),
    output:
        **{m: out("metric").replace("{metric}", m) for m in METRICS},
    params:
        **job_params(inputs=metric_inputs_params),
    log:
        f"{R}/logs/metrics/{{slug}}_step{{step}}.log",
    benchmark:
        benchmark_file("checkpoint_metrics", CHECKPOINT_JOB)
    threads: resources_for("evaluate")["cpus"]
    group:
        "metrics"
    resources:
        **resources_for("evaluate", "checkpoint_metrics", grouped=True),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/checkpoint_metrics.py"


rule tidy_results:
    """Every number of every checkpoint in one tidy table (CSV and Parquet)."""
    input:
        metrics=metric_files(),
        summaries=[str(PLAN.summary(slug)) for slug in PLAN.runs],
        shots=[data_dir(t, "shots", k) for t in config["targets"] for k in config["shots"]],
        teacher=out("teacher_report"),
    output:
        csv=out("tidy_csv"),
        parquet=out("tidy_parquet"),
        runs=out("runs_table"),
    params:
        **job_params(**tidy_params()),
    log:
        f"{R}/logs/tables/tidy.log",
    benchmark:
        benchmark_file("tidy_results")
    resources:
        **resources_for("small"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/tidy_results.py"


rule prune_snapshots:
    """Deletes the product snapshots of evaluated checkpoints that no selection chose, once the tidy
    table holds their numbers (config checkpoints.prune_evaluated); final and selected ones stay."""
    input:
        tidy=out("tidy_parquet"),
        summaries=[str(PLAN.summary(slug)) for slug in PLAN.runs],
    output:
        out("pruned_snapshots"),
    params:
        **job_params(**P.prune_params(PLAN)),
    log:
        f"{R}/logs/tables/prune_snapshots.log",
    localrule: True
    resources:
        **resources_for("small"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/prune_snapshots.py"


rule mlflow_import:
    """Every training run (run.yaml, stats.jsonl) and every number of the tidy table into the MLflow
    store, by this one job on the submitting machine: training jobs do not open a file-based store.
    Idempotent (each run folder records what was imported into which store)."""
    input:
        tidy=out("tidy_parquet"),
        summaries=[str(PLAN.summary(slug)) for slug in PLAN.runs],
    output:
        out("mlflow_import"),
    params:
        **job_params(benchmark=config["benchmark"], run_dirs=run_dirs(), tracking=P.tracking_settings(PLAN)),
    log:
        f"{R}/logs/tables/mlflow_import.log",
    localrule: True
    resources:
        **resources_for("small"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/mlflow_import.py"
