from unidad.evaluate import sample_checkpoint
from unidad.runner import job_log

with job_log(snakemake):
    w = snakemake.wildcards
    sample_checkpoint(snakemake.config, w.slug, int(w.step), snakemake.output.samples, snakemake.output.grid,
                      threads=snakemake.threads)
