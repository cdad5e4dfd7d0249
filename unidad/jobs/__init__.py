"""The DAG's jobs: one module per rules file (workflow/rules/<name>.smk -> unidad.jobs.<name>).

A job function takes explicit input and output paths and plain parameters, all computed by
`workflow/rules/common.smk` from the plan; no job reads the whole config or rebuilds the plan. Every
output is written atomically (unidad.atomic), so a failed job leaves nothing Snakemake could take for
a result.
"""
