from unidad.jobs.teachers import teacher_report
from unidad.runtime import job_log

with job_log(snakemake):
    job = snakemake.params.job
    teacher_report(job["backbone"], job["weights"], job["sampling"], job["seeds"], job["batch_size"],
                   snakemake.output.report, snakemake.output.grid, source_domain=job["source_domain"],
                   device=job["device"], threads=snakemake.threads, module=job["module"], about=job["about"])
