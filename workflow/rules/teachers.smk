rule source_teacher:
    """The source teacher as one weights file: pretrained in the DAG (demo) or imported from staged weights."""
    input:
        **teacher_inputs(),
    output:
        out("source_weights"),
    params:
        **job_params(backbone=PLAN.backbone, **teacher_params()),
    log:
        f"{R}/logs/source_teacher.log",
    benchmark:
        benchmark_file("source_teacher")
    resources:
        **resources_for("small"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/source_teacher.py"


rule demo_vae:
    """The miniature SD's VAE (backbone.vae_fit), fitted on the demo's codec scenes before the text-to-image
    teacher pretrains in its latent space, as SD's VAE was trained before its UNet."""
    output:
        directory(out("demo_vae")),
    params:
        **job_params(backbone_params=config["backbone"].get("params", {}), fit=config["backbone"].get("vae_fit", {})),
    log:
        f"{R}/logs/demo_vae.log",
    benchmark:
        benchmark_file("demo_vae")
    priority: 20
    threads: pretraining_threads()
    resources:
        **resources_for("train"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/demo_vae.py"


rule teacher_report:
    """25-step samples of the source teacher, a grid and (demo) the oracle's verdict."""
    input:
        weights=out("source_weights"),
    output:
        report=out("teacher_report"),
        grid=out("teacher_grid"),
    params:
        **job_params(**teacher_report_params()),
    log:
        f"{R}/logs/teacher_report.log",
    benchmark:
        benchmark_file("teacher_report")
    priority: 10
    threads: resources_for("sample")["cpus"]
    resources:
        **resources_for("sample", "teacher_report"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/teacher_report.py"


rule source_student_report:
    """A few-step student distilled from the source teacher on source data (a shared stage, trained once),
    sampled at its own NFE with the teacher report's seeds and judged by the source domain's oracle."""
    input:
        trained=lambda w: str(PLAN.summary(w.slug)),
    output:
        report=out("student_report"),
        grid=out("student_grid"),
    params:
        **job_params(job=lambda w: P.student_report_job(PLAN, w.slug)),
    log:
        f"{R}/logs/student_report/{{slug}}.log",
    benchmark:
        benchmark_file("source_student_report", "{slug}")
    threads: resources_for("sample")["cpus"]
    resources:
        **resources_for("sample"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/student_report.py"


rule export_sd15_unet:
    """A staged SD1.5 UNet of the weights manifest (`export: sd15_unet`: the public one-step DMD2
    student) as the unidad weights file a method's role reads (`init: weights/<name>.safetensors`,
    config/methods_sdp.yaml). The job resolves the staged files, so a dry run needs none of them."""
    output:
        "weights/{unet}.safetensors",
    wildcard_constraints:
        unet="|".join(SD15_UNETS) or "no-exportable-unet",
    params:
        **job_params(),
    log:
        f"{R}/logs/weights/{{unet}}_export.log",
    benchmark:
        benchmark_file("export_sd15_unet", "{unet}")
    resources:
        **resources_for("small"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/export_sd15_unet.py"
