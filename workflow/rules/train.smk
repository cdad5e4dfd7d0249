rule train_stage:
    """The ONE training rule: any stage of any method (the plan resolves its data and weights)."""
    input:
        unpack(stage_inputs),
    output:
        summary=f"{R}/runs/{{slug}}/summary.json",
    log:
        f"{R}/logs/train/{{slug}}.log",
    threads: resources_for("train")["cpus"]
    resources:
        **resources_for("train"),
    script:
        "../scripts/train_stage.py"
