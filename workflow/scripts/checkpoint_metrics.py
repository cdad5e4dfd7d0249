from pathlib import Path

from unidad.evaluate import compute_metrics
from unidad.runner import job_log

with job_log(snakemake):
    outputs = {Path(p).stem: p for p in snakemake.output}
    compute_metrics(snakemake.config, snakemake.wildcards.slug, int(snakemake.wildcards.step), snakemake.input.samples,
                    outputs, threads=snakemake.threads)
