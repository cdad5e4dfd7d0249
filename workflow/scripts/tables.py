from unidad.jobs.report import build_tables
from unidad.runtime import job_log

with job_log(snakemake):
    build_tables(snakemake.input.tidy, snakemake.input.methods, snakemake.params.far_datasets, snakemake.output[0],
                 controls=snakemake.input.controls, thresholds=snakemake.params.thresholds,
                 prompted=snakemake.params.prompted, teacher_report=snakemake.input.teacher)
