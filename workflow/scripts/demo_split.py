from unidad.jobs.data import write_demo_split
from unidad.runtime import job_log

with job_log(snakemake):
    p = snakemake.params
    write_demo_split(p.dataset, snakemake.wildcards.split, p.image_size, snakemake.output[0])
