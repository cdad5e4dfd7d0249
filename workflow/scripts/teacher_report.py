from unidad.jobs.teachers import teacher_report
from unidad.runtime import job_log

with job_log(snakemake):
    p = snakemake.params
    teacher_report(p.backbone, snakemake.input.weights, p.sampling, p.seeds, p.batch_size, snakemake.output.report,
                   snakemake.output.grid, source_domain=p.source_domain, target_domains=p.target_domains,
                   device=p.device, threads=snakemake.threads,
                   subject_prompts=getattr(p, "subject_prompts", None))
