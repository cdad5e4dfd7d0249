# The figures live in paper_figures/ (never imported by the unidad library): this job calls them itself.
import logging

from paper_figures.figures import write_all_figures
from unidad.atomic import atomic_dir
from unidad.results.methods import MethodCatalogue
from unidad.results.schema import load_tidy
from unidad.runtime import job_log

with job_log(snakemake):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    methods = MethodCatalogue.from_file(snakemake.input.methods)
    with atomic_dir(snakemake.output[0]) as tmp:
        write_all_figures(load_tidy(snakemake.input.tidy), tmp, methods=methods)
