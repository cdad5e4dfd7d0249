from unidad.jobs.evaluate import prune_snapshots
from unidad.runtime import job_log

with job_log(snakemake):
    p = snakemake.params
    prune_snapshots(snakemake.input.tidy, p.run_dirs, p.final_steps, p.evaluated, snakemake.output[0])
