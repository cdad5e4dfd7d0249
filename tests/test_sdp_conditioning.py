"""Text conditioning through the stages and samplers on a tiny random-weight SD1.5 (tests/tiny_sd15.py):
CFG per network role, the unique token dropped for the source teacher only, one RNG seed per image
with prompts, every DMD/GAN sigma inside the backbone's range, and a one-step student round trip
through the SD adapter (train, checkpoint, sample from the staged folder)."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

import baselines  # noqa: F401  (registers the baseline stages)
from unidad.edm import denoiser_grid, denoiser_student_sigmas, karras_grid
from unidad.prompts import drop_token
from unidad.sampling import generate
from unidad.stages import StageContext, get_stage
from unidad.data.stream import TrainingImages
from unidad.train.loop import make_batch, train
from unidad.weights_file import export_weights

from tiny_sd15 import tiny_sd15  # tests/tiny_sd15.py

INSTANCE = "a prt dog"


@pytest.fixture(scope="module")
def sd_source(tmp_path_factory):
    path = tmp_path_factory.mktemp("sd") / "source.safetensors"
    export_weights(path, {"model": tiny_sd15(seed=0)})
    return path


def make_stage(stage_id, source, prompts=(INSTANCE,) * 3, **params):
    cls = get_stage(stage_id)
    base = dict(iterations=2, batch_size=2, lr=1e-4, warmup_iters=1, checkpoint_every=2, log_every=1)
    if stage_id in ("unidad", "dmd2"):
        base.update(ratio=1, gen_steps=1, precision="fp32")
    base.update(params)
    gen = torch.Generator().manual_seed(0)
    real = TrainingImages.from_pixels(
        torch.randint(0, 256, (len(prompts), 64, 64, 3), generator=gen, dtype=torch.uint8).numpy())
    ctx = StageContext(backbone_factory=lambda: tiny_sd15(seed=0), weights={r: (source, "model") for r in cls.roles},
                       real_images=real, device=torch.device("cpu"), seed=3, prompts=list(prompts))
    stage = cls(cls.config_cls.from_dict(base), ctx)
    stage.build()
    return stage


def spy(stage, log):
    """Record (module, sigma, cond) of every denoise and features call of the stage's networks."""
    for name, module in stage.modules.items():
        if not hasattr(module, "denoise"):
            continue
        for method in ("denoise", "features"):
            original = getattr(module, method)

            def wrapped(x, sigma, cond=None, *args, _name=name, _original=original, _method=method, **kwargs):
                log.append((_name, _method, torch.as_tensor(sigma).detach().float().reshape(-1), cond))
                return _original(x, sigma, cond, *args, **kwargs)

            setattr(module, method, wrapped)


def run_all_losses(stage, iterations=2):
    for it in range(iterations):
        batch = make_batch(stage, it, 0)
        for update in stage.updates():
            update.loss(batch)["loss"].backward()


def dmd_calls(log):
    """The calls of one DMD evaluation: the guided denoise calls of the teachers and the fake score
    (the generator's own calls come first, at its student sigma)."""
    return {name: cond for name, method, _, cond in log if method == "denoise" and name != "generator"}


def test_cfg_per_network_role(sd_source):
    stage = make_stage("unidad", sd_source, target_teacher="online")
    log = []
    spy(stage, log)
    stage.generator_loss(make_batch(stage, 0, 0))
    guidance = {name: cond.guidance_scale for name, cond in dmd_calls(log).items()}
    # official SDP: source teacher 7.5, fake score 1, target teacher 7.5; G unguided
    assert guidance == {"teacher": 7.5, "fake": 1.0, "target_teacher": 7.5}
    assert all(cond.guidance_scale == 1.0 for name, m, _, cond in log if name == "generator")

    stage = make_stage("unidad", sd_source, target_teacher="online", teacher_guidance=3.0, fake_guidance=1.5,
                       target_guidance=2.0)
    log = []
    spy(stage, log)
    stage.generator_loss(make_batch(stage, 0, 0))
    guidance = {name: cond.guidance_scale for name, cond in dmd_calls(log).items()}
    assert guidance == {"teacher": 3.0, "fake": 1.5, "target_teacher": 2.0}


def test_guided_teacher_output_is_the_cfg_formula(sd_source):
    """The teacher's guided x0 in DMD is x0_u + w (x0_c - x0_u) of the token-free prompt."""
    stage = make_stage("unidad", sd_source, target_teacher="none")
    teacher = stage.modules["teacher"]
    cond = stage._teacher_cond({"prompts": [INSTANCE, INSTANCE]})
    x = torch.randn(2, *teacher.latent_shape, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.7, 4.0])
    with torch.no_grad():
        guided = teacher.denoise(x, sigma, cond)
        plain = teacher.encode_prompt(["a dog", "a dog"])
        x0_c = teacher.denoise(x, sigma, plain)
        x0_u = teacher.denoise(x, sigma, teacher.encode_prompt(["", ""]))
    torch.testing.assert_close(guided, x0_u + 7.5 * (x0_c - x0_u), rtol=1e-4, atol=1e-4)


def test_unique_token_is_dropped_for_the_source_teacher_only(sd_source):
    assert drop_token("a prt dog on the beach", "prt") == "a dog on the beach"
    assert drop_token("a prtx dog", "prt") == "a prtx dog"  # a whole word only
    stage = make_stage("unidad", sd_source, target_teacher="online")
    log = []
    spy(stage, log)
    stage.generator_loss(make_batch(stage, 0, 0))
    encode = stage.modules["generator"].encode_prompt
    with_token, without = encode([INSTANCE] * 2).context, encode(["a dog"] * 2).context
    contexts = {name: cond.context for name, _, _, cond in log}
    torch.testing.assert_close(contexts["teacher"], without)
    for name in ("generator", "fake", "target_teacher"):
        torch.testing.assert_close(contexts[name], with_token)
    # the official code's routing (`teacher_prompt: same`) and dmd2 (its teacher may know the token)
    for stage_id, params in (("unidad", {"teacher_prompt": "same", "target_teacher": "none"}), ("dmd2", {})):
        stage = make_stage(stage_id, sd_source, **params)
        log = []
        spy(stage, log)
        stage.generator_loss(make_batch(stage, 0, 0))
        torch.testing.assert_close(dmd_calls(log)["teacher"].context, with_token)


def test_no_dmd_or_gan_sigma_outside_the_backbones_range(sd_source):
    stage = make_stage("unidad", sd_source, target_teacher="online", gen_steps=2, dmd_index_lo=0, dmd_index_hi=999)
    sd = stage.modules["generator"]
    lo, hi = sd.sigma_min, sd.sigma_max
    assert hi == pytest.approx(14.6, abs=0.05) and lo == pytest.approx(0.0292, abs=1e-3)
    grid = denoiser_grid(sd)
    assert float(grid[0]) == pytest.approx(lo) and float(grid[-1]) == pytest.approx(hi)
    # the EDM grid (to 80) the VP model cannot represent: a third of it would clamp to the last step
    assert float((karras_grid() > hi).double().mean()) > 0.25
    log = []
    spy(stage, log)
    torch.manual_seed(0)
    run_all_losses(stage, iterations=6)
    sigmas = torch.cat([s for _, _, s, _ in log])
    assert len(sigmas) > 50
    assert float(sigmas.min()) >= lo * (1 - 1e-6) and float(sigmas.max()) <= hi * (1 + 1e-6)
    assert bool((sd.sigma_to_t(sigmas) <= 999).all())
    # the student starts from the top of the range, whatever sigma_start above it the config gives
    assert denoiser_student_sigmas(sd, 1, 80.0, 0.5).tolist() == [pytest.approx(hi)]
    with pytest.raises(ValueError, match="sigma_end"):
        denoiser_student_sigmas(sd, 2, 80.0, 0.001)


def assert_same_images(a, b):
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_one_seed_per_image_with_prompts():
    sd = tiny_sd15(seed=0)
    prompts = ["a prt dog", "a prt dog on the beach", "a cat"]
    for sampling in ({"kind": "few_step", "steps": 1},
                     {"kind": "many_step", "sampler": "euler", "steps": 3, "guidance": 7.5}):
        whole, _ = generate(sd, sampling, [5, 6, 7], batch_size=3, prompts=prompts)
        split, _ = generate(sd, sampling, [5, 6, 7], batch_size=2, prompts=prompts)
        alone, _ = generate(sd, sampling, [6], batch_size=1, prompts=prompts[1:2])
        # the noise and the prompt of an image are its own; the UNet's batched kernels may still
        # round differently per batch size (at most one uint8 level at a few pixels)
        assert_same_images(whole, split)
        assert_same_images(whole[1:2], alone)
        other, _ = generate(sd, sampling, [5, 6, 7], batch_size=3, prompts=[prompts[0], "a prt cat", prompts[2]])
        np.testing.assert_array_equal(whole[[0, 2]], other[[0, 2]])
        assert np.abs(whole[1].astype(int) - other[1].astype(int)).max() > 1
    with pytest.raises(ValueError, match="one prompt per seed"):
        generate(sd, {"kind": "few_step", "steps": 1}, [1, 2], prompts=["a dog"])


def test_one_step_student_round_trip_through_the_sd_adapter(sd_source, tmp_path):
    """A one-step student trained through the stage code, checkpointed, and sampled from the weights
    file with the sd15 backbone kind reading a staged diffusers folder: the images are G's one call at
    the top of the VP schedule (t = 999), decoded by the VAE."""
    from unidad.backbones.sd15 import save_sd15
    from unidad.checkpoint import latest_checkpoint
    from unidad.jobs.teachers import sample_product

    stage = make_stage("student_ft", sd_source, gen_steps=1)
    train(stage, tmp_path / "run", log=lambda *_: None)
    folder = tmp_path / "sd15"
    save_sd15(tiny_sd15(seed=0), folder)
    weights = latest_checkpoint(tmp_path / "run") / "weights.safetensors"
    prompts, seeds = [INSTANCE, "a prt dog in the snow"], [0, 1]
    sampling = stage.sampling()
    images, timing = sample_product({"kind": "sd15", "params": {"model_dir": str(folder)}}, weights, "generator",
                                    sampling, seeds, batch_size=2, device="cpu", prompts=prompts)
    assert images.shape == (2, 64, 64, 3) and images.dtype == np.uint8 and timing["nfe"] == 1

    g = stage.modules["generator"].eval()
    with torch.no_grad():
        z = torch.stack([torch.randn(g.latent_shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
        sigma = g.sigma_max
        assert int(g.sigma_to_t(torch.tensor([sigma]))) == 999
        context = g.encode_prompt(prompts).context
        abar = g.alphas_cumprod[-1]
        x_t = z * sigma / (1 + sigma**2) ** 0.5  # the VP input at t = 999
        eps = g.unet(x_t, torch.tensor([999, 999]), encoder_hidden_states=context).sample
        x0 = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()  # the official eps -> x0 at t = 999
        by_hand = ((g.decode(x0).clamp(-1, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    diff = np.abs(images.astype(int) - by_hand.permute(0, 2, 3, 1).numpy().astype(int))
    assert diff.max() <= 1
    assert not np.array_equal(images[0], images[1])


def test_dreambooth_prior_preservation_and_guided_sampler(sd_source):
    from unidad.sampling import sampling_nfe

    stage = make_stage("dreambooth", sd_source, prompts=(INSTANCE, INSTANCE, "a prt dog"), prior_images=3,
                       prior_steps=2, sample_steps=4)
    assert stage._prior_prompts == ["a dog"] * 3 and stage._prior_latents.shape == (3, *stage.modules["model"].latent_shape)
    # the class images come from the source model: three seeds, three different images
    assert not torch.equal(stage._prior_latents[0], stage._prior_latents[1])
    log = []
    spy(stage, log)
    terms = stage._loss(make_batch(stage, 0, 0))
    assert set(terms) >= {"loss", "instance", "prior"}
    torch.testing.assert_close(terms["loss"], terms["instance"] + terms["prior"])
    contexts = [cond.context for _, _, _, cond in log]
    encode = stage.modules["model"].encode_prompt
    torch.testing.assert_close(contexts[0], encode([INSTANCE] * 2).context)
    torch.testing.assert_close(contexts[1], encode(["a dog"] * 2).context)
    sampling = stage.sampling()
    assert sampling["guidance"] == 7.5 and sampling_nfe(sampling) == 8  # 4 steps x 2 (CFG)
    with pytest.raises(ValueError, match="captioned"):
        cls = get_stage("dreambooth")
        cls(cls.config_cls.from_dict({}), StageContext(lambda: tiny_sd15(seed=0), {"init": (sd_source, "model")},
                                                       torch.zeros(1, 3, 64, 64), torch.device("cpu"), 0)).build()


def test_a_staged_unet_state_dict_becomes_the_sd15_students_weights_file(tmp_path):
    """The path of the public one-step student into the SDP methods: a UNet state dict (.bin, read
    with weights_only=True, DMD2's `feedforward_model.` prefix dropped) into SD1.5's folder, exported
    as a unidad weights file whose UNet is the student's and whose VAE and text encoder are SD1.5's."""
    from unidad.backbones.sd15 import save_sd15
    from unidad.weights_cli import cli
    from unidad.weights_file import read_weights

    source, student = tiny_sd15(seed=0), tiny_sd15(seed=7)
    save_sd15(source, tmp_path / "sd15")
    torch.save({f"feedforward_model.{k}": v for k, v in student.unet.state_dict().items()}, tmp_path / "student.bin")
    out = tmp_path / "student.safetensors"
    assert cli(["export-sd15-unet", "--unet", str(tmp_path / "student.bin"), "--out", str(out),
                "--model-dir", str(tmp_path / "sd15")]) == 0
    model = read_weights(out)["model"]
    for key, value in student.unet.state_dict().items():
        assert torch.equal(model[f"unet.{key}"], value)
    for key, value in source.text_encoder.state_dict().items():
        assert torch.equal(model[f"text_encoder.{key}"], value)
    torch.save({"not_a_unet_key": torch.zeros(1)}, tmp_path / "wrong.bin")
    assert cli(["export-sd15-unet", "--unet", str(tmp_path / "wrong.bin"), "--out", str(tmp_path / "x.safetensors"),
                "--model-dir", str(tmp_path / "sd15")]) == 1


# -- the workflow side: captions, evaluation prompts and seeds of the paper config -----------------
def test_paper_sdp_plan_gives_captions_prompts_and_seeds(tmp_path):
    from pathlib import Path

    from unidad.config import ConfigError, load_config_file
    from unidad.jobs.params import sampling_job, stage_job
    from unidad.plan import Plan

    root = Path(__file__).resolve().parent.parent
    plan = Plan(load_config_file(root / "config" / "paper_sdp.yaml", {"results_dir": str(tmp_path)}))
    assert {mr.method for mr in plan.method_runs} == {"ft", "ft_dmd2", "dmd2_ft", "unidad_src", "unidad"}
    by_prefix = {prefix: next(s for s in plan.runs if s.startswith(prefix))
                 for prefix in ("dog-k4__unidad", "dog-k4__dreambooth", "teapot-k4__student_ft")}
    unidad, dreambooth = plan.runs[by_prefix["dog-k4__unidad"]], by_prefix["dog-k4__dreambooth"]
    assert unidad.params["ratio"] == 10 and unidad.params["fake_lr"] == 0.0 and unidad.params["warmup_iters"] == 500
    assert plan.method_nfe(dreambooth) == 100  # 50 Euler steps x 2 (CFG)
    assert stage_job(plan, dreambooth)["caption"] == "a prt dog"
    job = sampling_job(plan, unidad.slug, unidad.checkpoint_steps[-1])
    assert len(job["prompts"]) == len(job["seeds"]) == 100  # 25 prompts x 4 images
    assert job["prompts"][:5] == ["a prt dog in the jungle"] * 4 + ["a prt dog in the snow"]
    assert job["seeds"][:8] == [1_000_000, 1_000_001, 1_000_002, 1_000_003] * 2
    assert "wearing a santa hat" in " ".join(job["prompts"])  # dogs get the live-subject prompts
    teapot = sampling_job(plan, by_prefix["teapot-k4__student_ft"], 800)
    assert "a prt teapot floating on top of water" in teapot["prompts"]

    # the unconditional benchmarks' jobs are unchanged: no caption, no prompts
    demo = Plan(load_config_file(root / "config" / "config.yaml", {"results_dir": str(tmp_path)}))
    slug = next(iter(demo.runs))
    assert "caption" not in stage_job(demo, slug) and "prompts" not in sampling_job(demo, slug, demo.runs[slug].checkpoint_steps[-1])

    bad = Plan(load_config_file(root / "config" / "paper_sdp.yaml", {
        "results_dir": str(tmp_path), "stage_params": {"unidad": {"unique_token": "sks"}}}))
    with pytest.raises(ConfigError, match="unique_token 'sks' differs"):
        stage_job(bad, next(s for s in bad.runs if "__unidad-" in s))


def test_captions_file_is_aligned_with_the_image_folder(tmp_path):
    from unidad.data.captioned import CAPTIONS_FILE, write_captioned_folder
    from unidad.data.folders import ImageFolderError
    from unidad.imageio import save_png_atomic
    from unidad.prompts import load_captions

    plain = tmp_path / "plain"
    for name in ("b.png", "a.png"):
        save_png_atomic(np.zeros((8, 8, 3), np.uint8), plain / name)
    assert load_captions(plain) is None  # an uncaptioned folder: unconditional data
    folder = write_captioned_folder(np.zeros((3, 8, 8, 3), np.uint8), ["a red square", "a blue disc", "x"],
                                    tmp_path / "captioned")
    assert load_captions(folder, shots=2) == ["a red square", "a blue disc"]
    lines = (folder / CAPTIONS_FILE).read_text().splitlines()
    (folder / CAPTIONS_FILE).write_text(lines[0] + "\n")
    with pytest.raises(ImageFolderError, match="2 images of .* have no caption"):
        load_captions(folder)


def test_lognormal_training_sigmas_are_refused_outside_the_edm_range(sd_source):
    with pytest.raises(ValueError, match="sigma_sampling: grid"):
        make_stage("pretrain", sd_source)
    stage = make_stage("pretrain", sd_source, sigma_sampling="grid", ema_decay=0.0)
    log = []
    spy(stage, log)
    stage.updates()[0].loss(make_batch(stage, 0, 0))
    sigma = log[0][2]
    assert float(sigma.max()) <= stage.modules["model"].sigma_max * (1 + 1e-6)


@pytest.mark.parametrize("stage_id, params", [
    ("imagine_flash", {"gan_weight_g": 0.05}),
    ("imagine_flash", {"distill_input": "forward", "gan_weight_g": 0.0}),
    ("dpdmd", {"anchor_teacher_steps": 2}),
    ("unidad_dp", {"anchor_teacher_steps": 2, "target_teacher": "online"}),
])
def test_seed_method_stages_read_the_prompts_as_uni_dad_does(sd_source, stage_id, params):
    """DP-DMD, Imagine Flash and the anchored Uni-DAD on a text-conditioned backbone: G reads the batch's
    prompts unguided, the source teacher the token-free prompts with its guidance, and every network
    call gets a conditioning (none falls back to the unconditional model)."""
    stage = make_stage(stage_id, sd_source, **{"ratio": 1, "gen_steps": 2, "precision": "fp32", **params})
    log = []
    spy(stage, log)
    run_all_losses(stage, iterations=1)
    assert log and all(cond is not None for *_, cond in log)
    encode = stage.modules["generator"].encode_prompt
    with_token, without = encode([INSTANCE] * 2).context, encode(["a dog"] * 2).context
    for name, _, _, cond in log:
        if name == "teacher":
            assert cond.guidance_scale == 7.5
            torch.testing.assert_close(cond.context, without)
        elif name == "generator":
            assert cond.guidance_scale == 1.0
            torch.testing.assert_close(cond.context, with_token)


def test_caption_dropout_trains_the_unconditional_model_for_guidance():
    from unidad.stages.base import StageConfigError
    from unidad.stages.denoise import PretrainConfig, drop_captions

    prompts = [f"a red circle {i}" for i in range(2000)]
    assert drop_captions(prompts, 0.0) is prompts and drop_captions(None, 0.5) is None
    torch.manual_seed(0)
    dropped = drop_captions(prompts, 0.1)
    blank = [i for i, p in enumerate(dropped) if p == ""]
    assert 0.07 < len(blank) / len(prompts) < 0.13
    assert all(dropped[i] == prompts[i] for i in range(len(prompts)) if i not in set(blank))
    assert PretrainConfig.from_dict({"caption_dropout": 0.1}).caption_dropout == 0.1
    with pytest.raises(StageConfigError, match="caption_dropout"):
        PretrainConfig.from_dict({"caption_dropout": 1.0})
