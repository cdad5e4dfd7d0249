"""The SDP data jobs: the captioned source set, the demo subjects in DreamBench's layout, a subject's
prompt record, the DreamBench check marker, the subject picture and the demo VAE folder."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from unidad.data import dreambench as db
from unidad.data.captioned import load_captioned_folder
from unidad.data.scenes import sample_source
from unidad.data.sdp_demo import SUBJECTS, demo_prompts, make_shots
from unidad.jobs import sdp_data


def test_captioned_source_job(tmp_path):
    summary = sdp_data.write_captioned_source(40, seed=2, image_size=32, out_dir=tmp_path / "source")
    images, captions = load_captioned_folder(tmp_path / "source", 32)
    expected, expected_captions, _ = sample_source(40, seed=2)
    assert np.array_equal(images, expected) and captions == expected_captions
    assert summary == {"n": 40, "seed": 2, "image_size": 32}


def test_demo_subjects_are_written_like_dreambench(tmp_path):
    root = tmp_path / "subjects"
    sdp_data.write_demo_subjects(root, image_size=32, shots=5, seed=0)
    table = db.dataset_prompt_table(root)
    assert table.source == str(root / db.PROMPTS_FILE)
    assert table.subjects == list(SUBJECTS)
    for name, sub in SUBJECTS.items():
        assert table.class_noun(name) == sub.class_noun and not table.is_live(name)
        assert np.array_equal(db.load_subject_images(root, name, 32), make_shots(name, 5, seed=0))
        assert list(db.subject_prompts(name, table=table).prompts) == demo_prompts(name)
    assert db.check_dreambench(root, min_images=5) == {name: 5 for name in SUBJECTS}

    sdp_data.subject_grid(root, 32, tmp_path / "grid.png")
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape[0] > 3 * 32 * 4 and grid.shape[1] > 5 * 32 * 4  # 3 rows of 5 shots, upscaled 4x


def test_subject_prompt_record_for_the_demo_and_for_dreambench(tmp_path):
    root = tmp_path / "subjects"
    sdp_data.write_demo_subjects(root, image_size=32, subjects=["striped_circle"])
    record = sdp_data.write_subject_prompts(root, "striped_circle", "prt", tmp_path / "p.json")
    assert json.loads((tmp_path / "p.json").read_text()) == record
    assert record["instance_prompt"] == "a prt circle" and record["class_prompt"] == "a circle"
    assert record["prompts"] == demo_prompts("striped_circle")
    assert record["prompts_without_token"][0] == record["prompts"][0].replace("prt ", "")

    staged = tmp_path / "dreambench"  # a real DreamBench folder without its own table: the packaged one
    (staged / "dog6").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((40, 60, 3), 30 * i, np.uint8)).save(staged / "dog6" / f"{i}.jpg")
    record = sdp_data.write_subject_prompts(staged, "dog6", "sks", tmp_path / "dog.json", protocol="official_code")
    assert record["live"] and record["class_noun"] == "dog" and len(record["prompts"]) == 27
    assert "a sks dog in a chef outfit" in record["prompts"] and "a dog in a chef outfit" in record["prompts_without_token"]
    sdp_data.verify_dreambench(staged, ["dog6"], 4, tmp_path / "ok.json")
    assert json.loads((tmp_path / "ok.json").read_text())["images"] == {"dog6": 4}


def test_demo_vae_job_writes_a_folder_the_backbone_loads(tmp_path):
    from unidad.backbones.tiny_sd import build_tiny_sd

    params = dict(image_size=32, vae_channels=(8, 16), unet_channels=(16, 32), text_width=16, text_heads=2)
    summary = sdp_data.fit_demo_vae(params, tmp_path / "vae", n_images=30, fit_params={"steps": 2, "batch_size": 4},
                                    log=None)
    assert json.loads((tmp_path / "vae" / "fit.json").read_text()) == summary
    model = build_tiny_sd(**params, vae_dir=str(tmp_path / "vae"))
    assert model.vae.config.scaling_factor == summary["scaling_factor"]


def test_the_sdp_demo_config_is_a_valid_backbone_vae_fit_and_pretrain_stage():
    from unidad.backbones import build_backbone
    from unidad.config import load_config_file
    from unidad.stages.denoise import PretrainConfig

    config = load_config_file("config/sdp_demo.yaml")
    model = build_backbone({"kind": "tiny_sd", "params": config["backbone"]["params"]})
    vae = model.vae.config
    # 8 latent channels at /2 and no mid attention: the codec that keeps the subjects' 3-px patterns
    assert vae.latent_channels == 8 and len(vae.block_out_channels) == 2 and not vae.mid_block_add_attention
    assert model.latent_shape == (8, 16, 16) and model.image_shape == (3, 32, 32)
    pretrain = PretrainConfig.from_dict(config["source"]["params"])
    assert pretrain.caption_dropout > 0 and pretrain.sigma_sampling == "grid"  # CFG needs the empty prompt trained
    assert config["source"]["sample_guidance"] > 1 and config["backbone"]["vae_fit"]["posterior_noise"] == 0.0


def test_caption_following_report_of_a_teacher(tmp_path):
    from unidad.backbones import build_backbone
    from unidad.weights_file import export_weights

    spec = {"kind": "tiny_sd", "params": dict(image_size=32, vae_channels=(8, 16), unet_channels=(16, 32),
                                              text_width=16, text_heads=2)}
    export_weights(tmp_path / "w.safetensors", {"model": build_backbone(spec)})
    report = sdp_data.caption_following_report(spec, tmp_path / "w.safetensors", tmp_path / "r.json", steps=2,
                                               out_grid=tmp_path / "g.png", contexts=["snow"])
    assert json.loads((tmp_path / "r.json").read_text()) == report and (tmp_path / "g.png").is_file()
    assert report["captions"]["n"] == 3 * 4  # every kind x colour caption in the one context asked for
    assert report["sampling"]["guidance"] == 7.5
    square = report["class_prompts_checker_square"]
    assert square["n"] == 5 and 0.0 <= square["subject_present_rate"] <= 1.0
