from unidad.jobs.evaluate import compute_metrics
from unidad.metrics.inputs import MetricInputs
from unidad.runtime import job_log

with job_log(snakemake):
    w = snakemake.wildcards
    compute_metrics(MetricInputs.from_params(snakemake.params.inputs), dict(snakemake.output.items()), w.slug,
                    int(w.step), threads=snakemake.threads)
