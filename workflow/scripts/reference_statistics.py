from unidad.evaluate import reference_statistics
from unidad.runner import job_log

with job_log(snakemake):
    w = snakemake.wildcards
    reference_statistics(snakemake.config, w.dataset, w.split, snakemake.output[0], threads=snakemake.threads)
