"""Writers: Markdown, LaTeX (booktabs) and CSV forms of a table, and every table of a tidy table at once.

The writers read a table's display strings and its `attrs` ("caption", "notes", "best_cells",
"stats"; see unidad.results.tables).
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

import unidad.metrics  # noqa: F401  (registers the built-in metrics)
from unidad.metrics.registry import value_names
from unidad.results.claims import DEFAULT_MIN_SE, claims_as_table, evaluate_claims
from unidad.results.controls import controls_banner, controls_table, failed_controls, unmeasured_controls
from unidad.results.display import MISSING, value_info
from unidad.results.methods import MethodCatalogue, catalogue
from unidad.results.paper import paper_comparison
from unidad.results.schema import normalise_tidy
from unidad.results.sdp_checks import evaluate_sdp_claims, sdp_paper_comparison
from unidad.results.sdp_tables import (
    ORACLE_VALUES,
    is_text_conditioned,
    rank_agreement,
    sdp_main_table,
    sdp_oracle_table,
    sdp_subject_table,
)
from unidad.results.select import DEFAULT_NFE, SELECTIONS
from unidad.results.spread import seed_spread, seed_spread_table, spread_banner
from unidad.results.tables import ablation_params, ablation_table, compute_table, main_table, oracle_table

log = logging.getLogger(__name__)

STANDIN_CAPTION = "STAND-IN weights (rehearsal): these numbers test the pipeline and mean nothing. "
STANDIN_NOTE = ("STAND-IN: computed from stand-in weights written by `unidad rehearsal prepare` (random values in "
                "the real architectures), never a result.")


def stamp_standin(df: pd.DataFrame) -> pd.DataFrame:
    """Mark a table computed from stand-in weights in its caption, its notes and its CSV."""
    if not df.attrs.get("standin"):
        df.attrs["standin"] = True
        df.attrs["caption"] = STANDIN_CAPTION + str(df.attrs.get("caption", ""))
        df.attrs["notes"] = [*df.attrs.get("notes", []), STANDIN_NOTE]
    return df


# ------------------------------------------------------------------------------ writers
def _flat(column) -> str:
    parts = column if isinstance(column, tuple) else (column,)
    return " ".join(str(p) for p in parts if str(p) != "")


def _grid(df: pd.DataFrame) -> tuple[list[str], list[tuple], list[list[str]], list[list[bool]]]:
    """Index header names, column tuples, body cells (index cells first) and the bold mask."""
    index_names = [str(n) if n is not None else "" for n in df.index.names]
    columns = [c if isinstance(c, tuple) else (c,) for c in df.columns]
    best = {(r, c if isinstance(c, tuple) else (c,)) for r, c in df.attrs.get("best_cells", [])}
    body, bold = [], []
    for label, values in zip(df.index, df.itertuples(index=False, name=None)):
        index_cells = [str(v) for v in (label if isinstance(label, tuple) else (label,))]
        body.append(index_cells + ["" if pd.isna(v) else str(v) for v in values])
        bold.append([False] * len(index_cells) + [(label, c) in best for c in columns])
    return index_names, columns, body, bold


def _notes(df: pd.DataFrame) -> list[str]:
    return [str(n) for n in df.attrs.get("notes", [])]


def to_markdown(df: pd.DataFrame, caption: str | None = None) -> str:
    """A pipe table with the caption above, best cells in bold and the footnotes below."""
    caption = caption if caption is not None else df.attrs.get("caption", "")
    index_names, columns, body, bold = _grid(df)
    header = index_names + [_flat(c) for c in columns]

    def cell(text: str, strong: bool) -> str:
        text = text.replace("|", "\\|")
        return f"**{text}**" if strong and text else text

    lines = [f"**{caption}**", ""] if caption else []
    lines.append("| " + " | ".join(cell(h, False) for h in header) + " |")
    aligns = [":---" if i < len(index_names) or not _numeric_column(body, i) else "---:" for i in range(len(header))]
    lines.append("|" + "|".join(aligns) + "|")
    for cells, strong in zip(body, bold):
        lines.append("| " + " | ".join(cell(t, s) for t, s in zip(cells, strong)) + " |")
    notes = _notes(df)
    if notes:
        lines.append("")
        # nested items ("- ...") belong to the note before them (e.g. "Protocol differences:")
        lines += [f"  {n}" if n.startswith("- ") else f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


_LATEX_MAP = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "±": r"$\pm$", "↓": r"$\downarrow$", "↑": r"$\uparrow$", "†": r"\textsuperscript{\dag}", "–": "--", "—": "---",
    "Δ": r"$\Delta$", "−": "$-$", "≥": r"$\geq$", "≤": r"$\leq$", "×": r"$\times$", "…": r"\dots{}",
    "→": r"$\rightarrow$", "·": r"$\cdot$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials in one pass (so replacements are never escaped again); non-ASCII
    characters without a LaTeX form become '?'."""
    out = []
    for ch in str(text):
        if ch in _LATEX_MAP:
            out.append(_LATEX_MAP[ch])
        elif ord(ch) < 128:
            out.append(ch)
        else:
            out.append("?")
    return "".join(out)


def _numeric_column(body: list[list[str]], i: int) -> bool:
    return all(re.match(r"^[-+0-9.,–]", row[i] or MISSING) for row in body)


def _column_spec(body: list[list[str]], n_index: int) -> str:
    widths = [max((len(row[i]) for row in body), default=0) for i in range(len(body[0]))] if body else []
    long_columns = [i for i, w in enumerate(widths) if w > 40]
    total = sum(widths[i] for i in long_columns) or 1
    spec = []
    for i, width in enumerate(widths):
        if i in long_columns:  # paragraph columns share 60% of the line, none narrower than 15%
            share = max(0.15, 0.6 * width / total)
            spec.append(f"p{{{share:.2f}\\linewidth}}")
        elif i < n_index:
            spec.append("l")
        else:
            spec.append("r" if _numeric_column(body, i) else "l")
    return "".join(spec)


def _font_size(n_columns: int) -> str:
    return r"\small" if n_columns <= 7 else r"\footnotesize" if n_columns <= 10 else r"\scriptsize"


def to_latex(df: pd.DataFrame, caption: str | None = None, label: str | None = None) -> str:
    """A booktabs table float (caption, label, tabular, footnotes) that compiles with pdflatex.

    A tabular wider than the text is scaled down to the line width when the document loads graphicx
    (and left as it is otherwise, so the table compiles with booktabs alone).
    """
    caption = caption if caption is not None else df.attrs.get("caption", "")
    index_names, columns, body, bold = _grid(df)
    n_index = len(index_names)
    lines = [r"\begin{table}[htbp]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines.append(r"\setlength{\tabcolsep}{4pt}" + _font_size(n_index + len(columns)))
    lines.append(r"\sbox0{\begin{tabular}{" + (_column_spec(body, n_index) or "l") + "}")
    lines.append(r"\toprule")
    if any(len(c) > 1 for c in columns):
        groups: list[tuple[str, int, int]] = []  # (group, first column, last column), 1-based
        for position, column in enumerate(columns, start=n_index + 1):
            name = column[0] if len(column) > 1 else ""
            if groups and groups[-1][0] == name:
                groups[-1] = (name, groups[-1][1], position)
            else:
                groups.append((name, position, position))
        top = [""] * n_index
        rules = []
        for name, first, last in groups:
            if not name:
                top += [""] * (last - first + 1)
                continue
            top.append(rf"\multicolumn{{{last - first + 1}}}{{c}}{{{latex_escape(name)}}}")
            rules.append(rf"\cmidrule(lr){{{first}-{last}}}")
        lines.append(" & ".join(top) + r" \\")
        lines.append("".join(rules))
        second = [latex_escape(h) for h in index_names] + [latex_escape(c[-1]) for c in columns]
    else:
        second = [latex_escape(h) for h in index_names] + [latex_escape(_flat(c)) for c in columns]
    lines.append(" & ".join(second) + r" \\")
    lines.append(r"\midrule")
    for cells, strong in zip(body, bold):
        rendered = [rf"\textbf{{{latex_escape(t)}}}" if s and t else latex_escape(t) for t, s in zip(cells, strong)]
        lines.append(" & ".join(rendered) + r" \\")
    lines.append(r"\bottomrule")
    lines.append(r"\end{tabular}}%")
    lines.append(r"\ifdim\wd0>\linewidth\ifdefined\resizebox\resizebox{\linewidth}{!}{\usebox0}"
                 r"\else\usebox0\fi\else\usebox0\fi")
    notes = _notes(df)
    if notes:
        lines.append(r"\par\smallskip")
        lines.append(r"\begin{minipage}{\linewidth}\footnotesize")
        lines.append(" \\\\\n".join(latex_escape(n) for n in notes))
        lines.append(r"\end{minipage}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Machine-readable CSV: one row per cell (mean, std, seed count, best) when the table carries
    statistics, else the displayed table with flattened column names."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    standin = {"standin": True} if df.attrs.get("standin") else {}
    if df.attrs.get("stats"):
        pd.DataFrame(df.attrs["stats"]).assign(**standin).to_csv(path, index=False)
    else:
        flat = df.copy()
        flat.attrs = {}
        flat.columns = [_flat(c) for c in flat.columns]
        flat.assign(**standin).to_csv(path, index=flat.index.name is not None or isinstance(flat.index, pd.MultiIndex))
    return path


# ------------------------------------------------------------------------------ everything
FSIG_HEADING = "Few-shot image generation (FSIG)"
SDP_HEADING = "Subject-driven personalization (SDP, text-conditioned)"


def _sdp_tables(attempt, frame: pd.DataFrame, prompted: list[str], teacher_report, methods: MethodCatalogue,
                controls: pd.DataFrame | None, claims_min_se: float) -> None:
    """The text-conditioned benchmark's tables (Table 3, per subject, oracle with the source teacher, rank
    agreement, compute, the paper's Table 3, claims), each skipped with a log message when its data is absent."""
    attempt("sdp_main_final", lambda: sdp_main_table(frame, prompted, methods=methods))
    attempt("sdp_per_subject", lambda: sdp_subject_table(frame, prompted, teacher_report, methods=methods))
    attempt("sdp_oracle_final", lambda: sdp_oracle_table(frame, prompted, teacher_report, methods=methods))
    attempt("sdp_rank_agreement", lambda: rank_agreement(frame, prompted, methods=methods))
    attempt("sdp_compute_final", lambda: compute_table(frame, nfe=1, methods=methods))
    attempt("sdp_paper_comparison", lambda: sdp_paper_comparison(frame, prompted, methods=methods))
    failed = None if controls is None else failed_controls(controls)
    unmeasured = () if controls is None else unmeasured_controls(controls)
    attempt("sdp_claims", lambda: claims_as_table(evaluate_sdp_claims(frame, prompted, methods=methods,
                                                                      min_se=claims_min_se), failed, unmeasured))



def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "table"


def _write_table(df: pd.DataFrame, out_dir: Path, name: str) -> list[Path]:
    label = f"tab:{name}"
    paths = [out_dir / f"{name}.md", out_dir / f"{name}.tex", out_dir / f"{name}.csv"]
    paths[0].write_text(to_markdown(df), encoding="utf-8")
    paths[1].write_text(to_latex(df, label=label), encoding="utf-8")
    to_csv(df, paths[2])
    return paths


def write_all_tables(tidy: pd.DataFrame, out_dir: str | Path, *, methods: MethodCatalogue | None = None,
                     far_datasets: Sequence[str] = (), paper_csv: str | Path | None = None,
                     nfe: int = DEFAULT_NFE, controls: pd.DataFrame | None = None, max_seed_std: float = 0.10,
                     claims_min_se: float = DEFAULT_MIN_SE, prompted: Sequence[str] = (),
                     teacher_report: Mapping[str, Any] | None = None) -> list[Path]:
    """Every table the data allows, each as .md, .tex and .csv, plus all_tables.md (all of them in
    reading order). Tables whose data is absent are skipped with a log message. `methods`: the
    method catalogue (default: the project's config/methods.yaml). `controls`: the positive controls
    (unidad.results.controls.measure_controls): all_tables.md opens with them and the seed spread, and
    a failed one marks the claims not meaningful. `prompted`: the targets with evaluation prompts (the
    text-conditioned benchmark's subjects), whose tables are the SDP ones (unidad.results.sdp_tables, with
    `teacher_report`'s subject_oracle beside the methods); the other targets get the FSIG tables."""
    methods = catalogue(methods)
    frame = normalise_tidy(tidy)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables: list[tuple[str, pd.DataFrame]] = []
    banner: list[str] = []
    text_conditioned = is_text_conditioned(frame, prompted)
    sdp_frame = frame[frame["dataset"].isin(list(prompted))]
    frame = frame[~frame["dataset"].isin(list(prompted))]
    sections: dict[int, str] = {}  # position in `tables` -> the heading that opens a benchmark's tables

    def attempt(name: str, build) -> None:
        try:
            tables.append((name, build()))
        except ValueError as err:
            log.info("table %s skipped: %s", name, err)

    if controls is not None:
        tables.append(("controls", controls_table(controls)))
        banner += controls_banner(controls) + [""]
    try:  # the SDP benchmark's oracle rates are its own (subject present, context follows the prompt)
        spread = seed_spread(sdp_frame if text_conditioned else frame, max_seed_std, nfe=nfe, methods=methods,
                             **({"metrics": ORACLE_VALUES} if text_conditioned else {}))
        banner += spread_banner(spread, max_seed_std)
        attempt("seed_spread", lambda: seed_spread_table(spread, max_seed_std))
    except ValueError as err:
        log.info("table seed_spread skipped: %s", err)
    if not frame.empty:
        sections[len(tables)] = FSIG_HEADING
        present = set(frame["selection"])
        selections = [s for s in SELECTIONS if s in present] or ["final"]
        measured = set(frame["metric"])
        # quality values in registration order, then values the registry does not show (kid_std...) by name
        quality = [m for m in value_names("quality") if m in measured]
        extra = [m for m in sorted(measured) if not value_info(m).shown]
        for selection in selections:
            attempt(f"main_{selection}", lambda s=selection: main_table(frame, selection=s, nfe=nfe, methods=methods))
        attempt("all_metrics_final", lambda: main_table(frame, metrics=quality + extra, nfe=nfe,
                                                        title="All quality metrics", methods=methods))
        attempt("oracle_final", lambda: oracle_table(frame, nfe=nfe, methods=methods))
        attempt("compute_final", lambda: compute_table(frame, nfe=nfe, methods=methods))
        for param in ablation_params(frame):
            metrics = ("fid", "intra_lpips") + tuple(m for m in ("oracle_mode_coverage",) if m in measured)
            attempt(f"ablation_{_slug(param)}",
                    lambda p=param, ms=metrics: ablation_table(frame, p, ms, nfe=nfe, methods=methods))
        attempt("paper_comparison", lambda: paper_comparison(frame, paper_csv, nfe=nfe, methods=methods))
        failed = None if controls is None else failed_controls(controls)
        unmeasured = () if controls is None else unmeasured_controls(controls)
        attempt("claims", lambda: claims_as_table(evaluate_claims(frame, far_datasets=far_datasets, nfe=nfe,
                                                                  methods=methods, min_se=claims_min_se),
                                                  failed, unmeasured))
    if text_conditioned:
        sections[len(tables)] = SDP_HEADING
        _sdp_tables(attempt, sdp_frame, list(prompted), teacher_report, methods, controls, claims_min_se)

    standin = bool(frame["standin"].any() or sdp_frame["standin"].any())
    paths: list[Path] = []
    combined = []
    for position, (name, table) in enumerate(tables):
        if standin:
            stamp_standin(table)
        paths += _write_table(table, out_dir, name)
        if position in sections and text_conditioned:  # an FSIG-only report keeps its flat layout
            combined.append(f"# {sections[position]}\n")
        combined.append(f"## {name}\n\n" + to_markdown(table))
    index = out_dir / "all_tables.md"
    title = "# Results tables" + (" (STAND-IN weights: a rehearsal, not results)" if standin else "")
    top = "\n".join(banner) + "\n\n" if banner else ""
    index.write_text(title + "\n\n" + top + "\n".join(combined), encoding="utf-8")
    return paths + [index]
