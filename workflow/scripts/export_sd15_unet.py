from unidad.jobs.teachers import export_sd15_unet
from unidad.runtime import job_log

with job_log(snakemake):
    export_sd15_unet(snakemake.wildcards.unet, snakemake.output[0])
