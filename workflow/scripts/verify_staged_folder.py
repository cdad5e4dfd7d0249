from unidad.runner import job_log, verify_staged_folder

with job_log(snakemake):
    verify_staged_folder(snakemake.config, snakemake.wildcards.dataset, snakemake.wildcards.split, snakemake.output[0])
