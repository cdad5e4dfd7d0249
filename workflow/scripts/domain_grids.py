from unidad.jobs.data import domain_figure
from unidad.runtime import job_log

with job_log(snakemake):
    p = snakemake.params
    domain_figure(p.demo_datasets, p.targets, p.image_size, snakemake.output[0])
