"""Positive controls: whether the benchmark measures at all, judged by the demo oracle before any claim.

A harness whose miniature cannot separate a working method from a broken one cannot catch a bug, so
every demo run measures three things whose answer is known (issue 18), against the config's
`controls` thresholds:

- the source teacher (its many-step sampler) on the source domain: in-domain rate and mode coverage;
- the few-step student distilled from it on source data (the shared `distill` stage of dmd2_ft and
  unidad_pre), on the source domain beside its teacher: the premise of every distillation method.
  Its in-domain rate (mean over seeds) lies within `student_max_in_domain_gap` of the teacher's,
  either way ("close to its teacher"), and its mode coverage is at least `student_min_coverage_ratio`
  of the teacher's;
- FT (fine-tuning the teacher on the shots) on each target: in-target rate (mean over seeds), and its
  mode coverage shown beside the shots' own.

On the text-conditioned demo (a teacher report with `subject_oracle`: the source teacher sampled with
each subject's prompts without the unique token, judged by the subject oracle) the checks are SDP's,
the source teacher draws what its source captions name (kind, colour and context, one sample per caption:
share >= sdp_teacher_min_caption), and per subject: it follows the prompts (context-follows rate >=
sdp_teacher_min_context),
the source teacher does not show the subject (subject-present rate <= sdp_teacher_max_subject: the
subject is absent from the source, else personalization shows nothing), and DreamBooth (`ft_method`)
shows it (subject-present rate, mean over seeds, >= sdp_ft_min_subject).

`measure_controls` returns one row per check (CONTROL_COLUMNS): the tidy form the workflow writes to
tables/controls.csv. A check is "pass", "FAIL", "not measured" (no oracle, or the config runs no such
model) or "shown" (a number shown beside its reference, with no threshold).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from unidad.results.display import MISSING, metric_name
from unidad.results.methods import MethodCatalogue, catalogue
from unidad.results.schema import normalise_tidy, ordered_datasets
from unidad.results.select import DEFAULT_NFE, select_normalised

PASS, FAIL, NOT_MEASURED, SHOWN = "pass", "FAIL", "not measured", "shown"
CONTROL_COLUMNS = ("control", "dataset", "metric", "subject", "value", "std", "n", "values", "reference",
                   "reference_label", "low", "high", "requirement", "status", "detail")
IN_DOMAIN, COVERAGE = "oracle_in_domain", "oracle_mode_coverage"
_REPORT_KEYS = {IN_DOMAIN: "in_domain_rate", COVERAGE: "mode_coverage"}
SUBJECT, CONTEXT = "oracle_subject", "oracle_context"
_TOLERANCE = 1e-9  # rates are ratios of counts: 1.0 must meet ">= 1.0"


@dataclass(frozen=True)
class Thresholds:
    """The config's `controls` block (workflow/schemas/config.schema.yaml documents each key)."""
    teacher_min_in_domain: float = 0.97
    teacher_min_mode_coverage: float = 1.0
    student_max_in_domain_gap: float = 0.05
    student_min_coverage_ratio: float = 0.9
    ft_method: str = "ft"
    ft_min_in_target: float = 0.8
    max_seed_std: float = 0.10
    claims_min_se: float = 2.0
    sdp_teacher_min_caption: float = 0.5
    sdp_teacher_min_context: float = 0.5
    sdp_teacher_max_subject: float = 0.1
    sdp_ft_min_subject: float = 0.5

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> "Thresholds":
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"config key controls: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


def _check(control: str, dataset: str, metric: str, subject: str, values: Sequence[float], *,
           reference: float = float("nan"), reference_label: str = "", low: float = float("nan"),
           high: float = float("nan"), requirement: str = "", detail: str = "") -> dict[str, Any]:
    series = pd.Series(list(values), dtype=float)
    value = series.mean() if len(series) else float("nan")
    if pd.isna(value):
        status = NOT_MEASURED
    elif pd.isna(low) and pd.isna(high):
        status = SHOWN
    else:
        ok = (pd.isna(low) or value >= low - _TOLERANCE) and (pd.isna(high) or value <= high + _TOLERANCE)
        status = PASS if ok else FAIL
    return {"control": control, "dataset": dataset, "metric": metric, "subject": subject, "value": value,
            "std": series.std() if len(series) > 1 else float("nan"), "n": int(series.notna().sum()),
            "values": ";".join(f"{v:.4f}" for v in series), "reference": reference,
            "reference_label": reference_label, "low": low, "high": high, "requirement": requirement,
            "status": status, "detail": detail}


def _teacher_checks(report: Mapping[str, Any] | None, t: Thresholds) -> list[dict]:
    oracle = (report or {}).get("oracle")
    domain = (report or {}).get("oracle_domain", "source")
    steps = (report or {}).get("timing", {}).get("nfe", "")
    subject = f"source teacher ({steps} steps)" if steps else "source teacher"
    detail = "" if oracle else "no oracle verdict on the source domain (the source is not a demo domain)"
    values = {m: [oracle[key]] if oracle else [] for m, key in _REPORT_KEYS.items()}
    return [
        _check("source_teacher", domain, IN_DOMAIN, subject, values[IN_DOMAIN], low=t.teacher_min_in_domain,
               requirement=f">= {t.teacher_min_in_domain:g}", detail=detail),
        _check("source_teacher", domain, COVERAGE, subject, values[COVERAGE], low=t.teacher_min_mode_coverage,
               requirement="every mode" if t.teacher_min_mode_coverage >= 1 else f">= {t.teacher_min_mode_coverage:g}",
               detail=detail),
    ]


def _student_checks(teacher: Mapping[str, Any] | None, students: Sequence[Mapping[str, Any]],
                    t: Thresholds) -> list[dict]:
    oracle = (teacher or {}).get("oracle")
    domain = (teacher or {}).get("oracle_domain", "source")
    judged = sorted((s for s in students if s.get("oracle")),
                    key=lambda s: (s.get("about", {}).get("stage", ""), s.get("about", {}).get("seed", 0)))
    if not judged:
        reason = ("no few-step student distilled from the source teacher on source data in this config's "
                  "methods (dmd2_ft and unidad_pre distil one)") if not students else "no oracle verdict"
    elif not oracle:
        reason = "no oracle verdict on the teacher to compare with"
    else:
        reason = ""
    teacher_fails = oracle and (oracle["in_domain_rate"] < t.teacher_min_in_domain - _TOLERANCE
                                or oracle["mode_coverage"] < t.teacher_min_mode_coverage - _TOLERANCE)
    if judged and teacher_fails:
        reason = "its teacher fails its own control: being close to it shows little"
    nfe = judged[0].get("timing", {}).get("nfe", "") if judged else ""
    subject = f"source student (NFE {nfe})" if nfe else "source student"
    # several distillation stages (dmd2, dpdmd, ...) may each distil a source student: name the stage then
    named = len({s.get("about", {}).get("stage") for s in judged}) > 1

    def label(s):
        about = s.get("about", {})
        return f"{about.get('stage', '?')} seed {about.get('seed', '?')}" if named else f"seed {about.get('seed', '?')}"

    seeds = ", ".join(f"{label(s)}: {s['oracle']['in_domain_rate']:.3f}" for s in judged)
    values = {m: [s["oracle"][_REPORT_KEYS[m]] for s in judged] if oracle else [] for m in _REPORT_KEYS}
    ref = {m: oracle[_REPORT_KEYS[m]] if oracle else float("nan") for m in _REPORT_KEYS}
    gap, ratio = t.student_max_in_domain_gap, t.student_min_coverage_ratio
    return [
        _check("source_student", domain, IN_DOMAIN, subject, values[IN_DOMAIN], reference=ref[IN_DOMAIN],
               reference_label="its teacher", low=ref[IN_DOMAIN] - gap, high=ref[IN_DOMAIN] + gap,
               requirement=f"within ±{gap:g} of its teacher", detail="; ".join(p for p in (seeds, reason) if p)),
        _check("source_student", domain, COVERAGE, subject, values[COVERAGE], reference=ref[COVERAGE],
               reference_label="its teacher", low=ratio * ref[COVERAGE],
               requirement=f">= {ratio:g} x its teacher's", detail=reason),
    ]


def _ft_checks(tidy: pd.DataFrame | None, t: Thresholds, targets: Sequence[str] | None,
               methods: MethodCatalogue) -> list[dict]:
    rows = pd.DataFrame(columns=["method", "dataset", "metric", "value"])
    if tidy is not None and len(tidy):
        frame = normalise_tidy(tidy)
        frame = frame[frame["metric"].isin(_REPORT_KEYS) & frame["method"].isin([t.ft_method, "training_shots"])]
        if len(frame):
            rows = select_normalised(frame, "final", DEFAULT_NFE, methods=methods)
    datasets = ordered_datasets(rows)
    for target in targets or ():
        if not any(d == target or d.startswith(f"{target}@") for d in datasets):
            datasets.append(target)
    out = []
    for dataset in datasets:
        here = rows[rows["dataset"] == dataset]

        def values(method: str, metric: str) -> list[float]:
            return list(here.loc[(here["method"] == method) & (here["metric"] == metric), "value"])

        shots = {m: (values("training_shots", m) or [float("nan")])[0] for m in _REPORT_KEYS}
        ft = values(t.ft_method, IN_DOMAIN)
        detail = "" if ft else f"no oracle rows of {t.ft_method} on {dataset}"
        out.append(_check("ft", dataset, IN_DOMAIN, t.ft_method, ft, reference=shots[IN_DOMAIN],
                          reference_label="the shots", low=t.ft_min_in_target,
                          requirement=f">= {t.ft_min_in_target:g}", detail=detail))
        out.append(_check("ft", dataset, COVERAGE, t.ft_method, values(t.ft_method, COVERAGE),
                          reference=shots[COVERAGE], reference_label="the shots",
                          requirement="shown beside the shots' own", detail=detail))
    return out


def _sdp_checks(tidy: pd.DataFrame | None, report: Mapping[str, Any], t: Thresholds,
                targets: Sequence[str] | None, methods: MethodCatalogue) -> list[dict]:
    oracle = report["subject_oracle"]
    ft = pd.DataFrame(columns=["method", "dataset", "metric", "value"])
    if tidy is not None and len(tidy):
        frame = normalise_tidy(tidy)
        frame = frame[(frame["metric"] == SUBJECT) & (frame["method"] == t.ft_method)]
        if len(frame):
            ft = select_normalised(frame, "final", DEFAULT_NFE, methods=methods)
    out = []
    captions = report.get("captions")
    if captions is not None:  # the demo's teacher: does it draw the kind, colour and context its captions name?
        out.append(_check("sdp_teacher", "source", "caption_followed", "source teacher (source captions)",
                          [captions["all_rate"]], low=t.sdp_teacher_min_caption,
                          requirement=f">= {t.sdp_teacher_min_caption:g} (kind, colour and context as captioned)"))
    teacher = "source teacher (token-free prompts)"
    for target in list(dict.fromkeys([*(targets or ()), *oracle])):
        verdict = oracle.get(target) or {}
        missing = "" if verdict else f"no subject_oracle verdict of the source teacher on {target}"
        context = [verdict["context_follows_rate"]] if verdict else []
        present = [verdict["subject_present_rate"]] if verdict else []
        out.append(_check("sdp_teacher", target, CONTEXT, teacher, context, low=t.sdp_teacher_min_context,
                          requirement=f">= {t.sdp_teacher_min_context:g} (follows the prompts)", detail=missing))
        out.append(_check("sdp_teacher", target, SUBJECT, teacher, present, high=t.sdp_teacher_max_subject,
                          requirement=f"<= {t.sdp_teacher_max_subject:g} (the subject is absent from the source)",
                          detail=missing))
        values = list(ft.loc[ft["dataset"] == target, "value"])
        out.append(_check("ft", target, SUBJECT, t.ft_method, values, reference=present[0] if present else float("nan"),
                          reference_label="the source teacher", low=t.sdp_ft_min_subject,
                          requirement=f">= {t.sdp_ft_min_subject:g}",
                          detail="" if values else f"no oracle_subject rows of {t.ft_method} on {target}"))
    return out


def measure_controls(tidy: pd.DataFrame | None, teacher_report: Mapping[str, Any] | None,
                     student_reports: Sequence[Mapping[str, Any]] = (), thresholds: Mapping[str, Any] | None = None,
                     *, targets: Sequence[str] | None = None, methods: MethodCatalogue | None = None) -> pd.DataFrame:
    """Every control check, one row each (CONTROL_COLUMNS). `teacher_report` and `student_reports`: the
    JSON reports of unidad.jobs.teachers.teacher_report (a student's carries `about`: slug, seed...);
    `tidy`: the tidy table (FT's and the shots' oracle rows); `targets`: the config's targets, so that a
    target without FT rows shows as not measured."""
    t = thresholds if isinstance(thresholds, Thresholds) else Thresholds.from_mapping(thresholds)
    if (teacher_report or {}).get("subject_oracle"):
        rows = _sdp_checks(tidy, teacher_report, t, targets, catalogue(methods))
        return pd.DataFrame(rows, columns=list(CONTROL_COLUMNS))
    rows = (_teacher_checks(teacher_report, t) + _student_checks(teacher_report, student_reports, t)
            + _ft_checks(tidy, t, targets, catalogue(methods)))
    return pd.DataFrame(rows, columns=list(CONTROL_COLUMNS))


_NUMBERS = ("value", "std", "n", "reference", "low", "high")


def load_controls(path: str | Path) -> pd.DataFrame:
    """Read tables/controls.csv back: numbers as numbers, empty text as ''."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"controls file {path} does not exist; run the workflow's controls step first")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in CONTROL_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"controls file {path} lacks column(s) {missing}; write it with measure_controls")
    for column in _NUMBERS:
        frame[column] = pd.to_numeric(frame[column].replace("", float("nan")), errors="raise")
    frame["n"] = frame["n"].fillna(0).astype(int)
    return frame[list(CONTROL_COLUMNS)]


def _describe(row: Mapping[str, Any]) -> str:
    value = MISSING if pd.isna(row["value"]) else f"{row['value']:.3f}"
    reference = "" if pd.isna(row["reference"]) else f"; {row['reference_label']} {row['reference']:.3f}"
    return (f"{row['subject']} {metric_name(row['metric'])} on {row['dataset']}: {value} "
            f"(required {row['requirement']}{reference})")


def failed_controls(controls: pd.DataFrame) -> list[str]:
    """One line per failed check."""
    return [_describe(r) for _, r in controls.iterrows() if r["status"] == FAIL]


def unmeasured_controls(controls: pd.DataFrame) -> list[str]:
    """One line per check with a threshold that could not be measured."""
    return [f"{r['subject']} {metric_name(r['metric'])} on {r['dataset']}: {r['detail'] or 'not measured'}"
            for _, r in controls.iterrows() if r["status"] == NOT_MEASURED and r["requirement"] != ""
            and not r["requirement"].startswith("shown")]


def controls_banner(controls: pd.DataFrame) -> list[str]:
    """The lines the report opens with: which controls failed (and that the claims are then not
    meaningful), or that every one passed."""
    failed, unmeasured = failed_controls(controls), unmeasured_controls(controls)
    lines = []
    if failed:
        lines.append(f"**CONTROLS FAILED ({len(failed)})**: this run cannot tell a working method from a broken "
                     "one, so the claims table's verdicts are not meaningful.")
        lines += [f"- FAIL: {line}" for line in failed]
    if unmeasured:
        lines += [""] if lines else []  # a blank line ends the list above
        lines.append(f"**Controls not measured ({len(unmeasured)})**:")
        lines += [f"- {line}" for line in unmeasured]
    if not failed and not unmeasured:
        lines.append("**Every positive control passed.**")
    return lines


def controls_table(controls: pd.DataFrame) -> pd.DataFrame:
    """The controls as a display table (control x check), with the banner as its first notes."""
    body = pd.DataFrame({
        "dataset": controls["dataset"],
        "check": [metric_name(m) for m in controls["metric"]],
        "subject": controls["subject"],
        "value": [MISSING if not n else f"{v:.3f}" + (f" ± {s:.3f} (n={n})" if n > 1 else "")
                  for v, s, n in zip(controls["value"], controls["std"], controls["n"])],
        "reference": [MISSING if pd.isna(v) else f"{label} {v:.3f}"
                      for v, label in zip(controls["reference"], controls["reference_label"])],
        "required": controls["requirement"],
        "status": controls["status"],
        "detail": controls["detail"],
    })
    body.index = pd.Index(controls["control"], name="control")
    failed = failed_controls(controls)
    caption = ("Positive controls: " + (f"{len(failed)} FAILED; the claims are not meaningful."
                                        if failed else "what a working harness must measure."))
    body.attrs = {
        "caption": caption,
        "notes": [line.lstrip("- ") for line in controls_banner(controls) if line]
                 + ["Values: mean ± std over seeds (n=seeds where several); the source teacher is one model."],
        "best_cells": [],
        "stats": controls.to_dict("records"),
    }
    return body
