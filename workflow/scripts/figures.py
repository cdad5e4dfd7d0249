from unidad.reporting import build_figures
from unidad.runner import job_log

with job_log(snakemake):
    build_figures(snakemake.config, snakemake.input.tidy, snakemake.output[0])
