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


rule all:
    input:
        all_outputs(),
    default_target: True
