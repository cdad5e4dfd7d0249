"""Paper figures from the synthetic tidy table of test_tables: every function writes a non-empty PDF
and PNG, skips cleanly when its data is absent, and styles methods the same way everywhere."""
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# paper_figures is a top-level folder of the repository (not part of the installed package)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from paper_figures.figures import (
    fid_vs_a,
    fid_vs_nfe,
    method_styles,
    metric_vs_iteration,
    quality_diversity_scatter,
    write_all_figures,
)
from paper_figures.layout import OKABE_ITO
from paper_figures.qualitative import qualitative_grid
from test_tables import METHODS, make_tidy


@pytest.fixture(scope="module")
def tidy():
    return make_tidy()


def _assert_written(paths):
    assert paths is not None
    pdf, png = paths
    assert pdf.suffix == ".pdf" and pdf.read_bytes()[:4] == b"%PDF" and pdf.stat().st_size > 1000
    assert png.suffix == ".png" and png.stat().st_size > 1000
    with Image.open(png) as image:
        assert image.width > 300 and image.height > 200


def test_metric_vs_iteration(tidy, tmp_path):
    _assert_written(metric_vs_iteration(tidy, "fid", tmp_path / "fid_vs_iteration"))


def test_quality_diversity_scatter(tidy, tmp_path):
    _assert_written(quality_diversity_scatter(tidy, tmp_path / "scatter"))


def test_fid_vs_nfe(tidy, tmp_path):
    _assert_written(fid_vs_nfe(tidy, tmp_path / "fid_vs_nfe"))


def test_fid_vs_a(tidy, tmp_path):
    _assert_written(fid_vs_a(tidy, tmp_path / "fid_vs_a"))


def test_fid_vs_a_keys_on_the_option_not_the_label(tidy, tmp_path):
    relabelled = tidy.copy()
    relabelled.loc[relabelled["ablation_param"] == "a", "ablation_param"] = "target_weight"
    _assert_written(fid_vs_a(relabelled, tmp_path / "relabelled"))
    no_option = tidy.assign(ablation_option="")
    assert fid_vs_a(no_option, tmp_path / "none") is None


def test_absent_data_skips_with_a_message(tidy, tmp_path, caplog):
    no_ablation = make_tidy(ablations=())
    single_nfe = tidy[tidy["nfe"].isin([3, 25])]
    with caplog.at_level(logging.WARNING):
        assert fid_vs_a(no_ablation, tmp_path / "a") is None
        assert fid_vs_nfe(single_nfe, tmp_path / "nfe") is None
        assert metric_vs_iteration(tidy[tidy["selection"] != "all"], "fid", tmp_path / "it") is None
    assert "no ablation of the option dual_weight" in caplog.text
    assert "more than one NFE" in caplog.text
    assert not list(tmp_path.iterdir())


def test_qualitative_grid_accepts_uint8_and_float_images(tmp_path):
    rng = np.random.default_rng(0)
    shots = rng.integers(0, 256, size=(10, 16, 16, 3), dtype=np.uint8)
    samples = {
        "unidad": rng.uniform(-1, 1, size=(10, 3, 16, 16)).astype(np.float32),  # model output layout
        "ft": rng.integers(0, 256, size=(8, 16, 16, 3), dtype=np.uint8),  # fewer samples: padded with white
    }
    _assert_written(qualitative_grid(shots, samples, tmp_path / "grid", title="near, 10-shot"))
    with pytest.raises(ValueError, match="differ in size"):
        qualitative_grid(shots, {"ft": np.zeros((2, 8, 8, 3), np.uint8)}, tmp_path / "bad")
    with pytest.raises(ValueError, match="samples` is empty"):
        qualitative_grid(shots, {}, tmp_path / "bad")


def test_method_styles_are_fixed_per_method():
    full = method_styles(METHODS + ("ft_dpdmd", "training_shots"))
    subset = method_styles(("unidad", "ft"))
    assert subset["unidad"] == full["unidad"] and subset["ft"] == full["ft"]
    colours = [full[m]["color"] for m in METHODS + ("ft_dpdmd",)]
    assert len(set(colours)) == len(colours) and set(colours) <= set(OKABE_ITO)


# ------------------------------------------------------------------------------ legibility
import matplotlib.text  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

import paper_figures.figures as figures  # noqa: E402


@pytest.fixture
def drawn_figures(monkeypatch):
    """The Figure objects the figure functions save, kept for layout checks after saving."""
    kept = []
    original_save = figures.save_figure

    def keep_and_save(fig, out_base):
        paths = original_save(fig, out_base)
        FigureCanvasAgg(fig)  # saving closed it; a canvas of its own lets the test measure it again
        kept.append(fig)
        return paths

    monkeypatch.setattr(figures, "save_figure", keep_and_save)
    return kept


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _visible_texts(fig):
    return [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]


def _assert_legible(fig):
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.get_axes() if ax.get_visible()]
    for ax in axes:
        for label in (ax.get_xlabel(), ax.get_ylabel()):
            assert "\n" not in label and "[" not in label and len(label) <= 24, label
    # panels, with their labels and tick labels, do not run into each other
    boxes = [ax.get_tightbbox(renderer) for ax in axes]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not _overlaps(boxes[i], boxes[j]), "two panels' labels collide"
    # the legend and the note sit clear of every panel and of each other
    footer = fig.subfigs[1]
    legend_box = footer.legends[0].get_window_extent(renderer)
    (note,) = footer.texts
    note_box = note.get_window_extent(renderer)
    assert not _overlaps(legend_box, note_box)
    for box in boxes:
        assert not _overlaps(box, legend_box) and not _overlaps(box, note_box)
    assert all(t.get_fontsize() >= 8 for t in _visible_texts(fig))
    return note.get_text()


def test_write_all_figures_legibly_with_provenance_in_onenote(tidy, tmp_path, drawn_figures):
    paths = write_all_figures(tidy, tmp_path)
    names = {p.name for p in paths}
    assert {"fid_vs_iteration.pdf", "fid_vs_iteration.png", "intra_lpips_vs_iteration.png",
            "oracle_mode_coverage_vs_iteration.png", "fid_vs_intra_lpips.png", "fid_vs_nfe.png",
            "fid_vs_a.png"} <= names
    assert all(p.stat().st_size > 0 for p in paths)
    assert len(drawn_figures) == 6
    notes = [" ".join(_assert_legible(fig).split()) for fig in drawn_figures]
    assert all("Mean over 3 seeds" in note for note in notes)
    # write order: fid, intra_lpips, oracle vs iteration, then the FID/Intra-LPIPS scatter
    assert notes[0].startswith("FID: demo-cnn-v1, torch-fidelity.")
    assert "FID: demo-cnn-v1" in notes[3] and "Intra-LPIPS: demo-lpips-v1" in notes[3]
    fid_axis = drawn_figures[0].get_axes()[0]
    assert fid_axis.get_ylabel() == "FID ↓" and fid_axis.get_xlabel() == "training iteration"


def test_every_figure_of_standin_numbers_says_so_in_itsnote(tidy, tmp_path, drawn_figures):
    write_all_figures(tidy.assign(standin=True), tmp_path / "standin")
    notes = [" ".join(_assert_legible(fig).split()) for fig in drawn_figures]
    assert len(notes) == 6 and all(note.startswith("STAND-IN weights (rehearsal)") for note in notes)
    drawn_figures.clear()
    write_all_figures(tidy, tmp_path / "real")
    assert not any("STAND-IN" in _assert_legible(fig) for fig in drawn_figures)


def test_single_panel_and_many_panels_stay_legible(tidy, tmp_path, drawn_figures):
    four = pd.concat([tidy[tidy["dataset"] == d].assign(dataset=f"{d}_{i}") for i in (0, 1) for d in ("near", "far")])
    metric_vs_iteration(tidy[tidy["dataset"] == "near"], "fid", tmp_path / "one")
    quality_diversity_scatter(four, tmp_path / "four")
    for fig in drawn_figures:
        _assert_legible(fig)
    assert len([ax for ax in drawn_figures[1].get_axes() if ax.get_visible()]) == 4


def test_saved_png_has_no_text_cut_off(tidy, tmp_path):
    """bbox_inches="tight": the image's outermost rows and columns are blank margin."""
    _, png = metric_vs_iteration(tidy, "fid", tmp_path / "fid")
    pixels = np.asarray(Image.open(png).convert("L"))
    border = np.concatenate([pixels[:3].ravel(), pixels[-3:].ravel(), pixels[:, :3].ravel(), pixels[:, -3:].ravel()])
    assert border.min() > 240


def test_checkpoint_iterations_include_earlier_stages_whichever_way_runs_record_them():
    per_checkpoint = pd.DataFrame({"method": ["ft_dmd2"] * 2, "dataset": ["near"] * 2, "seed": [0, 0],
                                   "step": [150, 300], "iterations": [450, 600]})
    run_total = per_checkpoint.assign(iterations=[600, 600])
    assert list(figures._checkpoint_iterations(per_checkpoint)) == [450, 600]
    assert list(figures._checkpoint_iterations(run_total)) == [450, 600]


def test_a_per_dataset_extractor_is_kept_for_each_panel(tidy):
    fid = tidy[(tidy["metric"] == "fid") & (tidy["selection"] == "final")]
    per_domain = fid.assign(extractor="oracle:" + fid["dataset"])
    rows, protocol = figures._one_protocol(per_domain, "fid")
    assert set(rows["dataset"]) == {"near", "far"}
    assert "oracle:near" in protocol and "oracle:far" in protocol


def test_selection_keeps_the_nfe_sweep_for_the_nfe_figure(tmp_path):
    """The tidy pipeline's own selection rows (not hand-made ones) carry the NFE sweep of the chosen
    checkpoint, so FID vs NFE is drawn from a real run's table."""
    from unidad.results import tidy_row, with_selection

    rows = []
    for seed in (0, 1):
        common = dict(dataset="near", shots=10, method="unidad", stage="unidad", seed=seed,
                      slug=f"near__unidad__s{seed}", method_nfe=3, extractor="demo-cnn-v1", variant="none")
        for step, fid in ((200, 30.0), (400, 20.0)):
            for split, offset in (("test", 0.0), ("val", 1.0)):
                rows.append(tidy_row("demo", step=step, nfe=3, final=step == 400, split=split, metric="fid",
                                     value=fid + offset + seed, **common))
        for nfe in (1, 2, 4):  # the sweep, at the final checkpoint only
            rows.append(tidy_row("demo", step=400, nfe=nfe, final=True, metric="fid",
                                 value=20.0 + 5.0 * abs(3 - nfe) + seed, **common))
    tidy = with_selection(pd.DataFrame(rows))
    final = tidy[tidy["selection"] == "final"]
    assert sorted(final["nfe"].unique()) == [1, 2, 3, 4]
    assert set(final["step"]) == {400}
    best_val = tidy[tidy["selection"] == "best_val"]
    assert set(best_val["step"]) == {400} and sorted(best_val["nfe"].unique()) == [1, 2, 3, 4]
    _assert_written(fid_vs_nfe(tidy, tmp_path / "fid_vs_nfe"))


def test_students_trained_per_nfe_get_their_own_line_in_fid_vs_nfe(tidy, tmp_path):
    from paper_figures.figures import TRAINED_PER_NFE, nfe_curves
    from unidad.results import normalise_tidy, select_rows

    main = tidy[(tidy["method"] == "unidad") & (tidy["ablation"] == "") & (tidy["selection"] == "final")]
    ablation = []
    for k in (1, 2):  # a student trained for k steps, measured at k (and, by its own sweep, at 3)
        for nfe in (k, 3):
            rows = main[main["nfe"] == nfe].copy()
            rows["ablation"], rows["ablation_param"], rows["ablation_value"] = f"nfe={k}", "nfe", str(k)
            rows["value"] = rows["value"] - 5.0
            ablation.append(rows)
    frame = normalise_tidy(pd.concat([tidy.assign(method_nfe=np.where(tidy["method"] == "ft", 25, 3)), *ablation]))
    curves = nfe_curves(select_rows(frame, "final", nfe=None, ablation=None))
    trained = curves[curves["method"] == "unidad" + TRAINED_PER_NFE]
    assert sorted(trained["nfe"].unique()) == [1, 2, 3]  # each ablation student at its own NFE + the main one
    main_line = curves[curves["method"] == "unidad"]
    assert sorted(main_line["nfe"].unique()) == [1, 2, 3, 4]
    assert main_line["ablation"].eq("").all()  # the sweep line holds no ablation student
    fid_at_1 = main_line[(main_line["metric"] == "fid") & (main_line["nfe"] == 1)]["value"].mean()
    assert fid_at_1 == pytest.approx(main[(main["metric"] == "fid") & (main["nfe"] == 1)]["value"].mean())
    _assert_written(fid_vs_nfe(frame, tmp_path / "fid_vs_nfe"))
