from unidad.jobs.report import build_controls
from unidad.runtime import job_log

with job_log(snakemake):
    p = snakemake.params
    build_controls(snakemake.input.tidy, snakemake.input.teacher, list(snakemake.input.students), snakemake.input.methods,
                   p.thresholds, p.targets, snakemake.output.csv, snakemake.output.md)
