rule demo_split:
    """One split of a procedural demo dataset, written as a folder of PNGs like a real dataset."""
    output:
        directory(f"{R}/data/{{dataset}}/{{split}}"),
    log:
        f"{R}/logs/data/{{dataset}}_{{split}}.log",
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
        f"{R}/data/{{dataset}}/{{split}}.verified",
    log:
        f"{R}/logs/data/{{dataset}}_{{split}}_verify.log",
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
            f"{R}/figures/domains.png",
            caption="../report/domains.rst",
            category=REPORT_CATEGORY,
            subcategory="Data",
        ),
    log:
        f"{R}/logs/figures/domains.log",
    resources:
        **resources_for("small"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/domain_grids.py"
