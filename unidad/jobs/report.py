"""Jobs of workflow/rules/report.smk that the library does itself: the positive controls, the tables, and
the images of the qualitative grid. The figures and the grid are drawn by paper_figures/, which only
their jobs import."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from unidad.atomic import atomic_dir, atomic_path


def build_controls(tidy: str | Path, teacher_report: str | Path, student_reports: Sequence[str | Path],
                   methods_file: str | Path, thresholds: Mapping[str, Any], targets: Sequence[str],
                   out_csv: str | Path, out_md: str | Path) -> list[str]:
    """The positive controls (unidad.results.controls) as a tidy CSV, one row per check, and as the
    Markdown page the report opens with (the controls, then the seed spread of the oracle table).
    Returns the failed checks."""
    import json

    from unidad.results.controls import controls_banner, controls_table, failed_controls, measure_controls
    from unidad.results.methods import MethodCatalogue
    from unidad.results.render import to_markdown
    from unidad.results.schema import load_tidy
    from unidad.results.sdp_tables import ORACLE_VALUES
    from unidad.results.spread import seed_spread, spread_banner

    methods = MethodCatalogue.from_file(methods_file)
    frame = load_tidy(tidy)
    reports = [json.loads(Path(p).read_text()) for p in student_reports]
    teacher = json.loads(Path(teacher_report).read_text())
    controls = measure_controls(frame, teacher, reports, thresholds, targets=targets, methods=methods)
    max_std = float(thresholds.get("max_seed_std", 0.10))
    # the text-conditioned demo's oracle rates are its own: subject present, context follows the prompt
    rates = {"metrics": ORACLE_VALUES} if teacher.get("subject_oracle") else {}
    try:
        spread = spread_banner(seed_spread(frame, max_std, methods=methods, **rates), max_std)
    except ValueError as err:  # no oracle rows: nothing to judge
        spread = [f"**Seed spread**: not measured ({err})."]
    with atomic_path(out_csv) as tmp:
        controls.to_csv(tmp, index=False)
    table = controls_table(controls)
    table.attrs = {**table.attrs, "notes": table.attrs["notes"][-1:]}  # the banner is already above it
    page = ["# Controls: does this run measure?", "", *controls_banner(controls), "", *spread, "", to_markdown(table)]
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text("\n".join(page), encoding="utf-8")
    failed = failed_controls(controls)
    print("\n".join(["controls: " + ("FAILED" if failed else "passed"), *failed]))
    return failed


def build_tables(tidy: str | Path, methods_file: str | Path, far_datasets: Sequence[str], out_dir: str | Path,
                 controls: str | Path | None = None, thresholds: Mapping[str, Any] | None = None,
                 prompted: Sequence[str] = (), teacher_report: str | Path | None = None) -> None:
    """Every table the tidy table allows, as .md, .tex and .csv, into `out_dir` (replaced as a whole);
    with `controls` (build_controls's CSV), the controls open all_tables.md and a failed one marks the
    claims not meaningful. `thresholds`: the config's `controls` block (seed spread, claims' SE).
    `prompted`: the targets with evaluation prompts (their tables are the SDP ones); `teacher_report`: the
    source teacher's report, whose subject_oracle those tables show beside the methods."""
    import json

    from unidad.results.controls import load_controls
    from unidad.results.methods import MethodCatalogue
    from unidad.results.render import write_all_tables
    from unidad.results.schema import load_tidy

    thresholds = dict(thresholds or {})
    options = {k: float(thresholds[k]) for k in ("max_seed_std", "claims_min_se") if k in thresholds}
    frame = None if controls is None else load_controls(controls)
    with atomic_dir(out_dir) as tmp:
        paths = write_all_tables(load_tidy(tidy), tmp, methods=MethodCatalogue.from_file(methods_file),
                                 far_datasets=far_datasets, controls=frame, prompted=list(prompted),
                                 teacher_report=json.loads(Path(teacher_report).read_text()) if teacher_report else None,
                                 **options)
    print("\n".join(str(Path(out_dir) / Path(p).name) for p in paths))


def prompt_columns(prompts: Sequence[str], per_row: int) -> np.ndarray:
    """Indices of at most `per_row` samples spread over the prompts in their order: the first k of each
    prompt, k = per_row // number of prompts (at least 1), so every prompt has a column."""
    order = list(dict.fromkeys(str(p) for p in prompts))
    k = max(1, per_row // max(1, len(order)))
    picked = [i for p in order for i in [j for j, q in enumerate(prompts) if str(q) == p][:k]]
    return np.asarray(picked[:per_row], dtype=int)


def qualitative_rows(shots_dir: str | Path, samples: Mapping[str, Sequence], image_size: int,
                     per_row: int = 10) -> tuple[np.ndarray, dict[str, np.ndarray], list[str]]:
    """The first `per_row` shots, and each method's first `per_row` samples at its NFE (samples: method ->
    (samples file, NFE)); every method's images come from the same seeds. Where the samples carry prompts
    (a text-conditioned benchmark), the columns are spread over the prompts (`prompt_columns`), the same
    prompts and seeds for every method, and the third value lists each column's prompt (else empty)."""
    from unidad.data.folders import load_image_folder

    shots = load_image_folder(shots_dir, image_size=image_size)[:per_row]
    rows, columns = {}, []
    for method, (path, nfe) in samples.items():
        with np.load(path, allow_pickle=False) as f:
            images = f[f"images_nfe{nfe}"]
            if "prompts" in f.files:
                prompts = [str(p) for p in f["prompts"]]
                picked = prompt_columns(prompts, per_row)
                if columns and [prompts[i] for i in picked] != columns:
                    raise ValueError(f"{path}: its prompts differ from the other methods' samples; resample it")
                columns = [prompts[i] for i in picked]
                rows[method] = images[picked]
            else:
                rows[method] = images[:per_row]
    return shots, rows, columns
