from unidad.evaluate import train_extractor
from unidad.runner import job_log

with job_log(snakemake):
    train_extractor(snakemake.config, snakemake.output[0], threads=snakemake.threads)
