"""The paper's claims, checked on the tidy results table.

A claim is a set of comparisons of means over seeds ("A is better than B on metric M"). Each
comparison is decided only when its difference of means exceeds `min_se` (config controls.claims_min_se,
default 2) standard errors of that difference, SE = sqrt(s_a^2/n_a + s_b^2/n_b) with the sample stds
over seeds: beyond it in the claimed direction it holds, beyond it the other way it does not, within it
(or with one seed, where there is no spread to measure) it is undecided. A claim holds on a dataset
when every comparison holds, does not when any comparison does not, and is undecided otherwise; it is
"not tested" when a number it needs is missing.

With 2-3 seeds the stds are themselves rough: `min_se` = 2 is a screen against seed noise, not a
significance test (a Welch t test at 95% with 1-2 degrees of freedom would need 4.3-12.7 SE).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import pandas as pd

from unidad.results.aggregate import aggregate
from unidad.results.display import decimals, metric_direction, metric_label, protocol_text
from unidad.results.methods import MethodCatalogue, catalogue
from unidad.results.schema import normalise_tidy, ordered_datasets
from unidad.results.select import DEFAULT_NFE, select_rows

HELD, NOT_HELD, UNDECIDED, NOT_TESTED = "held", "not held", "undecided", "not tested"
DEFAULT_MIN_SE = 2.0
TWO_STAGE_METHODS = ("ft_dmd2", "dmd2_ft")
CLAIMS = {
    1: "Uni-DAD beats both two-stage pipelines (ft_dmd2, dmd2_ft) at {nfe} NFE in FID and Intra-LPIPS",
    2: "The target teacher helps most on the far domain (FID gain of unidad over unidad_src)",
    3: "A multi-head discriminator beats a single-head one (FID)",
    4: "The GAN alone overfits (dmd_weight=0: lower Intra-LPIPS / mode coverage than the full method)",
    5: "DP-DMD keeps more modes than DMD2 at the same NFE ({nfe}) without a discriminator (mode coverage, Intra-LPIPS)",
    6: "Imagine Flash: backward distillation beats forward-noised distillation at 1-3 NFE (FID, in-domain rate)",
    7: "Imagine Flash: noise correction at the first re-noise improves the few-step samples (FID, in-domain rate)",
}
# Claims 5-7 are checked where their methods ran (config/seed_methods.yaml): (DP-DMD, DMD2) pairs of the
# same pipeline; the Imagine Flash student whose `distill_input: forward` ablation is the comparison.
DP_DMD_PAIRS = (("ft_dpdmd", "ft_dmd2"), ("dpdmd_ft", "dmd2_ft"))
BACKWARD_METHOD, BACKWARD_NFES = "ft_iflash", (1, 2, 3)
QUALITY = ("fid", "oracle_in_domain")
COLUMNS = ("claim_id", "claim", "dataset", "held", "evidence", "seeds", "margin_se")
_KEY = ["method", "dataset", "ablation_param", "ablation_value", "metric", "extractor", "variant"]


@dataclass(frozen=True)
class Group:
    """Mean, std and seed count of one metric for one method on one dataset."""
    label: str
    mean: float
    std: float
    n: int

    def text(self, decimals: int) -> str:
        spread = "" if pd.isna(self.std) else f" ± {self.std:.{decimals}f}"
        return f"{self.label} {self.mean:.{decimals}f}{spread} (n={self.n})"


def standard_error(groups: Sequence[Group]) -> float:
    """Standard error of a sum or difference of the groups' means, sqrt(sum s^2/n); NaN when a group has
    fewer than two seeds (no spread to measure)."""
    if not groups or any(g.n < 2 or pd.isna(g.std) for g in groups):
        return float("nan")
    return math.sqrt(sum(g.std ** 2 / g.n for g in groups))


def decide(toward: float, se: float, min_se: float) -> str:
    """HELD / NOT_HELD / UNDECIDED for a difference `toward` (positive: in the claimed direction)."""
    if pd.isna(se) or pd.isna(toward):
        return UNDECIDED
    if toward > min_se * se:
        return HELD
    return NOT_HELD if toward < -min_se * se else UNDECIDED


def _margin(toward: float, se: float) -> float:
    """The difference in standard errors (signed: positive in the claimed direction)."""
    if pd.isna(se):
        return float("nan")
    return math.copysign(math.inf, toward) if se == 0 and toward != 0 else (0.0 if se == 0 else toward / se)


def _se_text(se: float, toward: float, digits: int) -> str:
    if pd.isna(se):
        return "SE n/a (one seed: no spread)"
    return f"SE {se:.{digits}f} ({_margin(toward, se):+.1f} SE)"


@dataclass(frozen=True)
class Comparison:
    """`better` is claimed to beat `worse` on `metric` (direction from the metric registry)."""
    metric: str
    protocol: str
    better: Group
    worse: Group

    @property
    def toward(self) -> float:
        """The difference of means, positive when `better` is better (the metric's direction)."""
        diff = self.better.mean - self.worse.mean
        return diff if metric_direction(self.metric) else -diff

    @property
    def se(self) -> float:
        return standard_error([self.better, self.worse])

    @property
    def margin(self) -> float:
        return _margin(self.toward, self.se)

    def verdict(self, min_se: float) -> str:
        return decide(self.toward, self.se, min_se)

    def evidence(self) -> str:
        digits = decimals(self.metric)
        where = f" [{self.protocol}]" if self.protocol else ""
        diff = self.better.mean - self.worse.mean
        return (f"{metric_label(self.metric)}{where}: {self.better.text(digits)} vs {self.worse.text(digits)}; "
                f"Δ={diff:+.{digits}f}, {_se_text(self.se, self.toward, digits)}")


class _Stats:
    """Mean/std/n lookup over the selected rows, keyed by method, dataset, ablation and protocol."""

    def __init__(self, rows: pd.DataFrame):
        self.rows = rows
        self.table = aggregate(rows, by=_KEY) if not rows.empty else pd.DataFrame(columns=_KEY + ["mean", "std", "count"])

    def protocols(self, metric: str, dataset: str | None = None) -> list[tuple[str, str]]:
        """The (extractor, variant) pairs that measured `metric` (on `dataset`: an oracle is its domain's own)."""
        sub = self.table[self.table["metric"] == metric]
        if dataset is not None:
            sub = sub[sub["dataset"] == dataset]
        return list(dict.fromkeys(zip(sub["extractor"], sub["variant"])))

    def group(self, method: str, dataset: str, metric: str, protocol: tuple[str, str],
              ablation: tuple[str, str] = ("", ""), label: str | None = None) -> Group | None:
        t = self.table
        hit = t[(t["method"] == method) & (t["dataset"] == dataset) & (t["metric"] == metric)
                & (t["extractor"] == protocol[0]) & (t["variant"] == protocol[1])
                & (t["ablation_param"] == ablation[0]) & (t["ablation_value"] == ablation[1])]
        if hit.empty or pd.isna(hit["mean"].iloc[0]):
            return None
        r = hit.iloc[0]
        return Group(label or method, float(r["mean"]), float(r["std"]), int(r["count"]))


def _seeds(groups: Iterable[Group]) -> str:
    counts = sorted({g.n for g in groups})
    if not counts:
        return ""
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def combine(verdicts: Sequence[str]) -> str:
    """A claim of several comparisons: held when all hold, not held when any does not, else undecided."""
    if verdicts and all(v == HELD for v in verdicts):
        return HELD
    return NOT_HELD if NOT_HELD in verdicts else UNDECIDED


def _margin_text(margins: Sequence[float]) -> str:
    """The weakest comparison's difference in standard errors, signed (positive: the claimed direction),
    which is the one that decides the claim's verdict; 'n/a' without a spread."""
    if not margins or any(pd.isna(m) for m in margins):
        return "n/a"
    return f"{min(margins):+.1f}"


def _row(claim_id: int, text: str, dataset: str, comparisons: list[Comparison], missing: list[str],
         min_se: float) -> dict:
    groups = [g for c in comparisons for g in (c.better, c.worse)]
    evidence = "; ".join(c.evidence() for c in comparisons)
    if missing or not comparisons:
        reason = "missing: " + ", ".join(missing or ["every number the claim needs"])
        return {"claim_id": claim_id, "claim": text, "dataset": dataset, "held": NOT_TESTED,
                "evidence": reason + (f". Partial: {evidence}" if evidence else ""), "seeds": _seeds(groups),
                "margin_se": "n/a"}
    return {"claim_id": claim_id, "claim": text, "dataset": dataset,
            "held": combine([c.verdict(min_se) for c in comparisons]), "evidence": evidence,
            "seeds": _seeds(groups), "margin_se": _margin_text([c.margin for c in comparisons])}


def _not_tested(claim_id: int, text: str, reason: str, dataset: str = "") -> dict:
    return {"claim_id": claim_id, "claim": text, "dataset": dataset, "held": NOT_TESTED, "evidence": reason,
            "seeds": "", "margin_se": "n/a"}


# ------------------------------------------------------------------------------ the claims
def _claim_beats_two_stage(stats: _Stats, datasets: list[str], nfe: int, min_se: float) -> list[dict]:
    text = CLAIMS[1].format(nfe=nfe)
    out = []
    for dataset in datasets:
        comparisons, missing = [], []
        for metric in ("fid", "intra_lpips"):
            protocols = stats.protocols(metric, dataset)
            if not protocols:
                missing.append(f"{metric} not measured")
            for protocol in protocols:
                ours = stats.group("unidad", dataset, metric, protocol)
                for rival in TWO_STAGE_METHODS:
                    theirs = stats.group(rival, dataset, metric, protocol)
                    if ours is None or theirs is None:
                        missing.append(f"{metric} of {'unidad' if ours is None else rival}")
                    else:
                        comparisons.append(Comparison(metric, protocol_text(*protocol), ours, theirs))
        out.append(_row(1, text, dataset, comparisons, sorted(set(missing)), min_se))
    return out


def _claim_target_teacher_far(stats: _Stats, datasets: list[str], far_datasets: Sequence[str],
                              min_se: float) -> list[dict]:
    text = CLAIMS[2]
    if not far_datasets:
        return [_not_tested(2, text, "no dataset marked far: pass far_datasets=[...] (the targets far from the source)")]
    unknown = [d for d in far_datasets if d not in datasets]
    if unknown:
        return [_not_tested(2, text, f"far dataset(s) {unknown} have no results; datasets are {datasets}")]
    far = [d for d in datasets if d in far_datasets]
    near = [d for d in datasets if d not in far_datasets]
    label = f"far: {', '.join(far)}; near: {', '.join(near)}"
    if not near:
        return [_not_tested(2, text, "every dataset is marked far; the claim needs a near one too", label)]
    protocols = stats.protocols("fid")
    if not protocols:
        return [_not_tested(2, text, "fid not measured", label)]
    rows = []
    for protocol in protocols:
        gains: dict[str, tuple[float, Group, Group]] = {}
        missing = []
        for dataset in datasets:
            without = stats.group("unidad_src", dataset, "fid", protocol)
            with_teacher = stats.group("unidad", dataset, "fid", protocol)
            if without is None or with_teacher is None:
                missing.append(f"fid of {'unidad_src' if without is None else 'unidad'} on {dataset}")
            else:
                gains[dataset] = (without.mean - with_teacher.mean, without, with_teacher)
        where = f" [{protocol_text(*protocol)}]" if protocol_text(*protocol) else ""
        if missing:
            rows.append(_not_tested(2, text, "missing: " + ", ".join(missing), label))
            continue
        worst_far = min(far, key=lambda d: gains[d][0])
        best_near = max(near, key=lambda d: gains[d][0])
        gap = gains[worst_far][0] - gains[best_near][0]
        se = standard_error([*gains[worst_far][1:], *gains[best_near][1:]])
        parts = [f"{d} [{'far' if d in far else 'near'}]: {gains[d][0]:+.2f} "
                 f"({gains[d][1].text(2)}, {gains[d][2].text(2)})" for d in datasets]
        evidence = (f"FID gain of the target teacher (unidad_src - unidad){where}: " + "; ".join(parts)
                    + f"; smallest far gain - largest near gain = {gap:+.2f}"
                    + f", {_se_text(se, gap, 2)}")
        groups = [g for d in datasets for g in gains[d][1:]]
        rows.append({"claim_id": 2, "claim": text, "dataset": label, "held": decide(gap, se, min_se),
                     "evidence": evidence, "seeds": _seeds(groups), "margin_se": _margin_text([_margin(gap, se)])})
    return rows


def _is_single_head(value: str) -> bool:
    v = value.strip().lower().replace("-", "_")
    return v in ("single", "single_head", "bottleneck", "1")


def _ablation_vs_reference(stats: _Stats, claim_id: int, param: str, is_ablated, metrics: Sequence[str],
                           methods: MethodCatalogue, min_se: float, is_reference=None) -> list[dict]:
    """The claim "the reference beats the ablated run": ablation rows whose value `is_ablated` accepts
    against the same method's reference, i.e. ablation rows whose value `is_reference` accepts when
    there are any, else the method's main-grid run."""
    text = CLAIMS[claim_id]
    t = stats.table
    ablated = t[(t["ablation_param"] == param) & t["ablation_value"].map(is_ablated)]
    if ablated.empty:
        return [_not_tested(claim_id, text, f"no ablation rows with ablation_param == '{param}' for this claim "
                                            "(add it to the config's `ablations`, as config/claims.yaml does)")]
    rows = []
    for method in methods.ordered(ablated["method"]):
        for dataset in ordered_datasets(ablated[ablated["method"] == method]):
            here = t[(t["method"] == method) & (t["dataset"] == dataset) & (t["ablation_param"] == param)]
            ablated_value = sorted(set(here["ablation_value"][here["ablation_value"].map(is_ablated)]))[0]
            reference_values = sorted(set(here["ablation_value"][here["ablation_value"].map(is_reference)])) \
                if is_reference is not None else []
            reference_key = (param, reference_values[0]) if reference_values else ("", "")
            reference_label = f"{method}[{param}={reference_values[0]}]" if reference_values else f"{method} (main grid)"
            comparisons, missing = [], []
            for metric in metrics:
                for protocol in stats.protocols(metric, dataset):
                    changed = stats.group(method, dataset, metric, protocol, (param, ablated_value),
                                          f"{method}[{param}={ablated_value}]")
                    reference = stats.group(method, dataset, metric, protocol, reference_key, reference_label)
                    if changed is None and reference is None:
                        continue  # this metric was not measured for this pair at all
                    if changed is None or reference is None:
                        absent = f"{method}[{param}={ablated_value}]" if changed is None else reference_label
                        missing.append(f"{metric} of {absent}")
                        continue
                    comparisons.append(Comparison(metric, protocol_text(*protocol), reference, changed))
            if not comparisons and not missing:
                missing.append(f"{' / '.join(metrics)} not measured")
            rows.append(_row(claim_id, text, dataset, comparisons, missing, min_se))
    return rows


def evaluate_claims(tidy: pd.DataFrame, far_datasets: Sequence[str] = (), *, selection: str = "final",
                    nfe: int = DEFAULT_NFE, methods: MethodCatalogue | None = None,
                    min_se: float = DEFAULT_MIN_SE) -> pd.DataFrame:
    """One row per claim (and dataset): held / not held / undecided (within `min_se` standard errors) /
    not tested, and the numbers behind it."""
    methods = catalogue(methods)
    frame = normalise_tidy(tidy)
    rows = select_rows(frame, selection, nfe=nfe, ablation=None, methods=methods)
    stats = _Stats(rows)
    main = rows[rows["ablation"] == ""]
    datasets = ordered_datasets(main) if not main.empty else ordered_datasets(frame)
    out = []
    out += _claim_beats_two_stage(stats, datasets, nfe, min_se)
    out += _claim_target_teacher_far(stats, datasets, list(far_datasets), min_se)
    out += _ablation_vs_reference(stats, 3, "heads", _is_single_head, ["fid"], methods, min_se,
                                  is_reference=lambda v: not _is_single_head(v))
    out += _ablation_vs_reference(stats, 4, "dmd_weight", _is_zero, ["intra_lpips", "oracle_mode_coverage"],
                                  methods, min_se)
    out += _claim_dp_dmd_modes(stats, datasets, nfe, min_se)
    out += _claim_backward_distillation(frame, selection, methods, min_se)
    out += _claim_noise_correction(stats, methods, min_se)
    claims = pd.DataFrame(out, columns=list(COLUMNS))
    claims.attrs = {"notes": [f"Checkpoint: {selection}; few-step methods at NFE {nfe} (claim 6: at each NFE it names)."],
                    "min_se": min_se}
    return claims


def _is_zero(value: str) -> bool:
    try:
        return float(value) == 0.0
    except ValueError:
        return False


def claims_as_table(claims: pd.DataFrame, failed_controls: Sequence[str] | None = None,
                    unmeasured_controls: Sequence[str] = ()) -> pd.DataFrame:
    """The claims frame indexed by claim number, ready for the writers. `failed_controls`: the positive
    controls that failed (unidad.results.controls), None when none were checked; a failed control makes
    every verdict not meaningful, and the caption, the first note and a `controls` column say so."""
    table = claims.set_index("claim_id")
    table.index.name = "#"
    min_se = claims.attrs.get("min_se", DEFAULT_MIN_SE)
    caption = "The paper's claims checked on this harness's numbers (differences of means against their seed spread)."
    notes = [f"held / not held: every difference of means exceeds {min_se:g} standard errors of the difference "
             "(SE = sqrt(s_a^2/n_a + s_b^2/n_b), sample stds over seeds) in the claimed / the opposite direction; "
             "undecided: within it, or one seed (no spread). margin_se: the weakest comparison's difference in SE "
             "(positive: the claimed direction). With 2-3 seeds the stds are rough: a screen against seed noise, not a significance test.",
             *claims.attrs.get("notes", [])]
    if failed_controls:
        caption = "NOT MEANINGFUL (positive controls failed). " + caption
        notes.insert(0, "These verdicts are not meaningful: the harness failed its positive controls ("
                        + "; ".join(failed_controls) + "), so it cannot tell a working method from a broken one.")
        table["controls"] = "failed"
    elif failed_controls is not None:
        table["controls"] = "not measured" if unmeasured_controls else "passed"
        if unmeasured_controls:
            notes.insert(0, "Positive controls not measured (" + "; ".join(unmeasured_controls)
                            + "): nothing shows that this harness can tell a working method from a broken one.")
    table.attrs = {"caption": caption, "notes": notes, "best_cells": [], "stats": []}
    return table


def _compare(stats: _Stats, dataset: str, metrics: Sequence[str], better: tuple[str, tuple[str, str], str],
             worse: tuple[str, tuple[str, str], str]) -> tuple[list[Comparison], list[str]]:
    """`better` beats `worse` on every protocol of `metrics`; each side is (method, ablation, label)."""
    comparisons, missing = [], []
    for metric in metrics:
        for protocol in stats.protocols(metric, dataset):
            a = stats.group(better[0], dataset, metric, protocol, better[1], better[2])
            b = stats.group(worse[0], dataset, metric, protocol, worse[1], worse[2])
            if a is None or b is None:
                missing.append(f"{metric} of {better[2] if a is None else worse[2]}")
            else:
                comparisons.append(Comparison(metric, protocol_text(*protocol), a, b))
    if not comparisons and not missing:
        missing.append(f"{' / '.join(metrics)} not measured")
    return comparisons, missing


def _claim_dp_dmd_modes(stats: _Stats, datasets: list[str], nfe: int, min_se: float) -> list[dict]:
    text, present, out = CLAIMS[5].format(nfe=nfe), set(stats.table["method"]), []
    for ours, theirs in DP_DMD_PAIRS:
        if ours not in present:
            continue
        for dataset in datasets:
            comparisons, missing = _compare(stats, dataset, ("oracle_mode_coverage", "intra_lpips"),
                                            (ours, ("", ""), ours), (theirs, ("", ""), theirs))
            out.append(_row(5, text, dataset, comparisons, missing, min_se))
    return out


def _claim_backward_distillation(frame: pd.DataFrame, selection: str, methods: MethodCatalogue,
                                 min_se: float) -> list[dict]:
    """The Imagine Flash student (backward) against its distill_input=forward ablation, at each NFE."""
    text = CLAIMS[6]
    mine = frame[(frame["method"] == BACKWARD_METHOD) & frame["ablation_param"].isin(["", "distill_input"])]
    if mine.empty:
        return []
    forward = ("distill_input", "forward")
    if not (mine["ablation_value"] == forward[1]).any():
        return [_not_tested(6, text, f"no {BACKWARD_METHOD} rows with distill_input=forward (add that ablation, "
                                     "as config/seed_methods.yaml does)")]
    out = []
    for k in BACKWARD_NFES:
        at_k = mine[mine["nfe"] == k]
        stats = _Stats(select_rows(at_k, selection, nfe=k, ablation=None, methods=methods)) if len(at_k) else None
        for dataset in ordered_datasets(mine):
            if stats is None:
                out.append(_not_tested(6, text, f"no results at {k} NFE", f"{dataset} @ {k} NFE"))
                continue
            comparisons, missing = _compare(stats, dataset, QUALITY,
                                            (BACKWARD_METHOD, ("", ""), f"{BACKWARD_METHOD} (backward)"),
                                            (BACKWARD_METHOD, forward, f"{BACKWARD_METHOD}[distill_input=forward]"))
            out.append(_row(6, text, f"{dataset} @ {k} NFE", comparisons, missing, min_se))
    return out


def _claim_noise_correction(stats: _Stats, methods: MethodCatalogue, min_se: float) -> list[dict]:
    """Each few-step method sampled with noise correction (evaluation.noise_correction) against without."""
    t, text, on = stats.table, CLAIMS[7], ("noise_correction", "on")
    corrected = t[(t["ablation_param"] == on[0]) & (t["ablation_value"] == on[1])]
    out = []
    for method in methods.ordered(corrected["method"]):
        for dataset in ordered_datasets(corrected[corrected["method"] == method]):
            comparisons, missing = _compare(stats, dataset, QUALITY, (method, on, f"{method}[noise_correction]"),
                                            (method, ("", ""), method))
            out.append(_row(7, text, f"{dataset} ({method})", comparisons, missing, min_se))
    return out
