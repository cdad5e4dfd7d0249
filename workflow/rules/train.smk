rule train_stage:
    """The ONE training rule: any stage of any method (the plan resolves its data and weights).
    With `segment_iters`, this job trains the last segment and train_segment the earlier ones."""
    input:
        unpack(stage_inputs),
    output:
        summary=out("summary"),
    params:
        **job_params(job=stage_job, stop_at=None),
    log:
        f"{R}/logs/train/{{slug}}.log",
    benchmark:
        benchmark_file("train_stage", "{slug}")
    threads: training_threads
    resources:
        **resources_for("train", "train_stage"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/train_stage.py"


rule train_segment:
    """One segment of a long stage (config `segment_iters`): it resumes the previous segment's
    checkpoint and stops at `end`, so evaluation of its checkpoints runs while the next one trains."""
    input:
        unpack(stage_inputs),
    output:
        marker=out("segment_marker"),
    params:
        **job_params(job=stage_job, stop_at=lambda w: int(w.end)),
    log:
        f"{R}/logs/train/{{slug}}_until{{end}}.log",
    benchmark:
        benchmark_file("train_segment", "{slug}_until{end}")
    threads: resources_for("train")["cpus"]
    resources:
        **resources_for("train", "train_segment"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/train_stage.py"
