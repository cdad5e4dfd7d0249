from pathlib import Path

from unidad.jobs.train import StageJob, run_stage
from unidad.runtime import job_log

with job_log(snakemake):
    p = snakemake.params
    # a job given several GPUs trains data-parallel, one process per GPU
    gpus = int(getattr(snakemake.resources, "gpu", 0) or 0)
    run_stage(StageJob.from_dict(p.job), threads=snakemake.threads, stop_at=p.stop_at, procs=max(1, gpus))
    if p.stop_at is not None:
        Path(snakemake.output.marker).write_text(f"trained until step {p.stop_at}\n")
