from unidad.jobs.data import verify_staged_folder
from unidad.runtime import job_log

with job_log(snakemake):
    p = snakemake.params
    verify_staged_folder(p.folder, p.shots, p.image_size, p.on_wrong_size, snakemake.output[0])
