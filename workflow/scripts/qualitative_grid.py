# The grid is drawn by paper_figures/ (never imported by the unidad library): this job calls it itself.
from pathlib import Path

from paper_figures.qualitative import qualitative_grid
from unidad.jobs.report import qualitative_rows
from unidad.runtime import job_log

with job_log(snakemake):
    g = snakemake.params.grid
    shots, rows, prompts = qualitative_rows(g["shots_dir"], g["samples"], g["image_size"])
    title = g["title"] + ("; the same prompts and seeds per column" if prompts else "")
    qualitative_grid(shots, rows, Path(snakemake.output[0]).with_suffix(""), title=title, prompts=prompts)
