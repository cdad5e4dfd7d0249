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
import pytest
from PIL import Image

from paper_figures.figures import (
    OKABE_ITO,
    fid_vs_a,
    fid_vs_nfe,
    method_styles,
    metric_vs_iteration,
    qualitative_grid,
    quality_diversity_scatter,
    write_all_figures,
)
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


def test_absent_data_skips_with_a_message(tidy, tmp_path, caplog):
    no_ablation = make_tidy(ablations=())
    single_nfe = tidy[tidy["nfe"].isin([3, 25])]
    with caplog.at_level(logging.WARNING):
        assert fid_vs_a(no_ablation, tmp_path / "a") is None
        assert fid_vs_nfe(single_nfe, tmp_path / "nfe") is None
        assert metric_vs_iteration(tidy[tidy["selection"] != "all"], "fid", tmp_path / "it") is None
    assert "ablation_param == 'a'" in caplog.text
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


def test_write_all_figures(tidy, tmp_path):
    paths = write_all_figures(tidy, tmp_path)
    names = {p.name for p in paths}
    assert {"fid_vs_iteration.pdf", "fid_vs_iteration.png", "intra_lpips_vs_iteration.png",
            "oracle_mode_coverage_vs_iteration.png", "fid_vs_intra_lpips.png", "fid_vs_nfe.png",
            "fid_vs_a.png"} <= names
    assert all(p.stat().st_size > 0 for p in paths)
