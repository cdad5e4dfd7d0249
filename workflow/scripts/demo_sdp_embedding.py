from unidad.jobs.evaluate import train_sdp_embedding
from unidad.runtime import job_log

with job_log(snakemake):
    p = snakemake.params
    train_sdp_embedding(snakemake.output[0], p.image_size, p.train, threads=snakemake.threads)
