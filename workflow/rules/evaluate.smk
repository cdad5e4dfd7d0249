EVAL = f"{R}/eval/{{slug}}/step{{step}}"


rule demo_extractor:
    """The demo's feature extractor and LPIPS-style distance, trained on the demo domains (no downloads)."""
    output:
        f"{R}/extractors/demo-cnn.safetensors",
    log:
        f"{R}/logs/extractors/demo-cnn.log",
    threads: pretraining_threads()
    resources:
        **resources_for("train"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/demo_extractor.py"


rule reference_statistics:
    """Features, mean and covariance of a target's full set (test reference) or validation split."""
    input:
        unpack(reference_inputs),
    output:
        f"{R}/reference/{{dataset}}/{{split}}_{{extractor}}.npz",
    log:
        f"{R}/logs/reference/{{dataset}}_{{split}}_{{extractor}}.log",
    threads: resources_for("evaluate")["cpus"]
    resources:
        **resources_for("evaluate"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/reference_statistics.py"


rule sample_checkpoint:
    """N images of one checkpoint at each NFE it is evaluated at, one seed per image (never sampled twice)."""
    input:
        trained=lambda w: str(PLAN.trained_until(w.slug, int(w.step))),
    output:
        samples=f"{EVAL}/samples.npz",
        grid=f"{EVAL}/samples.png",
    log:
        f"{R}/logs/sample/{{slug}}_step{{step}}.log",
    threads: resources_for("sample")["cpus"]
    group:
        "sample"
    resources:
        **resources_for("sample"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/sample_checkpoint.py"


rule checkpoint_metrics:
    """Every configured metric of one checkpoint: one JSON per metric next to the samples."""
    input:
        unpack(metric_inputs),
    output:
        [f"{EVAL}/metrics/{m}.json" for m in config["evaluation"]["metrics"]],
    log:
        f"{R}/logs/metrics/{{slug}}_step{{step}}.log",
    threads: resources_for("evaluate")["cpus"]
    group:
        "metrics"
    resources:
        **resources_for("evaluate"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/checkpoint_metrics.py"


rule tidy_results:
    """Every number of every checkpoint in one tidy table (CSV and Parquet)."""
    input:
        metrics=metric_files(),
        shots=[data_dir(t, "shots", k) for t in config["targets"] for k in config["shots"]],
        teacher=f"{R}/source_teacher/report.json",
    output:
        csv=f"{R}/tables/results_tidy.csv",
        parquet=f"{R}/tables/results_tidy.parquet",
    log:
        f"{R}/logs/tables/tidy.log",
    resources:
        **resources_for("small"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/tidy_results.py"
