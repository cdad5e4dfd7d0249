"""The SDP data jobs: the captioned source set, the demo VAE folder and the teacher's caption-following
report."""
from __future__ import annotations

import json

import numpy as np

from unidad.data.captioned import load_captioned_folder
from unidad.data.scenes import sample_source
from unidad.jobs import sdp_data


def test_captioned_source_job(tmp_path):
    summary = sdp_data.write_captioned_source(40, seed=2, image_size=32, out_dir=tmp_path / "source")
    images, captions = load_captioned_folder(tmp_path / "source", 32)
    expected, expected_captions, _ = sample_source(40, seed=2)
    assert np.array_equal(images, expected) and captions == expected_captions
    assert summary == {"n": 40, "seed": 2, "image_size": 32}


def test_demo_vae_job_writes_a_folder_the_backbone_loads(tmp_path):
    from unidad.backbones.tiny_sd import build_tiny_sd

    params = dict(image_size=32, vae_channels=(8, 16), unet_channels=(16, 32), text_width=16, text_heads=2)
    summary = sdp_data.fit_demo_vae(params, tmp_path / "vae", n_images=30, vivid_share=0.5,
                                    fit_params={"steps": 2, "batch_size": 4}, log=None)
    assert json.loads((tmp_path / "vae" / "fit.json").read_text()) == summary
    assert summary["vivid_share"] == 0.5 and summary["zero_residuals"] and summary["edge_weight"] > 0
    model = build_tiny_sd(**params, vae_dir=str(tmp_path / "vae"))
    assert model.vae.config.scaling_factor == summary["scaling_factor"]


def test_the_sdp_demo_config_is_a_valid_backbone_vae_fit_and_pretrain_stage():
    from unidad.backbones import build_backbone
    from unidad.config import load_config_file
    from unidad.stages.denoise import PretrainConfig

    config = load_config_file("config/sdp_demo.yaml")
    model = build_backbone({"kind": "tiny_sd", "params": config["backbone"]["params"]})
    vae = model.vae.config
    # 12 latent channels at /2 and no mid attention: the codec that keeps the subjects' 3-px patterns
    assert vae.latent_channels == 12 and len(vae.block_out_channels) == 2 and not vae.mid_block_add_attention
    assert model.latent_shape == (12, 16, 16) and model.image_shape == (3, 32, 32)
    pretrain = PretrainConfig.from_dict(config["source"]["params"])
    assert pretrain.caption_dropout > 0 and pretrain.sigma_sampling == "grid"  # CFG needs the empty prompt trained
    assert config["source"]["sample_guidance"] > 1 and config["backbone"]["vae_fit"]["posterior_noise"] == 0.0
    # every vae_fit key is an option of the job or of the fit (a misspelt key would fail the DAG's VAE rule)
    import inspect

    from unidad.backbones.tiny_sd import fit_tiny_vae

    options = set(inspect.signature(fit_tiny_vae).parameters) | set(inspect.signature(sdp_data.fit_demo_vae).parameters)
    assert set(config["backbone"]["vae_fit"]) <= options


def test_the_text_teachers_report_judges_subjects_and_captions(tmp_path):
    """The SDP teacher report: each subject target's token-free prompts judged by its oracle, and one sample
    per source caption judged by the scene judge (the teacher's control), from one model build."""
    from unidad.backbones import build_backbone
    from unidad.data.scenes import every_caption
    from unidad.jobs.teachers import teacher_report
    from unidad.weights_file import export_weights

    spec = {"kind": "tiny_sd", "params": dict(image_size=32, vae_channels=(8, 16), unet_channels=(16, 32),
                                              text_width=16, text_heads=2)}
    export_weights(tmp_path / "w.safetensors", {"model": build_backbone(spec)})
    prompts = ["a circle in the snow", "a circle on the beach"]
    report = teacher_report(spec, tmp_path / "w.safetensors", {"kind": "many_step", "sampler": "euler", "steps": 2,
                                                               "guidance": 7.5},
                            seeds=[], batch_size=64, out_json=tmp_path / "r.json", out_grid=tmp_path / "g.png",
                            subject_prompts={"striped_circle": {"subject": "striped_circle", "prompts": prompts,
                                                                "seeds": [0, 1]}})
    assert json.loads((tmp_path / "r.json").read_text()) == report and (tmp_path / "g.png").is_file()
    assert report["subject_oracle"]["striped_circle"]["n"] == 2 and report["n"] == 2
    assert report["captions"]["n"] == len(every_caption()) == 3 * 4 * 9
    assert 0.0 <= report["captions"]["all_rate"] <= 1.0 and report["sampling"]["guidance"] == 7.5
