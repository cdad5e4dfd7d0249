"""The SDP rehearsal: its config follows config/paper_sdp.yaml's code path, its folder (hf_dir) and
safetensors stand-ins are stamped inside, and every config but a rehearsal refuses them."""
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from unidad import standins
from unidad.config import load_config_file
from unidad.preflight import refuse_in_config

ROOT = Path(__file__).resolve().parent.parent
REHEARSAL = ROOT / "config" / "paper_sdp_rehearsal.yaml"
PAPER = ROOT / "config" / "paper_sdp.yaml"


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """An empty weights folder searched first, a private stand-in registry, and no HF cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("UNIDAD_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "weights").mkdir()
    return tmp_path / "weights"


def test_sdp_rehearsal_config_follows_the_paper_code_path():
    from unidad.data.dreambench import LIVE_CLASSES

    rehearsal, paper = load_config_file(REHEARSAL), load_config_file(PAPER)
    assert rehearsal["rehearsal"] is True and not paper["rehearsal"]
    for key in ("source", "methods_file", "unique_token", "shots"):
        assert rehearsal[key] == paper[key], key
    assert rehearsal["backbone"]["kind"] == paper["backbone"]["kind"] == "sd15"
    assert not rehearsal["backbone"]["params"].get("model_dir")  # the manifest's staged sd15 folder
    # the five SDP methods and the seed methods methods_sdp.yaml runs at SD1.5 scale
    methods = yaml.safe_load((ROOT / paper["methods_file"]).read_text())
    runnable = [m for m, spec in methods.items() if not (spec.get("quoted") or spec.get("reference"))]
    assert rehearsal["methods"][:len(paper["methods"])] == paper["methods"]
    assert sorted(rehearsal["methods"]) == sorted(runnable)
    # every stage the paper config tunes, with every option it sets
    assert set(rehearsal["stage_params"]) == set(paper["stage_params"])
    for stage, params in paper["stage_params"].items():
        assert set(params) <= set(rehearsal["stage_params"][stage]), stage
    ev, paper_ev = rehearsal["evaluation"], paper["evaluation"]
    assert set(ev["metrics"]) == {"dino", "clip_i", "clip_t", "sdp_diversity", "speed"}
    assert ev["lpips"] == "vgg" and ev["nfe_sweep"] == paper_ev["nfe_sweep"]
    # DreamBench subjects staged as folders, one object and one live subject, with DreamBench's prompts
    live = set()
    for name in rehearsal["targets"]:
        ds, real = rehearsal["datasets"][name], paper["datasets"][name]
        assert ds["kind"] == real["kind"] == "folder"
        assert ds["class_noun"] == real["class_noun"]
        assert Path(ds["path"]).name == Path(real["path"]).name == name
        assert set(ds["prompts"]) <= set(real["prompts"])
        live.add(ds["class_noun"] in LIVE_CLASSES)
    assert live == {True, False}


def test_the_rehearsal_needs_a_stand_in_for_every_manifest_entry_it_loads():
    from unidad.preflight import required_weights
    from unidad.rehearsal import write_standin_weights  # noqa: F401 (the makers below are its)
    from unidad.rehearsal_sdp import WRITERS, exported_requirements
    from unidad.weights import get_entry

    config = load_config_file(REHEARSAL)
    names = {r.name for r in required_weights(config) + exported_requirements(config)
             if r.name and get_entry(r.name).kind != "package_file"}
    assert names == {"sd15", "dmd2_sd15_1step", "dino_vits16", "clip_vit_b32_openai", "lpips_vgg16"}
    assert names - {"lpips_vgg16"} <= set(WRITERS)  # VGG16: the FSIG rehearsal's maker


def test_hf_dir_standin_is_stamped_loaded_by_the_rehearsal_only_and_its_export_marked(weights_dir, tmp_path,
                                                                                      monkeypatch):
    from unidad.backbones.sd15 import load_sd15
    from unidad.jobs.teachers import export_sd15_unet
    from unidad.rehearsal import write_standin_weights
    from unidad.weights import resolve

    config = load_config_file(REHEARSAL)
    config["backbone"]["params"]["image_size"] = 64  # the smallest the stand-in allows: a fast test
    config["evaluation"]["metrics"] = ["speed"]  # DINO, CLIP and VGG stand-ins: hundreds of MB
    files = write_standin_weights(weights_dir, config)
    assert {rec["name"] for rec in files.values()} == {"sd15", "dmd2_sd15_1step"}
    folder = resolve("sd15")  # complete as the manifest's hf_files require
    assert folder == weights_dir / "stable-diffusion-v1-5"
    assert standins.stamp_of(folder)["standin"] is True
    with pytest.raises(standins.StandinError, match="rehearsal stand-in"):
        load_sd15(folder)
    # a copy of the folder without its standins.json is still known: its safetensors headers carry the mark
    copy = tmp_path / "elsewhere" / "sd15"
    shutil.copytree(folder, copy)
    (copy / standins.STANDINS_FILE).unlink()
    assert standins.stamp_of(copy) is not None
    with pytest.raises(standins.StandinError):
        load_sd15(copy)
    with standins.allowed():
        model = load_sd15(folder)
        assert model.image_shape == (3, 64, 64)
        # the DMD2 UNet stand-in fits SD1.5's key layout; the export made from it is marked in its header
        out = tmp_path / "weights" / "dmd2_sd15_1step.safetensors"
        export_sd15_unet("dmd2_sd15_1step", out)
    assert standins.header_stamp(out)
    # any config but a rehearsal refuses the staged folder and the exported file (where methods read it)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").symlink_to(ROOT / "config")
    paper = load_config_file(PAPER)
    with pytest.raises(standins.StandinError, match="sd15"):
        refuse_in_config(paper)
    shutil.rmtree(folder)
    with pytest.raises(standins.StandinError, match="dmd2_sd15_1step.safetensors"):
        refuse_in_config(paper)
    refuse_in_config(config)  # the rehearsal itself: allowed


def test_safetensors_mark_and_folder_checksums_are_refused_outside_a_rehearsal(weights_dir, tmp_path):
    from safetensors.torch import save_file

    from unidad.rehearsal_sdp import _folder_record
    from unidad.weights import file_sha256

    marked = tmp_path / "open_clip_model.safetensors"
    save_file({"w": torch.zeros(2)}, str(marked), metadata={standins.HEADER_KEY: "true"})
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain), metadata={"format": "pt"})
    assert standins.header_stamp(marked) and not standins.header_stamp(plain)
    with pytest.raises(standins.StandinError, match="clip"):
        standins.check(marked, None, "clip_vit_b32_openai")
    assert standins.check(plain, None, "x") is False
    # a folder stand-in's weight files are in the registry: a renamed copy of one is known by checksum
    folder = tmp_path / "dino-vits16"
    folder.mkdir()
    torch.save({"w": torch.ones(3)}, folder / "pytorch_model.bin")
    rec = _folder_record(folder, "test stand-in")
    standins.record(tmp_path, {"dino-vits16": {"name": "dino_vits16", **rec}}, "test stand-in")
    renamed = tmp_path / "other" / "weights.bin"
    renamed.parent.mkdir()
    shutil.copyfile(folder / "pytorch_model.bin", renamed)
    assert standins.is_standin(renamed, file_sha256(renamed))
    with standins.allowed() as seen:
        assert standins.check(folder, None, "dino_vits16") is True
    assert seen == [str(folder)]
