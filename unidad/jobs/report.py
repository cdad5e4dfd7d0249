"""Jobs of workflow/rules/report.smk that the library does itself: the tables, and the images of the
qualitative grid. The figures and the grid are drawn by paper_figures/, which only their jobs import."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from unidad.atomic import atomic_dir


def build_tables(tidy: str | Path, methods_file: str | Path, far_datasets: Sequence[str], out_dir: str | Path) -> None:
    """Every table the tidy table allows, as .md, .tex and .csv, into `out_dir` (replaced as a whole)."""
    from unidad.results.methods import MethodCatalogue
    from unidad.results.render import write_all_tables
    from unidad.results.schema import load_tidy

    with atomic_dir(out_dir) as tmp:
        paths = write_all_tables(load_tidy(tidy), tmp, methods=MethodCatalogue.from_file(methods_file),
                                 far_datasets=far_datasets)
    print("\n".join(str(Path(out_dir) / Path(p).name) for p in paths))


def qualitative_rows(shots_dir: str | Path, samples: Mapping[str, Sequence], image_size: int,
                     per_row: int = 10) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The first `per_row` shots, and each method's first `per_row` samples at its NFE (samples: method ->
    (samples file, NFE)); every method's images come from the same seeds."""
    from unidad.data.folders import load_image_folder

    shots = load_image_folder(shots_dir, image_size=image_size)[:per_row]
    rows = {}
    for method, (path, nfe) in samples.items():
        with np.load(path, allow_pickle=False) as f:
            rows[method] = f[f"images_nfe{nfe}"][:per_row]
    return shots, rows
