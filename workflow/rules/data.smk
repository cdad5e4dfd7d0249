rule demo_split:
    """One split of a procedural demo dataset, written as a folder of PNGs like a real dataset."""
    output:
        directory(out("demo_split")),
    params:
        **job_params(dataset=lambda w: DEMO_DATASETS[w.dataset], image_size=PLAN.image_size),
    log:
        f"{R}/logs/data/{{dataset}}_{{split}}.log",
    benchmark:
        benchmark_file("demo_split", "{dataset}_{split}")
    # the source teacher (the critical path) starts from these folders
    priority: 20
    resources:
        **resources_for("small"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/demo_split.py"


rule verify_staged_folder:
    """A real dataset split staged on disk: every file readable, enough images, sizes handled per config."""
    output:
        out("staged_check"),
    params:
        **job_params(
            folder=lambda w: split_folder(w.dataset, w.split),
            shots=lambda w: split_shots(w.split),
            image_size=PLAN.image_size,
            on_wrong_size=lambda w: config["datasets"][w.dataset].get("on_wrong_size", "resize"),
        ),
    log:
        f"{R}/logs/data/{{dataset}}_{{split}}_verify.log",
    benchmark:
        benchmark_file("verify_staged_folder", "{dataset}_{split}")
    resources:
        **resources_for("small"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/verify_staged_folder.py"


rule domain_grids:
    """A picture of every demo domain and of each target's 10-shot set."""
    output:
        report(
            out("domains_figure"),
            caption="../report/domains.rst",
            category=REPORT_CATEGORY,
            subcategory="Data",
        ),
    params:
        **job_params(demo_datasets=DEMO_DATASETS, targets=config["targets"], image_size=PLAN.image_size),
    log:
        f"{R}/logs/figures/domains.log",
    benchmark:
        benchmark_file("domain_grids")
    resources:
        **resources_for("small"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/domain_grids.py"
