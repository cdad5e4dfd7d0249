"""Tables and claims from a synthetic tidy results table (no training involved).

`make_tidy` builds the table the workflow writes (one row per measured number) with known means:
every seed adds a symmetric offset, so each cell's mean is exactly its centre below.
"""
import hashlib
import os
import re
import shutil
import subprocess

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest

from unidad.metrics.registry import value_names
from unidad.results import (
    HELD,
    MISSING,
    NOT_HELD,
    NOT_TESTED,
    PAPER_RESULTS_CSV,
    UNDECIDED,
    ablation_params,
    aggregate,
    ablation_table,
    compute_table,
    evaluate_claims,
    load_paper_results,
    load_tidy,
    main_table,
    oracle_table,
    paper_comparison,
    to_csv,
    to_latex,
    to_markdown,
    write_all_tables,
)

METHODS = ("ft", "ft_dmd2", "dmd2_ft", "unidad_src", "unidad", "unidad_pre")
DATASETS = ("near", "far")
FINAL_STAGE = {"ft": "ft", "ft_dmd2": "dmd2", "dmd2_ft": "student_ft", "unidad_src": "unidad",
               "unidad": "unidad", "unidad_pre": "unidad"}
EARLIER_ITERATIONS = {"ft_dmd2": 300, "dmd2_ft": 300, "unidad_pre": 600}
# FID / Intra-LPIPS centres at NFE 3, final checkpoint. unidad beats both two-stage pipelines; the
# target teacher's FID gain (unidad_src - unidad) is 2 on near and 35 on far; unidad_pre has the best FID.
FID = {"near": {"ft": 40.0, "ft_dmd2": 45.0, "dmd2_ft": 60.0, "unidad_src": 36.0, "unidad": 34.0, "unidad_pre": 33.0},
       "far": {"ft": 70.0, "ft_dmd2": 75.0, "dmd2_ft": 110.0, "unidad_src": 90.0, "unidad": 55.0, "unidad_pre": 52.0}}
LPIPS = {"near": {"ft": 0.45, "ft_dmd2": 0.40, "dmd2_ft": 0.20, "unidad_src": 0.46, "unidad": 0.50, "unidad_pre": 0.48},
         "far": {"ft": 0.35, "ft_dmd2": 0.38, "dmd2_ft": 0.10, "unidad_src": 0.30, "unidad": 0.42, "unidad_pre": 0.40}}
EXTRACTOR = "demo-cnn-v1"
EXTRACTOR_SHA = "ab" * 32
LPIPS_ID = "demo-lpips-v1"


def _metric_values(fid: float, lpips: float, nfe: float) -> dict[str, float]:
    coverage = min(1.0, lpips * 1.6)
    return {
        "fid": fid, "kid": fid / 1000.0, "prdc_precision": 0.8 - fid / 500.0, "prdc_recall": lpips,
        "prdc_density": 1.0 - fid / 300.0, "prdc_coverage": coverage, "intra_lpips": lpips,
        "oracle_in_domain": 1.0 - fid / 400.0, "oracle_mode_coverage": coverage, "oracle_tv": 1.0 - coverage / 2,
        "speed_images_per_s": 1000.0 / nfe, "speed_s_per_image": nfe / 1000.0,
    }


def _protocol(metric: str) -> tuple[str, str, str]:
    """(extractor, sha256, variant) of a metric in the synthetic harness."""
    if metric in ("fid", "kid") or metric.startswith("prdc_"):
        return EXTRACTOR, EXTRACTOR_SHA, "torch-fidelity" if metric in ("fid", "kid") else ""
    if metric == "intra_lpips":
        return LPIPS_ID, "cd" * 32, "cdc"
    return "", "", ""


def make_tidy(methods=METHODS, seeds=(0, 1, 2), datasets=DATASETS, fid=None, lpips=None,
              ablations=("a", "heads", "dmd_weight"), training_shots=True) -> pd.DataFrame:
    fid = fid or FID
    lpips = lpips or LPIPS
    offsets = dict(zip(seeds, np.linspace(-1.0, 1.0, len(seeds)) if len(seeds) > 1 else [0.0]))
    records = []

    def emit(method, dataset, seed, *, selection, step, final, nfe, fid_c, lpips_c, ablation="", metrics=None):
        values = _metric_values(fid_c, lpips_c, nfe)
        iterations = EARLIER_ITERATIONS.get(method, 0) + step
        param, _, value = ablation.partition("=")
        option = {"a": "dual_weight", "heads": "discriminator"}.get(param, param)
        for metric, centre in values.items():
            if metrics is not None and metric not in metrics:
                continue
            extractor, sha, variant = _protocol(metric)
            spread = 0.02 * abs(centre) + 1e-4
            records.append({
                "benchmark": "demo", "dataset": dataset, "shots": 10, "method": method,
                "stage": FINAL_STAGE.get(method, "dmd2"), "seed": seed,
                "slug": f"{method}__{dataset}__s{seed}{'__' + ablation if ablation else ''}", "step": step,
                "nfe": nfe, "final": final, "selection": selection, "metric": metric, "variant": variant,
                "extractor": extractor, "extractor_sha256": sha, "value": centre + offsets[seed] * spread,
                "n_generated": 1000, "n_reference": 5000, "iterations": iterations,
                "images_seen": iterations * 16, "device_hours": iterations * 1e-4, "wall_seconds": iterations * 0.5,
                "ablation": ablation, "ablation_param": param, "ablation_value": value, "ablation_option": option,
            })

    for dataset in datasets:
        for method in methods:
            base_fid = fid[dataset].get(method, 50.0)
            base_lpips = lpips[dataset].get(method, 0.3)
            nominal = 25 if method == "ft" else 3
            sweep = [25] if method == "ft" else [1, 2, 3, 4]
            for seed in seeds:
                for step in (150, 300):  # every checkpoint at the method's own NFE
                    emit(method, dataset, seed, selection="all", step=step, final=step == 300, nfe=nominal,
                         fid_c=base_fid + (10.0 if step == 150 else 0.0), lpips_c=base_lpips)
                for nfe in sweep:  # the NFE sweep at the final checkpoint
                    worse = 1.0 + 0.3 * (3 - nfe) / 3 if method != "ft" else 1.0
                    emit(method, dataset, seed, selection="final", step=300, final=True, nfe=nfe,
                         fid_c=base_fid * worse, lpips_c=base_lpips)
                emit(method, dataset, seed, selection="best_val", step=300, final=True, nfe=nominal,
                     fid_c=base_fid, lpips_c=base_lpips, metrics=("fid", "intra_lpips"))
                emit(method, dataset, seed, selection="best_test", step=150, final=False, nfe=nominal,
                     fid_c=base_fid - 1.0, lpips_c=base_lpips, metrics=("fid", "intra_lpips"))
        for seed in seeds:
            unidad_fid, unidad_lpips = fid[dataset]["unidad"], lpips[dataset]["unidad"]
            common = dict(selection="final", step=300, final=True, nfe=3)
            if "a" in ablations:
                for a, shift in (("0.25", 3.0), ("0.75", 6.0)):
                    emit("unidad", dataset, seed, ablation=f"a={a}", fid_c=unidad_fid + shift,
                         lpips_c=unidad_lpips, **common)
            if "heads" in ablations:
                emit("unidad", dataset, seed, ablation="heads=single", fid_c=unidad_fid + 8.0,
                     lpips_c=unidad_lpips, **common)
            if "dmd_weight" in ablations:
                emit("unidad", dataset, seed, ablation="dmd_weight=0", fid_c=unidad_fid + 20.0,
                     lpips_c=unidad_lpips * 0.5, **common)
        if training_shots:
            emit("training_shots", dataset, 0, selection="final", step=0, final=True, nfe=float("nan"),
                 fid_c=0.0, lpips_c=0.6, metrics=value_names("oracle"))
    return pd.DataFrame.from_records(records)


@pytest.fixture(scope="module")
def tidy() -> pd.DataFrame:
    return make_tidy()


def _cell(table: pd.DataFrame, row, column) -> str:
    return str(table.loc[row, column])


# ------------------------------------------------------------------------------ aggregate
def test_aggregate_mean_std_count_over_seeds():
    frame = pd.DataFrame({"dataset": "near", "method": "unidad", "seed": [0, 1, 2, 0, 1],
                          "metric": ["fid"] * 3 + ["intra_lpips"] * 2, "value": [1.0, 2.0, 6.0, 0.5, 0.7]})
    out = aggregate(frame, by=["dataset", "method", "metric"]).set_index("metric")
    assert out.loc["fid", "mean"] == pytest.approx(3.0)
    assert out.loc["fid", "std"] == pytest.approx(np.std([1.0, 2.0, 6.0], ddof=1))
    assert out.loc["fid", "count"] == 3
    assert out.loc["intra_lpips", "mean"] == pytest.approx(0.6)
    assert out.loc["intra_lpips", "count"] == 2


def test_aggregate_refuses_to_average_two_values_of_one_seed(tidy):
    # "all" rows hold two checkpoints per seed: averaging them silently would mix checkpoints
    rows = tidy[(tidy["selection"] == "all") & (tidy["metric"] == "fid")]
    with pytest.raises(ValueError, match=r"several values per seed.*step"):
        aggregate(rows, by=["dataset", "method", "metric"])
    per_step = aggregate(rows, by=["dataset", "method", "metric", "step"])
    assert set(per_step["count"]) == {3}


def test_missing_required_column_names_the_column():
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['value'\]"):
        main_table(pd.DataFrame({"dataset": ["a"], "method": ["ft"], "seed": [0], "metric": ["fid"]}))


# ------------------------------------------------------------------------------ main table
def test_main_table_layout_and_means(tidy):
    table = main_table(tidy)
    assert list(table.index) == list(METHODS)
    assert ("", "NFE") in table.columns and ("", "single-stage") in table.columns
    assert table.loc["ft", ("", "NFE")] == "25"
    assert table.loc["unidad", ("", "NFE")] == "3"  # the few-step sweep is shown at NFE 3
    assert table.loc["unidad", ("", "single-stage")] == "yes"
    assert table.loc["unidad_pre", ("", "single-stage")] == "yes"
    assert table.loc["ft", ("", "single-stage")] == "adaptation only"
    assert table.loc["ft_dmd2", ("", "single-stage")] == "no"
    assert table.loc["dmd2_ft", ("", "single-stage")] == "no"
    # columns: datasets in data order, metrics in the requested order
    assert [c for c in table.columns if c[0]] == [("near", "FID ↓"), ("near", "Intra-LPIPS ↑"),
                                                  ("far", "FID ↓"), ("far", "Intra-LPIPS ↑")]
    std = np.std(np.linspace(-1, 1, 3) * (0.02 * 34.0 + 1e-4), ddof=1)
    assert _cell(table, "unidad", ("near", "FID ↓")) == f"34.00 ± {std:.2f}"
    stats = pd.DataFrame(table.attrs["stats"]).set_index(["method", "dataset", "metric"])
    assert stats.loc[("unidad", "far", "fid"), "mean"] == pytest.approx(55.0)
    assert stats.loc[("unidad", "far", "fid"), "n_seeds"] == 3
    assert any("3 seeds" in note for note in table.attrs["notes"])


def test_best_per_column_respects_metric_direction(tidy):
    table = main_table(tidy)
    best = set(table.attrs["best_cells"])
    # lowest FID: unidad_pre; highest Intra-LPIPS: unidad (higher is better)
    assert ("unidad_pre", ("near", "FID ↓")) in best
    assert ("unidad", ("near", "Intra-LPIPS ↑")) in best
    assert ("unidad", ("far", "Intra-LPIPS ↑")) in best
    assert len(best) == 4  # exactly one per column
    md = to_markdown(table)
    row = next(line for line in md.splitlines() if line.startswith("| unidad_pre "))
    assert re.search(r"\*\*33\.00 ± [0-9.]+\*\*", row)
    assert "**" not in next(line for line in md.splitlines() if line.startswith("| dmd2_ft "))
    tex = to_latex(table, "Main", "tab:main")
    assert r"\textbf{33.00 $\pm$" in tex


def test_best_marks_every_tied_row():
    frame = make_tidy(methods=("ft_dmd2", "unidad"), datasets=("near",), ablations=(),
                      fid={"near": {"ft_dmd2": 40.0, "unidad": 40.0}}, training_shots=False)
    best = {row for row, column in main_table(frame).attrs["best_cells"] if column == ("near", "FID ↓")}
    assert best == {"ft_dmd2", "unidad"}


def test_selection_best_test_is_flagged_optimistic(tidy):
    table = main_table(tidy, selection="best_test")
    assert "Optimistic: chosen on the test reference" in table.attrs["caption"]
    assert "optimistic: chosen on the test reference" in to_markdown(table).lower()
    assert "chosen on the test reference" in to_latex(table, None, "tab:x")
    assert "optimistic" not in main_table(tidy, selection="best_val").attrs["caption"].lower()


def test_final_selection_falls_back_to_final_checkpoint_of_all_rows(tidy):
    only_all = tidy[tidy["selection"] == "all"]
    stats = pd.DataFrame(main_table(only_all).attrs["stats"]).set_index(["method", "dataset", "metric"])
    assert stats.loc[("ft_dmd2", "near", "fid"), "mean"] == pytest.approx(45.0)  # step 300, not step 150


def test_nfe_that_was_not_measured_is_a_clear_error(tidy):
    with pytest.raises(ValueError, match=r"NFE \[1, 2, 3, 4\] but not at NFE 8"):
        main_table(tidy, nfe=8)
    stats = pd.DataFrame(main_table(tidy, nfe=1).attrs["stats"]).set_index(["method", "dataset", "metric"])
    assert stats.loc[("unidad", "near", "fid"), "mean"] == pytest.approx(34.0 * 1.2)
    assert stats.loc[("ft", "near", "fid"), "mean"] == pytest.approx(40.0)  # ft has NFE 25 only


def test_two_extractors_never_share_a_column(tidy):
    other = tidy[tidy["metric"] == "fid"].copy()
    other["extractor"] = "inception-v3-tf-2015-12-05"
    other["extractor_sha256"] = "ef" * 32
    other["value"] = other["value"] * 2
    table = main_table(pd.concat([tidy, other]), metrics=("fid",))
    labels = [c[1] for c in table.columns if c[0] == "near"]
    assert labels == ["FID ↓ [demo-cnn-v1, torch-fidelity]", "FID ↓ [inception-v3-tf-2015-12-05, torch-fidelity]"]
    stats = pd.DataFrame(table.attrs["stats"]).set_index(["method", "dataset", "extractor"])
    assert stats.loc[("unidad", "near", EXTRACTOR), "mean"] == pytest.approx(34.0)
    assert stats.loc[("unidad", "near", "inception-v3-tf-2015-12-05"), "mean"] == pytest.approx(68.0)
    assert any("inception-v3-tf-2015-12-05 (sha256 efefefefefef)" in n for n in table.attrs["notes"])


def test_one_extractor_id_with_two_hashes_is_refused(tidy):
    changed = tidy.copy()
    changed.loc[changed["seed"] == 2, "extractor_sha256"] = "00" * 32
    with pytest.raises(ValueError, match="demo-cnn-v1' appears with 2 different sha256"):
        main_table(changed)


def test_new_method_and_seed_appear_without_code_changes():
    frame = make_tidy(methods=METHODS + ("ft_dpdmd",), seeds=(0, 1, 2, 3))
    table = main_table(frame)
    assert list(table.index) == list(METHODS) + ["ft_dpdmd"]
    assert table.loc["ft_dpdmd", ("", "single-stage")] == "no"
    stats = pd.DataFrame(table.attrs["stats"])
    assert set(stats["n_seeds"]) == {4}
    assert any("4 seeds" in n for n in table.attrs["notes"])
    assert "ft_dpdmd" in compute_table(frame).index


def test_cells_with_fewer_seeds_say_so(tidy):
    fewer = tidy[~((tidy["method"] == "dmd2_ft") & (tidy["dataset"] == "far") & (tidy["seed"] == 2))]
    table = main_table(fewer)
    assert _cell(table, "dmd2_ft", ("far", "FID ↓")).endswith("(n=2)")
    assert not _cell(table, "dmd2_ft", ("near", "FID ↓")).endswith(")")


# ------------------------------------------------------------------------------ other tables
def test_ablation_table_rows_and_values(tidy):
    assert ablation_params(tidy) == ["a", "dmd_weight", "heads"]
    table = ablation_table(tidy, "a")
    assert list(table.index) == [("unidad", "main grid"), ("unidad", "0.25"), ("unidad", "0.75")]
    assert table.index.names == ["method", "a"]
    stats = pd.DataFrame(table.attrs["stats"]).set_index(["ablation_value", "dataset", "metric"])
    assert stats.loc[("0.75", "far", "fid"), "mean"] == pytest.approx(61.0)
    assert ("unidad", "main grid") in {r for r, _ in table.attrs["best_cells"]}
    with pytest.raises(ValueError, match="no ablation rows with ablation_param == 'gan_loss'"):
        ablation_table(tidy, "gan_loss")


def test_compute_table_totals(tidy):
    table = compute_table(tidy)
    assert table.loc["ft_dmd2", "iterations"] == "600"  # both stages count
    assert table.loc["ft", "iterations"] == "300"
    assert table.loc["unidad", "runs"] == 6  # 2 datasets x 3 seeds
    assert table.loc["unidad", "device-hours"].startswith("0.030")
    assert table.loc["unidad", "sampling s/image"].startswith("0.0030")


def test_oracle_table_has_training_shots_reference_row(tidy):
    table = oracle_table(tidy)
    assert list(table.index)[-1] == "training_shots"
    assert [c[1] for c in table.columns if c[0] == "near"] == ["In-domain rate ↑", "Mode coverage ↑", "Mode TV distance ↓"]
    # the training set is never the "best" method
    assert all(row != "training_shots" for row, _ in table.attrs["best_cells"])
    assert any("training_shots" in n for n in table.attrs["notes"])


def test_paper_comparison_puts_paper_and_harness_side_by_side(tidy):
    table = paper_comparison(tidy)
    groups = list(dict.fromkeys(c[0] for c in table.columns if c[0]))
    assert groups == ["babies", "sunglasses", "metfaces", "afhq_cat", "near", "far"]
    assert table.loc["unidad", ("babies", "FID ↓ paper")] == "45.09"
    assert table.loc["dmd2_ft", ("metfaces", "FID ↓ paper")] == "129.26 †"  # copies disagree
    assert table.loc["unidad", ("near", "FID ↓ harness")].startswith("34.00 ±")
    assert table.loc["crdi (quoted)", ("near", "FID ↓ harness")] == MISSING
    notes = "\n".join(table.attrs["notes"])
    assert "unverified" in notes and "Protocol differences:" in notes
    assert "demo-cnn-v1" in notes and "40k iterations" in notes and "Seeds: 3 per cell" in notes


def test_paper_comparison_same_dataset_name_gets_both_columns(tidy):
    renamed = tidy.replace({"dataset": {"near": "babies"}})
    table = paper_comparison(renamed)
    assert ("babies", "FID ↓ paper") in table.columns and ("babies", "FID ↓ harness") in table.columns


def test_packaged_paper_results_are_the_recorded_copy():
    packaged = load_paper_results()
    assert "provenance" in packaged.columns and len(packaged) > 50
    assert packaged["provenance"].str.contains("unverified").all()
    note = (PAPER_RESULTS_CSV.parent / "PAPER_RESULTS.md").read_text(encoding="utf-8")
    recorded = re.search(r"`([0-9a-f]{64})`", note).group(1)
    assert hashlib.sha256(PAPER_RESULTS_CSV.read_bytes()).hexdigest() == recorded


# ------------------------------------------------------------------------------ writers
def test_latex_escapes_and_structure(tidy):
    tex = to_latex(ablation_table(tidy, "heads"), "Heads_ablation & 50% more", "tab:heads")
    assert r"\caption{Heads\_ablation \& 50\% more}" in tex
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\cmidrule(lr)" in tex and r"\multicolumn{2}{c}{near}" in tex
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0]
    assert all(line.count("&") == 5 for line in body.strip().splitlines())  # method, heads, 2 datasets x 2 metrics
    assert "±" not in tex and "↓" not in tex  # unicode replaced by math


def test_csv_is_one_row_per_cell(tidy, tmp_path):
    path = to_csv(main_table(tidy), tmp_path / "main.csv")
    back = pd.read_csv(path)
    assert {"method", "dataset", "metric", "mean", "std", "n_seeds", "best"} <= set(back.columns)
    assert len(back) == len(METHODS) * 2 * 2
    assert back["best"].sum() == 4


def _compile(tex_body: str, tmp_path) -> subprocess.CompletedProcess:
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                   + tex_body + "\n\\end{document}\n", encoding="utf-8")
    return subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed; LaTeX compile check skipped")
def test_every_table_compiles_with_pdflatex(tidy, tmp_path):
    paths = write_all_tables(tidy, tmp_path / "tables", far_datasets=["far"])
    body = "\n\\clearpage\n".join(p.read_text(encoding="utf-8") for p in paths if p.suffix == ".tex")
    result = _compile(body, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def test_write_all_tables_writes_every_table_three_ways(tidy, tmp_path):
    paths = write_all_tables(tidy, tmp_path, far_datasets=["far"])
    names = {p.stem for p in paths if p.suffix == ".md"} - {"all_tables"}
    assert names == {"main_final", "main_best_val", "main_best_test", "all_metrics_final", "oracle_final",
                     "compute_final", "ablation_a", "ablation_dmd_weight", "ablation_heads", "paper_comparison",
                     "claims", "seed_spread"}
    for name in names:
        for suffix in (".md", ".tex", ".csv"):
            assert (tmp_path / f"{name}{suffix}").stat().st_size > 0
    assert "## main_final" in (tmp_path / "all_tables.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------ claims
def _claims(frame, **kw) -> pd.DataFrame:
    return evaluate_claims(frame, **kw).set_index(["claim_id", "dataset"])


def test_claims_hold_on_constructed_data(tidy):
    claims = _claims(tidy, far_datasets=["far"])
    assert claims.loc[(1, "near"), "held"] == HELD
    assert claims.loc[(1, "far"), "held"] == HELD
    assert float(claims.loc[(1, "near"), "margin_se"]) > 2  # every comparison beyond 2 standard errors
    assert "unidad 34.00" in claims.loc[(1, "near"), "evidence"] and "(n=3)" in claims.loc[(1, "near"), "evidence"]
    assert claims.loc[(2, "far: far; near: near"), "held"] == HELD
    assert claims.loc[(3, "near"), "held"] == HELD  # single head: +8 FID
    assert claims.loc[(4, "far"), "held"] == HELD  # GAN alone: half the Intra-LPIPS and lower mode coverage
    assert "Mode coverage" in claims.loc[(4, "far"), "evidence"]
    assert set(claims["seeds"]) == {"3"}


def test_claims_not_held_when_the_data_says_otherwise():
    fid = {d: dict(v) for d, v in FID.items()}
    fid["near"]["dmd2_ft"] = 30.0  # a two-stage pipeline now wins on near
    claims = _claims(make_tidy(fid=fid), far_datasets=["near"])  # and "near" is called the far one
    assert claims.loc[(1, "near"), "held"] == NOT_HELD
    assert claims.loc[(1, "far"), "held"] == HELD
    assert claims.loc[(2, "far: near; near: far"), "held"] == NOT_HELD


def test_claims_not_tested_without_the_needed_rows():
    frame = make_tidy(methods=("ft", "unidad_src", "unidad"), ablations=())
    claims = evaluate_claims(frame)
    held = dict(zip(claims["claim_id"], claims["held"]))
    assert held == {1: NOT_TESTED, 2: NOT_TESTED, 3: NOT_TESTED, 4: NOT_TESTED}
    by_id = claims.set_index("claim_id")
    assert "ft_dmd2" in by_id.loc[1, "evidence"].iloc[0]
    assert "far_datasets" in by_id.loc[2, "evidence"]
    assert "heads" in by_id.loc[3, "evidence"]


def test_a_difference_within_the_seed_spread_is_undecided():
    fid = {d: dict(v) for d, v in FID.items()}
    fid["near"]["ft_dmd2"] = 34.1  # unidad still wins on the mean, but by less than the seed spread
    claims = _claims(make_tidy(fid=fid), far_datasets=["far"])
    assert claims.loc[(1, "near"), "held"] == UNDECIDED
    assert claims.loc[(1, "far"), "held"] == HELD
    # SE of the difference: sqrt(0.68^2/3 + 0.682^2/3) = 0.556; the difference is 0.1, i.e. 0.18 SE
    assert float(claims.loc[(1, "near"), "margin_se"]) == pytest.approx(0.2, abs=0.05)
    assert "SE 0.56 (+0.2 SE)" in claims.loc[(1, "near"), "evidence"]
    # a looser threshold does not decide it either; a threshold of 0 SE goes by the means alone
    assert _claims(make_tidy(fid=fid), far_datasets=["far"], min_se=0.0).loc[(1, "near"), "held"] == HELD


def test_a_difference_beyond_the_spread_the_other_way_is_not_held():
    fid = {d: dict(v) for d, v in FID.items()}
    fid["near"]["ft_dmd2"] = 32.0  # a two-stage pipeline wins by 2 FID: 3.7 SE (SE 0.54)
    claims = _claims(make_tidy(fid=fid), far_datasets=["far"])
    assert claims.loc[(1, "near"), "held"] == NOT_HELD
    assert float(claims.loc[(1, "near"), "margin_se"]) == pytest.approx(-3.7, abs=0.1)  # the deciding comparison
    fid["near"]["ft_dmd2"] = 33.8  # by 0.2 FID: within the spread
    assert _claims(make_tidy(fid=fid), far_datasets=["far"]).loc[(1, "near"), "held"] == UNDECIDED


def test_one_seed_decides_nothing():
    claims = _claims(make_tidy(seeds=(0,)), far_datasets=["far"])
    decided = claims[claims["held"] != NOT_TESTED]
    assert set(decided["held"]) == {UNDECIDED} and len(decided) >= 5
    assert set(decided["margin_se"]) == {"n/a"}
    assert "one seed" in claims.loc[(1, "near"), "evidence"]


def test_several_shot_counts_become_separate_datasets(tidy):
    five_shot = tidy[tidy["ablation"] == ""].copy()
    five_shot["shots"] = 5
    five_shot["value"] = five_shot["value"] + 100.0
    table = main_table(pd.concat([tidy, five_shot]))
    groups = list(dict.fromkeys(c[0] for c in table.columns if c[0]))
    assert groups == ["near@10shot", "far@10shot", "near@5shot", "far@5shot"]
    stats = pd.DataFrame(table.attrs["stats"]).set_index(["method", "dataset", "metric"])
    assert stats.loc[("unidad", "near@5shot", "fid"), "mean"] == pytest.approx(134.0)
    assert stats.loc[("unidad", "near@10shot", "fid"), "mean"] == pytest.approx(34.0)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_tables_survive_the_file_round_trip(tidy, tmp_path, suffix):
    path = tmp_path / f"results_tidy{suffix}"
    tidy.to_csv(path, index=False) if suffix == ".csv" else tidy.to_parquet(path, index=False)
    loaded = load_tidy(path)
    assert (loaded["ablation"] == "").sum() == (tidy["ablation"] == "").sum()  # empty text stays empty text
    assert to_markdown(main_table(loaded)) == to_markdown(main_table(tidy))
    assert to_markdown(ablation_table(loaded, "a")) == to_markdown(ablation_table(tidy, "a"))


def test_shots_ablation_is_a_table_and_leaves_the_other_tables_alone(tidy):
    unidad = tidy[(tidy["method"] == "unidad") & (tidy["ablation"] == "")]
    variants = []
    for k, shift in ((1, 40.0), (5, 15.0)):
        rows = unidad.copy()
        rows["shots"] = k
        rows["ablation"], rows["ablation_param"], rows["ablation_value"] = f"shots={k}", "shots", str(k)
        rows.loc[rows["metric"] == "fid", "value"] += shift
        variants.append(rows)
    frame = pd.concat([tidy, *variants])
    table = ablation_table(frame, "shots")
    assert list(table.index) == [("unidad", "main grid"), ("unidad", "1"), ("unidad", "5")]
    assert {c[0] for c in table.columns if c[0]} == {"near", "far"}  # no near@1shot columns
    stats = pd.DataFrame(table.attrs["stats"]).set_index(["ablation_value", "dataset", "metric"])
    assert stats.loc[("1", "near", "fid"), "mean"] == pytest.approx(74.0)
    # the main table and the claims see the 10-shot grid as before, under the datasets' own names
    assert list(main_table(frame).columns) == list(main_table(tidy).columns)
    before = _claims(tidy, far_datasets=["far"])
    after = _claims(frame, far_datasets=["far"])
    assert list(after["held"]) == list(before["held"])


def test_nfe_ablation_shows_each_student_at_its_own_nfe(tidy):
    main = tidy[(tidy["method"] == "unidad") & (tidy["ablation"] == "") & (tidy["selection"] == "final")]
    variants = []
    for k in (1, 2):  # a student trained for k steps, measured at k and (its own sweep) at 3
        for nfe, shift in ((k, 100.0 * k), (3, 1000.0)):
            rows = main[main["nfe"] == nfe].copy()
            rows["ablation"], rows["ablation_param"], rows["ablation_value"] = f"nfe={k}", "nfe", str(k)
            rows["method_nfe"] = k
            rows.loc[rows["metric"] == "fid", "value"] += shift
            variants.append(rows)
    frame = pd.concat([tidy.assign(method_nfe=np.where(tidy["method"] == "ft", 25, 3)), *variants])
    stats = pd.DataFrame(ablation_table(frame, "nfe").attrs["stats"]).set_index(["ablation_value", "dataset", "metric"])
    at_own = main[(main["nfe"] == 1) & (main["metric"] == "fid") & (main["dataset"] == "near")]["value"].mean()
    assert stats.loc[("1", "near", "fid"), "mean"] == pytest.approx(at_own + 100.0)  # not the +1000 NFE-3 rows


def test_one_seed_tables_say_there_is_no_spread():
    table = main_table(make_tidy(seeds=(0,)))
    assert "One seed per cell: no spread to show." in table.attrs["notes"]


def test_a_labelled_shots_ablation_keeps_its_datasets_names(tidy):
    rows = tidy[(tidy["method"] == "unidad") & (tidy["ablation"] == "")].copy()
    rows["shots"] = 1
    rows["ablation"], rows["ablation_param"], rows["ablation_value"] = "k=1", "k", "1"
    table = ablation_table(pd.concat([tidy, rows]), "k")
    assert {c[0] for c in table.columns if c[0]} == {"near", "far"}
