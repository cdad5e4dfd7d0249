from unidad.jobs.evaluate import sample_checkpoint
from unidad.runtime import job_log

with job_log(snakemake):
    sample_checkpoint(**snakemake.params.sampling, out_npz=snakemake.output.samples, out_grid=snakemake.output.grid,
                      threads=snakemake.threads)
