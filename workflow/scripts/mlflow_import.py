from unidad.jobs.evaluate import mlflow_import
from unidad.runtime import job_log

with job_log(snakemake):
    p = snakemake.params
    mlflow_import(p.benchmark, p.run_dirs, p.tracking, snakemake.input.tidy, snakemake.output[0])
