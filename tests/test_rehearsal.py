"""The rehearsal of the paper DAG: its config follows the paper config's code path, stand-in weights are
refused outside it, and every number computed from them is stamped."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from unidad import standins
from unidad.config import load_config_file
from unidad.preflight import refuse_in_config

ROOT = Path(__file__).resolve().parent.parent
REHEARSAL = ROOT / "config" / "paper_fsig_rehearsal.yaml"
PAPER = ROOT / "config" / "paper_fsig.yaml"


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """An empty weights folder searched first, and a private stand-in registry."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("UNIDAD_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "weights").mkdir()
    return tmp_path / "weights"


def _standin(folder: Path, filename: str, name: str) -> Path:
    from unidad.weights import file_sha256

    path = folder / filename
    torch.save({"w": torch.randn(4)}, path)
    standins.record(folder, {filename: {"name": name, "sha256": file_sha256(path)}}, "test stand-in")
    return path


def test_rehearsal_config_follows_the_paper_code_path():
    rehearsal, paper = load_config_file(REHEARSAL), load_config_file(PAPER)
    assert rehearsal["rehearsal"] is True and not paper["rehearsal"]
    assert rehearsal["backbone"]["kind"] == paper["backbone"]["kind"] == "adm"
    assert rehearsal["source"] == paper["source"]
    seed_methods = load_config_file(ROOT / "config" / "seed_methods.yaml")["methods"]
    assert set(rehearsal["methods"]) == set(paper["methods"]) | set(seed_methods)  # every method of both
    for key in ("extractor", "lpips", "intra_lpips_variant"):
        assert rehearsal["evaluation"][key] == paper["evaluation"][key], key
    assert set(rehearsal["evaluation"]["metrics"]) <= set(paper["evaluation"]["metrics"])
    for name in rehearsal["targets"] + [rehearsal["source"]["dataset"]]:  # paper datasets, staged as folders
        ds = rehearsal["datasets"][name]
        assert ds["kind"] == paper["datasets"][name]["kind"] == "folder"
        assert ds.get("domain_gap", "") == paper["datasets"][name].get("domain_gap", "")
        assert ds.get("stage_params", {}).get("unidad", {}).get("dual_weight") == \
            paper["datasets"][name].get("stage_params", {}).get("unidad", {}).get("dual_weight")
    gaps = {rehearsal["datasets"][t]["domain_gap"] for t in rehearsal["targets"]}
    assert gaps == {"near", "far"}


def test_standin_is_refused_outside_a_rehearsal_by_stamp_and_by_checksum(weights_dir, tmp_path):
    path = _standin(weights_dir, "ffhq.pt", "adm_ffhq256")
    with pytest.raises(standins.StandinError, match="stand-in"):
        standins.check(path, None, "source model")
    copy = tmp_path / "elsewhere" / "ffhq.pt"  # no stamp beside it: known by its sha256
    copy.parent.mkdir()
    shutil.copy(path, copy)
    from unidad.weights import file_sha256

    assert standins.stamp_of(copy) is None
    with pytest.raises(standins.StandinError):
        standins.check(copy, file_sha256(copy), "source model")
    with standins.allowed() as seen:
        assert standins.check(path, None, "source model") and standins.active()
    assert seen == [str(path)] and not standins.active()
    real = tmp_path / "real.pt"
    torch.save({"w": torch.ones(4)}, real)
    assert standins.check(real, file_sha256(real), "source model") is False


def test_only_the_rehearsal_config_accepts_standins(weights_dir):
    from unidad.preflight import check_required

    _standin(weights_dir, "ffhq.pt", "adm_ffhq256")
    paper, rehearsal = load_config_file(PAPER), load_config_file(REHEARSAL)
    with pytest.raises(standins.StandinError, match="adm_ffhq256"):
        refuse_in_config(paper)
    refuse_in_config(rehearsal)
    status = {s.required.name: s for s in check_required(paper)}["adm_ffhq256"]
    assert not status.ok and "stand-in" in status.message
    status = {s.required.name: s for s in check_required(rehearsal)}["adm_ffhq256"]
    assert status.ok and "STAND-IN" in status.message


def test_the_dag_refuses_a_paper_config_that_would_load_a_standin(weights_dir):
    import subprocess
    import sys

    _standin(weights_dir, "ffhq.pt", "adm_ffhq256")
    res = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "all", "-n", "--quiet", "rules",
                          "--cores", "1", "--configfile", str(PAPER)], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode != 0 and "not a rehearsal" in res.stdout + res.stderr


def test_standin_extractor_is_refused_and_stamped(weights_dir):
    from unidad.metrics.extractors import InceptionV3Extractor
    from unidad.rehearsal import _inception_state
    from unidad.weights import file_sha256

    path = weights_dir / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(_inception_state(), path)
    standins.record(weights_dir, {path.name: {"name": "inception_v3_tf", "sha256": file_sha256(path)}}, "test")
    with pytest.raises(standins.StandinError, match="inception_v3_tf"):
        InceptionV3Extractor(path, device="cpu")
    with standins.allowed():
        ext = InceptionV3Extractor(path, device="cpu")
    assert ext.standin
    assert ext(torch.zeros(2, 8, 8, 3, dtype=torch.uint8).numpy()).shape == (2, 2048)
    # the stand-in's features vary with the image at a usable scale, so FID, KID and PRDC are not all 0
    feats = ext(torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8).numpy())
    assert float(feats.std(0).mean()) > 1e-2


def test_standin_numbers_are_stamped_in_rows_and_tables(tmp_path):
    from test_tables import make_tidy  # tests/test_tables.py
    from unidad.results.collect import unit_rows
    from unidad.results.render import write_all_tables

    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"step": 4, "images_seen": 8, "device_hours": 0.0, "wall_seconds": 1.0}))
    record = {"checkpoint": "c", "standin": True, "per_nfe": {"3": {
        "variant": "cdc", "extractor": "x", "extractor_sha256": "h", "n_generated": 16, "n_reference": 10,
        "values": {"intra_lpips": 0.3}}}}
    metric = tmp_path / "intra_lpips.json"
    metric.write_text(json.dumps(record))
    unit = {"dataset": "babies", "shots": 10, "method": "unidad", "stage": "unidad", "seed": 0, "slug": "s",
            "step": 4, "nfe": 3, "method_nfe": 3, "final": True, "ablation": "", "ablation_param": "",
            "ablation_value": "", "ablation_option": "", "metrics": {"intra_lpips": str(metric)},
            "summaries": [str(summary)]}
    assert [r["standin"] for r in unit_rows("b", unit)] == [True]

    tidy = make_tidy()
    tidy["standin"] = True
    paths = write_all_tables(tidy, tmp_path / "tables", far_datasets=["far"])
    md = {p.stem: p.read_text() for p in paths if p.suffix == ".md"}
    assert md and all("STAND-IN" in text for text in md.values())
    csv = [p for p in paths if p.name == "main_final.csv"][0].read_text().splitlines()
    assert "standin" in csv[0] and all(line.endswith("True") for line in csv[1:])
    plain = write_all_tables(make_tidy(), tmp_path / "plain", far_datasets=["far"])
    assert not any("STAND-IN" in p.read_text() for p in plain if p.suffix == ".md")
