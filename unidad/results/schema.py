"""The tidy results table: its one schema, the row builder and the readers.

The tidy table has one row per measured number. Its columns are the row columns below (what the
evaluation writes for each number, in this order) plus `selection`, added by
`unidad.results.select.with_selection` (which checkpoint-selection rule a row belongs to).

Each column has a kind (text, number, bool, or `id`: kept as written), the default the row builder
uses when a field is not given (the values of a reference row: no run behind it), and the value a
reader fills in when a partial table lacks the column ("not recorded").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TEXT, NUMBER, BOOL, ID = "text", "number", "bool", "id"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    row_default: Any  # what tidy_row writes when the field is not given
    missing: Any  # what a reader fills in when a table lacks the column
    required: bool = False  # a reader refuses a table without it


_NAN = np.nan
ROW_SCHEMA: tuple[Column, ...] = (
    Column("benchmark", TEXT, "", ""),
    Column("dataset", TEXT, "", "", required=True),
    Column("shots", NUMBER, 0, _NAN),
    Column("method", TEXT, "", "", required=True),
    Column("stage", TEXT, "", ""),
    Column("seed", ID, 0, 0, required=True),
    Column("slug", TEXT, "", ""),
    Column("step", NUMBER, 0, _NAN),
    Column("nfe", NUMBER, 0, _NAN),
    Column("method_nfe", NUMBER, 0, _NAN),
    Column("final", BOOL, True, True),
    Column("split", TEXT, "test", "test"),
    Column("metric", TEXT, "", "", required=True),
    Column("variant", TEXT, "", ""),
    Column("extractor", TEXT, "", ""),
    Column("extractor_sha256", TEXT, "", ""),
    Column("protocol", TEXT, "", ""),  # evaluation.protocol the number was measured under ("" = none: oracle)
    Column("value", NUMBER, float("nan"), _NAN, required=True),
    Column("n_generated", NUMBER, 0, _NAN),
    Column("n_reference", NUMBER, 0, _NAN),
    Column("checkpoint", TEXT, "", ""),
    Column("iterations", NUMBER, 0, _NAN),
    Column("images_seen", NUMBER, 0, _NAN),
    Column("device_hours", NUMBER, 0.0, _NAN),
    Column("wall_seconds", NUMBER, 0.0, _NAN),
    Column("ablation", TEXT, "", ""),
    Column("ablation_param", TEXT, "", ""),
    Column("ablation_value", TEXT, "", ""),
    Column("ablation_option", TEXT, "", ""),  # the stage option an ablation changes (or "shots")
    Column("standin", BOOL, False, False),  # computed from stand-in weights (a rehearsal): not a result
)
# Added to the evaluated rows by with_selection; a table without it holds final checkpoints.
SELECTION_COLUMN = Column("selection", TEXT, "final", "final")
SCHEMA: tuple[Column, ...] = ROW_SCHEMA + (SELECTION_COLUMN,)

ROW_COLUMNS = tuple(c.name for c in ROW_SCHEMA)
TIDY_COLUMNS = tuple(c.name for c in SCHEMA)
REQUIRED_COLUMNS = tuple(c.name for c in SCHEMA if c.required)
OPTIONAL_COLUMNS: dict[str, Any] = {c.name: c.missing for c in SCHEMA if not c.required}
TEXT_COLUMNS = tuple(c.name for c in SCHEMA if c.kind == TEXT)
NUMERIC_COLUMNS = tuple(c.name for c in SCHEMA if c.kind == NUMBER)


def tidy_row(benchmark: str, **fields: Any) -> dict[str, Any]:
    """One row of the tidy table: every row column, with the defaults of a reference row (no run behind it)."""
    row = {c.name: c.row_default for c in ROW_SCHEMA}
    row["benchmark"] = benchmark
    unknown = set(fields) - set(row)
    if unknown:
        raise KeyError(f"not columns of the tidy table: {sorted(unknown)}")
    row.update(fields)
    return row


# ------------------------------------------------------------------------------ readers
def _as_text(column: pd.Series) -> pd.Series:
    """Text view of a column: NaN -> "", 10.0 -> "10" (CSV round trips turn ids into floats)."""
    if pd.api.types.is_float_dtype(column):
        integral = column.notna() & (column % 1 == 0)
        text = column.astype(str)
        text[integral] = column[integral].astype("int64").astype(str)
        text[column.isna()] = ""
        return text.astype(object)
    return column.where(column.notna(), "").astype(str).astype(object)


def _as_bool(v: object) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return False
    return bool(v)


def normalise_tidy(tidy: pd.DataFrame) -> pd.DataFrame:
    """A checked copy of a tidy table with every column of TIDY_COLUMNS present and typed."""
    if not isinstance(tidy, pd.DataFrame):
        raise TypeError(f"expected the tidy results table as a pandas DataFrame, got {type(tidy).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in tidy.columns]
    if missing:
        raise ValueError(f"tidy table lacks column(s) {missing}; it needs at least {list(REQUIRED_COLUMNS)} "
                         "(build it with the workflow's results_tidy step)")
    out = tidy.reset_index(drop=True)  # a fresh frame; concatenated inputs may repeat index labels
    for name, default in OPTIONAL_COLUMNS.items():
        if name not in out.columns:
            out[name] = default
    for name in TEXT_COLUMNS:
        out[name] = _as_text(out[name])
    for name in NUMERIC_COLUMNS:
        converted = pd.to_numeric(out[name], errors="coerce")
        bad = converted.isna() & out[name].notna() & (_as_text(out[name]) != "")
        if bad.any():
            raise ValueError(f"tidy column '{name}' holds non-numbers such as {out.loc[bad, name].iloc[0]!r}; "
                             "write numbers (or leave the cell empty)")
        out[name] = converted.astype(float)
    for name in (c.name for c in SCHEMA if c.kind == BOOL):
        out[name] = out[name].map(_as_bool)
    # An ablation written only as "param=value" gets its param/value columns filled in.
    needs_split = (out["ablation"] != "") & (out["ablation_param"] == "")
    if needs_split.any():
        parts = out.loc[needs_split, "ablation"].str.split("=", n=1, expand=True)
        out.loc[needs_split, "ablation_param"] = parts[0].str.strip()
        out.loc[needs_split, "ablation_value"] = parts[1].fillna("").str.strip() if parts.shape[1] > 1 else ""
    return out


def load_tidy(path: str | Path) -> pd.DataFrame:
    """Read results_tidy.csv or .parquet and normalise it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tidy table {path} does not exist; run the workflow's results_tidy step first")
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return normalise_tidy(frame)


def ordered_datasets(tidy: pd.DataFrame) -> list[str]:
    """Datasets in the order they first appear (the workflow writes them in config order)."""
    return list(dict.fromkeys(tidy["dataset"]))
