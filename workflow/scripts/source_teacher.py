from unidad.runner import job_log

from unidad.runner import export_source_teacher

with job_log(snakemake):
    export_source_teacher(snakemake.config, snakemake.output[0])
