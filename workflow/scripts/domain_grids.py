from unidad.runner import job_log

from unidad.runner import domain_figure

with job_log(snakemake):
    domain_figure(snakemake.config, snakemake.output[0])
