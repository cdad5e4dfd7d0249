from unidad.runner import job_log

from unidad.runner import write_demo_split

with job_log(snakemake):
    write_demo_split(snakemake.config, snakemake.wildcards.dataset, snakemake.wildcards.split, snakemake.output[0])
