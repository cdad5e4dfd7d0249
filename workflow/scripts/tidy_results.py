from unidad.jobs.evaluate import tidy_results
from unidad.runtime import job_log

with job_log(snakemake):
    p = snakemake.params
    tidy_results(p.benchmark, p.units, p.references, p.runs, snakemake.output.csv,
                 snakemake.output.parquet, snakemake.output.runs, p.selections)
