rule controls:
    """The positive controls (the source teacher, its source-distilled students, FT on each target) against
    the config's thresholds, and the seed spread of the oracle table: the page the report opens with."""
    input:
        **P.controls_inputs(PLAN),
    output:
        csv=out("controls"),
        md=report(out("controls_md"), caption="../report/controls.rst", category=REPORT_CATEGORY,
                  subcategory="Controls"),
    params:
        **job_params(**P.controls_params(PLAN)),
    log:
        f"{R}/logs/tables/controls.log",
    benchmark:
        benchmark_file("controls")
    resources:
        **resources_for("small"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/controls.py"


rule tables:
    """Paper-style tables (Markdown, LaTeX booktabs, CSV), the controls, the claims check and the paper comparison."""
    input:
        tidy=out("tidy_parquet"),
        methods=str(PLAN.methods_path),
        controls=out("controls"),
        teacher=out("teacher_report"),
    output:
        report(
            directory(out("tables")),
            patterns=["{name}.md"],
            caption="../report/tables.rst",
            category=REPORT_CATEGORY,
            subcategory="Tables",
        ),
    params:
        **job_params(far_datasets=far_datasets(), thresholds=config["controls"], prompted=P.prompted_targets(PLAN)),
    log:
        f"{R}/logs/tables/tables.log",
    benchmark:
        benchmark_file("tables")
    resources:
        **resources_for("small"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/tables.py"


rule figures:
    """Metric vs iteration, quality-diversity scatter, FID vs NFE, FID vs a (PDF + PNG)."""
    input:
        tidy=out("tidy_parquet"),
        methods=str(PLAN.methods_path),
    output:
        report(
            directory(out("figures")),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category=REPORT_CATEGORY,
            subcategory="Figures",
        ),
    params:
        **job_params(),
    log:
        f"{R}/logs/figures/paper.log",
    benchmark:
        benchmark_file("figures")
    resources:
        **resources_for("small"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/figures.py"


rule qualitative_grid:
    """The shots of a target, then every method's samples from the same seeds (and prompts) (paper Figure 1)."""
    input:
        unpack(qualitative_inputs),
    output:
        report(
            out("qualitative"),
            caption="../report/qualitative.rst",
            category=REPORT_CATEGORY,
            subcategory="Qualitative samples",
        ),
    params:
        **job_params(grid=qualitative_params),
    log:
        f"{R}/logs/figures/qualitative_{{dataset}}.log",
    benchmark:
        benchmark_file("qualitative_grid", "{dataset}")
    resources:
        **resources_for("small"),
    conda:
        "../envs/unidad.yaml"
    script:
        "../scripts/qualitative_grid.py"
