from pathlib import Path

from unidad.runner import job_log, run_stage

with job_log(snakemake):
    end = int(snakemake.wildcards.end) if "end" in snakemake.wildcards.keys() else None
    # a job given several GPUs trains data-parallel, one process per GPU
    gpus = int(getattr(snakemake.resources, "gpu", 0) or 0)
    run_stage(snakemake.config, snakemake.wildcards.slug, threads=snakemake.threads, stop_at=end, procs=max(1, gpus))
    if end is not None:
        Path(snakemake.output[0]).parent.mkdir(parents=True, exist_ok=True)
        Path(snakemake.output[0]).write_text(f"trained until step {end}\n")
