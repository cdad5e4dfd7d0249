from unidad.jobs.teachers import export_source_teacher
from unidad.runtime import job_log

with job_log(snakemake):
    p = snakemake.params
    export_source_teacher(p.backbone, snakemake.output[0], trained=p.trained, module=p.module, staged=p.staged)
