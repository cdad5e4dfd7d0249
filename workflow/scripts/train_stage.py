from unidad.runner import job_log

from unidad.runner import run_stage

with job_log(snakemake):
    run_stage(snakemake.config, snakemake.wildcards.slug, threads=snakemake.threads)
