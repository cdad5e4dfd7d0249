from unidad.runner import job_log

from unidad.runner import teacher_report

with job_log(snakemake):
    teacher_report(snakemake.config, snakemake.output.report, snakemake.output.grid, threads=snakemake.threads)
