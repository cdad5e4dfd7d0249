from unidad.reporting import build_qualitative_grid
from unidad.runner import job_log

with job_log(snakemake):
    build_qualitative_grid(snakemake.config, snakemake.wildcards.dataset, snakemake.input.shots,
                           snakemake.input.samples, snakemake.output[0])
