import os

from unidad.evaluate import collect_tidy, mirror_to_tracker, with_selection
from unidad.runner import job_log

with job_log(snakemake):
    tidy = with_selection(collect_tidy(snakemake.config))
    for path, write in ((snakemake.output.csv, tidy.to_csv), (snakemake.output.parquet, tidy.to_parquet)):
        tmp = path + ".tmp"
        write(tmp, index=False)
        os.replace(tmp, path)
    print(f"{len(tidy)} rows; mirrored into {mirror_to_tracker(snakemake.config, tidy)} MLflow runs")
