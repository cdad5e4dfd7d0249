"""Results: from the tidy results table to the paper's tables.

One module per concern, each importing only the ones listed before it (no cycles):

- schema     the tidy table's one schema, the row builder `tidy_row`, `normalise_tidy` / `load_tidy`
- methods    `MethodCatalogue`: display order, single-stage, reference and quoted rows (config/methods.yaml)
- aggregate  mean / std / count over seeds
- select     `with_selection` (checkpoint-selection rows) and `select_rows` (rows a table shows)
- display    metric labels and decimals (from the metric registry), cell text, column labels
- tables     the table builders: main, oracle, ablation, compute (all-metrics is the main table)
- paper      the paper's numbers and the paper-vs-harness table
- claims     the paper's claims checked on the harness's numbers, decided against their seed spread
- controls   the positive controls (source teacher, its source student, FT) against their thresholds
- spread     the oracle rates whose seed std is too large to rank methods
- sdp_tables the text-conditioned (SDP) benchmark's tables: Table 3, per subject, the subject oracle beside
             the source teacher, the rank agreement of a learned subject-fidelity value with the oracle
- sdp_checks the SDP claims and the paper's Table 3 beside this harness's
- render     Markdown / LaTeX / CSV writers and `write_all_tables` (FSIG and SDP tables under their headings)

The figures (paper_figures/) read the same modules; nothing here imports them.
"""
from unidad.results.aggregate import DEFAULT_GROUP, aggregate
from unidad.results.claims import HELD, NOT_HELD, NOT_TESTED, UNDECIDED, claims_as_table, evaluate_claims
from unidad.results.controls import failed_controls, measure_controls
from unidad.results.display import MISSING, metric_direction, metric_label, protocol_text
from unidad.results.methods import MethodCatalogue, MethodInfo
from unidad.results.paper import PAPER_RESULTS_CSV, load_paper_results, paper_comparison
from unidad.results.render import to_csv, to_latex, to_markdown, write_all_tables
from unidad.results.schema import TIDY_COLUMNS, load_tidy, normalise_tidy, ordered_datasets, tidy_row
from unidad.results.select import DEFAULT_NFE, SELECTIONS, select_rows, with_selection
from unidad.results.spread import seed_spread
from unidad.results.tables import ablation_params, ablation_table, compute_table, main_table, oracle_table

__all__ = [
    "DEFAULT_GROUP", "DEFAULT_NFE", "HELD", "MISSING", "MethodCatalogue", "MethodInfo", "NOT_HELD", "NOT_TESTED",
    "PAPER_RESULTS_CSV", "SELECTIONS", "TIDY_COLUMNS", "ablation_params", "ablation_table", "aggregate",
    "UNDECIDED", "claims_as_table", "compute_table", "evaluate_claims", "failed_controls", "load_paper_results",
    "load_tidy", "main_table", "measure_controls", "metric_direction", "metric_label", "normalise_tidy",
    "oracle_table", "ordered_datasets", "paper_comparison", "protocol_text", "seed_spread", "select_rows",
    "tidy_row", "to_csv", "to_latex", "to_markdown", "with_selection", "write_all_tables",
]
