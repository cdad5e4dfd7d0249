EVAL = f"{R}/eval/{{slug}}/step{{step}}_nfe{{nfe}}"


rule demo_extractor:
    """The demo's feature extractor and LPIPS-style distance, trained on the demo domains (no downloads)."""
    output:
        f"{R}/extractors/demo-cnn.safetensors",
    log:
        f"{R}/logs/extractors/demo-cnn.log",
    threads: 2
    resources:
        **resources_for("train"),
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
    threads: 2
    resources:
        **resources_for("evaluate"),
    script:
        "../scripts/reference_statistics.py"


rule sample_checkpoint:
    """N images of one checkpoint at one NFE, one seed per image (never sampled twice)."""
    input:
        summary=lambda w: str(PLAN.summary(w.slug)),
    output:
        samples=f"{EVAL}/samples.npz",
        grid=f"{EVAL}/samples.png",
    log:
        f"{R}/logs/sample/{{slug}}_step{{step}}_nfe{{nfe}}.log",
    threads: 2
    group:
        "sample"
    resources:
        **resources_for("sample"),
    script:
        "../scripts/sample_checkpoint.py"


rule metric:
    """One metric of one sample set; a JSON next to the samples, mirrored into the run's MLflow entry."""
    input:
        unpack(metric_inputs),
    output:
        f"{EVAL}/metrics/{{metric}}.json",
    log:
        f"{R}/logs/metric/{{slug}}_step{{step}}_nfe{{nfe}}_{{metric}}.log",
    threads: 1
    group:
        "metrics"
    resources:
        **resources_for("evaluate"),
    run:
        # `run:` keeps hundreds of small metric jobs inside one process when running locally (no
        # interpreter + torch start-up per job); on a cluster each group job is one process anyway.
        run_metric_job(config, wildcards, input, output, log, threads)


rule tidy_results:
    """Every number of every checkpoint in one tidy table (CSV and Parquet)."""
    input:
        metrics=metric_files(),
        shots=[data_dir(t, "shots", k) for t in config["targets"] for k in config["shots"]],
    output:
        csv=f"{R}/tables/results_tidy.csv",
        parquet=f"{R}/tables/results_tidy.parquet",
    log:
        f"{R}/logs/tables/tidy.log",
    resources:
        **resources_for("small"),
    script:
        "../scripts/tidy_results.py"
