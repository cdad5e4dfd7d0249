rule source_teacher:
    """The source teacher as one weights file: pretrained in the DAG (demo) or imported from staged weights."""
    input:
        **teacher_inputs(),
    output:
        out("source_weights"),
    params:
        **job_params(backbone=config["backbone"], **teacher_params()),
    log:
        f"{R}/logs/source_teacher.log",
    resources:
        **resources_for("small"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/source_teacher.py"


rule teacher_report:
    """25-step samples of the source teacher, a grid and (demo) the oracle's verdict."""
    input:
        weights=out("source_weights"),
    output:
        report=out("teacher_report"),
        grid=out("teacher_grid"),
    params:
        **job_params(
            backbone=config["backbone"],
            sampling={"kind": "many_step", "sampler": "euler", "steps": config["source"]["sample_steps"]},
            seeds=PLAN.sample_seeds(1000),
            batch_size=EV["batch_size"],
            source_domain=PLAN.demo_domain(config["source"]["dataset"]) if config["source"]["dataset"] in config["datasets"] else None,
            target_domains={t: PLAN.demo_domain(t) for t in config["targets"] if PLAN.demo_domain(t)},
            device=config.get("device", "auto"),
        ),
    log:
        f"{R}/logs/teacher_report.log",
    priority: 10
    threads: resources_for("sample")["cpus"]
    resources:
        **resources_for("sample"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/teacher_report.py"
