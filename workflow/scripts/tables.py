from unidad.reporting import build_tables
from unidad.runner import job_log

with job_log(snakemake):
    build_tables(snakemake.config, snakemake.input.tidy, snakemake.output[0])
