rule source_teacher:
    """The source teacher as one weights file: pretrained in the DAG (demo) or imported from staged weights."""
    input:
        [str(PLAN.summary(PLAN.teacher_slug))] if PLAN.teacher_slug else [],
    output:
        f"{R}/source_teacher/weights.safetensors",
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
        f"{R}/source_teacher/weights.safetensors",
    output:
        report=f"{R}/source_teacher/report.json",
        grid=f"{R}/source_teacher/samples.png",
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
