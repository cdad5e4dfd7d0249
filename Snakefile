# unidad-bench: train every method on every target, evaluate every checkpoint, compile the tables.
#   snakemake --profile profiles/local all          (the embedded demo, CPU)
#   snakemake --profile profiles/slurm all          (a cluster; edit profiles/slurm/config.yaml)
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/teachers.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


# Jobs that run where snakemake runs, never through the cluster's queue: a few seconds to a minute of
# light work each (demo images, the tidy table, tables and figures), where a wait in the queue would
# cost more than the job. verify_staged_folder (reads every image of a staged folder) and
# source_teacher (loads the multi-GB source model) stay cluster jobs.
localrules:
    all,
    demo_split,
    domain_grids,
    tidy_results,
    controls,
    tables,
    figures,
    qualitative_grid,


rule all:
    input:
        all_outputs(),
    default_target: True
