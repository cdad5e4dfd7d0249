"""The text-conditioned (SDP) tables, controls, claims and paper comparison on synthetic tidy tables."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from unidad.results.controls import FAIL, NOT_MEASURED, PASS, measure_controls
from unidad.results.methods import MethodCatalogue
from unidad.results.render import SDP_HEADING, write_all_tables
from unidad.results.schema import tidy_row
from unidad.results.sdp_checks import evaluate_sdp_claims, sdp_paper_comparison
from unidad.results.sdp_tables import (
    TEACHER_LABEL,
    is_text_conditioned,
    rank_agreement,
    sdp_main_table,
    sdp_oracle_table,
    sdp_subject_table,
)

ROOT = Path(__file__).resolve().parents[1]
METHODS = MethodCatalogue.from_file(ROOT / "config" / "methods_sdp_demo.yaml")
SUBJECTS = ("checker_square", "striped_circle", "banded_triangle")
NFE = {"ft": 25, "ft_dmd2": 1, "dmd2_ft": 1, "unidad_src": 1, "unidad": 1}
# Per method: subject present, context follows, the learned subject similarity (same order as present).
BASE = {"ft": (0.90, 0.30, 0.80), "ft_dmd2": (0.50, 0.50, 0.60), "dmd2_ft": (0.20, 0.70, 0.40),
        "unidad_src": (0.60, 0.60, 0.65), "unidad": (0.70, 0.75, 0.70)}
TEACHER_REPORT = {"subject_oracle": {s: {"n": 40, "subject_present_rate": 0.0, "context_follows_rate": 0.9,
                                         "both_rate": 0.0} for s in SUBJECTS},
                  "timing": {s: {"nfe": 25} for s in SUBJECTS}}


def make_sdp_tidy(base=BASE, seeds=(0, 1, 2), subjects=SUBJECTS, learned="dino", extra=()) -> pd.DataFrame:
    rows = []
    for method, (present, context, learned_value) in base.items():
        for i, subject in enumerate(subjects):
            for seed in seeds:
                jitter = 0.01 * seed + 0.02 * i  # seeds differ a little, subjects a little more
                values = {"oracle_subject": present + jitter, "oracle_context": context + jitter,
                          "oracle_subject_context": present * context, learned: learned_value + jitter,
                          **{name: value + jitter for name, value in extra}}
                for metric, value in values.items():
                    rows.append(tidy_row("demo-sdp", dataset=subject, shots=5, method=method, seed=seed,
                                         slug=f"{subject}__{method}__seed{seed}", step=200, nfe=NFE[method],
                                         method_nfe=NFE[method], metric=metric, value=value,
                                         extractor=f"oracle:{subject}" if metric.startswith("oracle") else "",
                                         variant="rule-based" if metric.startswith("oracle") else "",
                                         protocol="corrected", n_generated=40, iterations=200))
    return pd.DataFrame(rows)


def test_text_conditioned_is_read_from_the_prompted_targets_not_the_name():
    tidy = make_sdp_tidy()
    assert is_text_conditioned(tidy, SUBJECTS)
    assert not is_text_conditioned(tidy, ())
    assert not is_text_conditioned(tidy, ("near",))


def test_table3_layout_mean_over_subjects_then_seeds_and_best_in_bold():
    tidy = make_sdp_tidy(extra=(("clip_t", 0.2),))
    table = sdp_main_table(tidy, SUBJECTS, methods=METHODS)
    assert list(table.index) == ["ft", "ft_dmd2", "dmd2_ft", "unidad_src", "unidad"]
    assert list(table.columns[:2]) == ["NFE", "single-stage"]
    assert table.loc["ft", "NFE"] == "25" and table.loc["unidad", "NFE"] == "1"
    assert table.loc["unidad", "single-stage"] == "yes"
    # registration order: quality values (DINO, CLIP-T) before the oracle rates
    assert list(table.columns[2:]) == ["DINO ↑", "CLIP-T ↑", "Subject present ↑", "Context follows prompt ↑",
                                       "Subject and context ↑"]
    # unidad's subject present: per seed the mean over subjects of 0.70 + 0.02 i + 0.01 s = 0.72 + 0.01 s
    assert table.loc["unidad", "Subject present ↑"].startswith("0.730 ± 0.010")
    assert ("ft", "Subject present ↑") in table.attrs["best_cells"]
    assert ("unidad", "Context follows prompt ↑") in table.attrs["best_cells"]
    notes = " ".join(table.attrs["notes"])
    assert "torch-fidelity" not in notes and "CDC" not in notes
    assert "the 3 subjects" in notes


def test_table3_marks_a_cell_with_a_missing_subject():
    tidy = make_sdp_tidy()
    tidy = tidy[~((tidy["method"] == "unidad") & (tidy["dataset"] == "banded_triangle"))]
    table = sdp_main_table(tidy, SUBJECTS, methods=METHODS)
    assert "(2/3 subjects)" in table.loc["unidad", "DINO ↑"]


def test_oracle_table_puts_the_source_teacher_beside_the_methods():
    table = sdp_oracle_table(make_sdp_tidy(), SUBJECTS, TEACHER_REPORT, methods=METHODS)
    assert TEACHER_LABEL in table.index
    assert table.loc[TEACHER_LABEL, ("all subjects", "Subject present ↑")].startswith("0.000")
    assert table.loc[TEACHER_LABEL, ("checker_square", "Context follows prompt ↑")].startswith("0.900")
    assert table.loc["ft", ("all subjects", "Subject present ↑")].startswith("0.930")
    assert all(row != TEACHER_LABEL for row, _ in table.attrs["best_cells"])  # a reference is never best
    assert "torch-fidelity" not in " ".join(table.attrs["notes"])


def test_per_subject_table_shows_the_main_subject_fidelity_value_and_subject_present():
    table = sdp_subject_table(make_sdp_tidy(), SUBJECTS, TEACHER_REPORT, methods=METHODS)
    labels = {label for _, label in table.columns if label}
    assert labels == {"DINO ↑", "Subject present ↑", "NFE"}
    assert table.loc["unidad", ("striped_circle", "DINO ↑")].startswith("0.730")
    assert table.loc[TEACHER_LABEL, ("striped_circle", "DINO ↑")] == "–"


def test_rank_agreement_reports_spearman_and_says_where_the_order_differs():
    same = rank_agreement(make_sdp_tidy(learned="demo_subject_sim"), SUBJECTS, methods=METHODS)
    assert same.iloc[0]["Spearman ρ"] == "+1.000" and same.iloc[0]["same order"] == "yes"
    swapped = dict(BASE, dmd2_ft=(0.20, 0.70, 0.95))  # the learned value ranks dmd2_ft first
    other = rank_agreement(make_sdp_tidy(swapped, learned="demo_subject_sim"), SUBJECTS, methods=METHODS)
    assert other.iloc[0]["same order"] == "no"
    assert float(other.iloc[0]["Spearman ρ"]) < 1
    assert any("ranks the methods differently" in n for n in other.attrs["notes"])
    with pytest.raises(ValueError, match="learned subject-fidelity"):
        rank_agreement(make_sdp_tidy(learned="clip_t"), SUBJECTS, methods=METHODS)


def test_sdp_claims_decided_beyond_the_standard_errors_else_undecided():
    tidy = make_sdp_tidy(extra=(("sdp_intra_lpips", 0.3),))
    claims = evaluate_sdp_claims(tidy, SUBJECTS, methods=METHODS, min_se=2.0).set_index(["claim_id", "claim"])
    verdict = {(cid, "ft_dmd2" in text): held for (cid, text), held in claims["held"].items()}
    assert verdict[("SDP-1", True)] == "held"  # 0.70 vs 0.50 subject present, seed std 0.01
    assert verdict[("SDP-1", False)] == "held"  # vs dmd2_ft 0.20
    assert verdict[("SDP-2", False)] == "held"  # context 0.75 vs 0.70
    assert verdict[("SDP-3", True)] == "undecided"  # equal diversity: within the standard errors
    one_seed = evaluate_sdp_claims(make_sdp_tidy(seeds=(0,)), SUBJECTS, methods=METHODS)
    assert set(one_seed["held"]) <= {"undecided", "not tested"}
    assert one_seed.set_index("claim_id").loc["SDP-3", "held"] == "not tested"  # no diversity value


def test_paper_comparison_on_the_demo_says_its_metrics_are_not_the_papers():
    table = sdp_paper_comparison(make_sdp_tidy(learned="demo_subject_sim"), SUBJECTS, methods=METHODS)
    assert all(side == "paper" for label, side in table.columns if label)
    notes = " ".join(table.attrs["notes"])
    assert "not the paper's" in notes and "DreamBench subjects" in notes and "2x50" in notes
    assert table.loc["ft", ("DINO ↑", "paper")].startswith("0.58")


def test_paper_comparison_at_paper_scale_puts_the_harness_beside_table3():
    tidy = make_sdp_tidy(extra=(("clip_i", 0.7), ("sdp_inter_lpips", 0.5)))
    table = sdp_paper_comparison(tidy, SUBJECTS, methods=METHODS)
    assert ("DINO ↑", "harness") in table.columns and ("Inter-LPIPS ↑", "harness") in table.columns
    assert table.loc["unidad", ("DINO ↑", "harness")].startswith("0.730")
    assert "this project's" in " ".join(table.attrs["notes"])


def _sdp_controls(tidy, teacher=TEACHER_REPORT):
    return measure_controls(tidy, teacher, [], {}, targets=list(SUBJECTS), methods=METHODS)


def test_sdp_controls_teacher_follows_prompts_lacks_the_subject_and_dreambooth_shows_it():
    controls = _sdp_controls(make_sdp_tidy())
    assert set(controls["control"]) == {"sdp_teacher", "ft"}
    assert (controls["status"] == PASS).all(), controls
    ft = controls[(controls["control"] == "ft") & (controls["dataset"] == "checker_square")].iloc[0]
    assert ft["reference"] == 0.0 and ft["value"] == pytest.approx(0.91)


def test_sdp_controls_fail_when_the_teacher_shows_the_subject_or_dreambooth_does_not():
    teacher = {"subject_oracle": {s: {"subject_present_rate": 0.5, "context_follows_rate": 0.2} for s in SUBJECTS},
               "captions": {"n": 108, "all_rate": 0.1}}
    weak = dict(BASE, ft=(0.1, 0.3, 0.2))
    controls = _sdp_controls(make_sdp_tidy(weak), teacher)
    assert (controls["status"] == FAIL).all()
    assert controls.loc[controls["metric"] == "caption_followed", "value"].tolist() == [0.1]
    teacher["captions"]["all_rate"] = 0.6
    caption = _sdp_controls(make_sdp_tidy(weak), teacher).query("metric == 'caption_followed'")
    assert caption["status"].tolist() == [PASS] and caption["dataset"].tolist() == ["source"]
    missing = _sdp_controls(make_sdp_tidy()[lambda t: t["method"] != "ft"])
    assert set(missing.loc[missing["control"] == "ft", "status"]) == {NOT_MEASURED}


def test_write_all_tables_gives_the_sdp_tables_under_their_heading(tmp_path):
    tidy = make_sdp_tidy(learned="demo_subject_sim")
    controls = _sdp_controls(tidy)
    write_all_tables(tidy, tmp_path, methods=METHODS, controls=controls, prompted=list(SUBJECTS),
                     teacher_report=TEACHER_REPORT)
    text = (tmp_path / "all_tables.md").read_text()
    assert f"# {SDP_HEADING}" in text
    for name in ("sdp_main_final", "sdp_per_subject", "sdp_oracle_final", "sdp_rank_agreement",
                 "sdp_paper_comparison", "sdp_claims"):
        assert (tmp_path / f"{name}.md").exists(), name
    assert "## main_final" not in text and "## paper_comparison\n" not in text
    assert "torch-fidelity" not in text and TEACHER_LABEL in text


def test_grid_columns_spread_over_the_prompts_with_the_same_prompts_for_every_method(tmp_path):
    import numpy as np
    from PIL import Image

    from paper_figures.qualitative import column_legend, qualitative_grid
    from unidad.jobs.report import prompt_columns, qualitative_rows

    prompts = [p for p in ("a prt circle in the snow", "a prt circle on the beach") for _ in range(8)]
    assert list(prompt_columns(prompts, 10)) == [0, 1, 2, 3, 4, 8, 9, 10, 11, 12]
    shots_dir = tmp_path / "shots"
    shots_dir.mkdir()
    for i in range(5):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(shots_dir / f"{i}.png")
    samples = {}
    for method, shade in (("unidad", 10), ("ft", 200)):
        images = np.arange(16, dtype=np.uint8)[:, None, None, None] + np.full((16, 8, 8, 3), shade, np.uint8)
        np.savez(tmp_path / f"{method}.npz", images_nfe1=images, prompts=np.asarray(prompts))
        samples[method] = (tmp_path / f"{method}.npz", 1)
    shots, rows, columns = qualitative_rows(shots_dir, samples, 8)
    assert len(shots) == 5 and columns == [prompts[i] for i in (0, 1, 2, 3, 4, 8, 9, 10, 11, 12)]
    assert [int(v) for v in rows["unidad"][:, 0, 0, 0]] == [10 + i for i in (0, 1, 2, 3, 4, 8, 9, 10, 11, 12)]
    legend = " ".join(column_legend(columns))
    assert "columns 1-5: a prt circle in the snow" in legend and "columns 6-10: a prt circle on the beach" in legend
    png, pdf = qualitative_grid(shots, rows, tmp_path / "grid", title="demo", prompts=columns)
    assert png.exists() and pdf.exists()


def test_a_method_sampled_at_several_nfes_is_shown_at_its_own():
    """A 2-step student is also sampled at the sweep's 1 NFE; the SDP tables show it at 2, its own."""
    tidy = make_sdp_tidy(base={"ft": BASE["ft"], "unidad": BASE["unidad"]})
    two_step = tidy[tidy["method"] == "unidad"].assign(method="unidad_dp", nfe=2, method_nfe=2,
                                                        slug=lambda f: f["slug"] + "_dp")
    at_one = two_step.assign(nfe=1, value=two_step["value"] - 0.5)
    table = sdp_main_table(pd.concat([tidy, two_step, at_one], ignore_index=True), SUBJECTS, methods=METHODS)
    assert table.loc["unidad_dp", "NFE"] == "2" and table.loc["unidad_dp", "Subject present ↑"].strip("*").startswith("0.7")


def test_the_sdp_fidelity_figure_puts_each_method_at_its_own_nfe(tmp_path):
    from paper_figures.figures import write_all_figures

    made = write_all_figures(make_sdp_tidy(), tmp_path, methods=METHODS)
    assert sorted(p.name for p in made) == ["sdp_fidelity_vs_nfe.pdf", "sdp_fidelity_vs_nfe.png"]
