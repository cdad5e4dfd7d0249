from unidad.jobs.evaluate import reference_statistics
from unidad.runtime import job_log

with job_log(snakemake):
    p = snakemake.params
    reference_statistics(p.folder, snakemake.wildcards.split, p.image_size, p.extractor, p.extractor_file,
                         snakemake.output[0], threads=snakemake.threads)
