"""DP-DMD (`dpdmd`, `unidad_dp`), Imagine Flash (`imagine_flash`) and noise correction as a sampler
option every few-step student is evaluated with."""
import pytest
import torch

from unidad.edm import PerImageNoise, sample_euler, student_sigmas, unroll_generator
from unidad.losses.anchor import anchor_x0, shifted_sigma
from unidad.stages import StageContext, get_stage
from unidad.stages.anchored import anchor_grid
from unidad.weights_file import export_weights


@pytest.fixture
def source_file(tmp_path, tiny_factory):
    path = tmp_path / "source.safetensors"
    export_weights(path, {"model": tiny_factory()})
    return path


def make_stage(stage_id, tiny_factory, source_file, real=None, **params):
    cls = get_stage(stage_id)
    base = dict(iterations=4, batch_size=2, lr=1e-3, warmup_iters=1, checkpoint_every=2, log_every=1,
                gen_steps=3, precision="fp32")
    base.update(params)
    torch.manual_seed(0)
    real = torch.rand(5, 3, 8, 8) * 2 - 1 if real is None else real
    ctx = StageContext(backbone_factory=tiny_factory, weights={r: (source_file, "model") for r in cls.roles},
                       real_images=real, device=torch.device("cpu"), seed=3)
    stage = cls(cls.config_cls.from_dict(base), ctx)
    stage.build()
    return stage


class _Recorder:
    """Forward hook keeping every output of a module (with its grad retained)."""

    def __init__(self, module):
        self.outputs, self.inputs = [], []
        module.register_forward_hook(self)

    def __call__(self, module, args, out):
        self.inputs.append(args)
        if out.requires_grad:
            out.retain_grad()
        self.outputs.append(out)


def _sigmas_seen(model):
    """The noise levels of every call of a backbone (all calls, direct `denoise` included)."""
    seen, inner = [], model._denoise

    def spy(x, sigma, cond):
        seen.append(sigma.detach().clone())
        return inner(x, sigma, cond)

    model._denoise = spy
    return seen


# ------------------------------------------------------------------------------------------ DP-DMD
@pytest.mark.parametrize("form", ["initial_noise", "ddim"])
def test_anchor_target_lands_the_first_transition_on_the_teachers_state(tiny_factory, source_file, form):
    stage = make_stage("dpdmd", tiny_factory, source_file, anchor_form=form, anchor_teacher_steps=12)
    teacher, sig = stage.modules["teacher"], stage._sigmas
    z = torch.randn(2, 3, 8, 8)
    x_start = z * float(sig[0])
    target = stage.anchor_target(x_start)
    grid = anchor_grid(12, float(sig[0]), teacher.sigma_min, 0, float(sig[1]))
    z_k, sigma_k = sample_euler(teacher.denoise, x_start, grid), float(grid[-1])
    # the automatic anchor step is the teacher's grid point closest to the student's second sigma
    full = anchor_grid(12, float(sig[0]), teacher.sigma_min, 11, float(sig[1]))
    assert sigma_k == min(full[1:].tolist(), key=lambda s: abs(torch.tensor(s / float(sig[1])).log()))

    calls = []

    def first_step_outputs_target(x, sigma, cond=None):
        calls.append(x)
        return target if len(calls) == 1 else x

    if form == "initial_noise":  # the student's own transition with the initial noise as re-noise direction
        _, states = unroll_generator(first_step_outputs_target, z, sig, noise_correction=True, return_states=True)
        torch.testing.assert_close(states[1][0], z_k, atol=1e-5, rtol=1e-5)
    else:  # the deterministic DDIM transition from sigma_start to sigma_k
        landed = target + sigma_k * (x_start - target) / float(sig[0])
        torch.testing.assert_close(landed, z_k, atol=1e-4, rtol=1e-4)
    assert anchor_x0("denoised", z_k, x_start, 80.0, sigma_k, 1.0, x0_at_anchor=target) is target


def test_no_dmd_gradient_reaches_the_first_student_call(tiny_factory, source_file):
    stage = make_stage("dpdmd", tiny_factory, source_file, anchor_weight=0.5)
    with torch.no_grad():  # a fake score that has moved away from the teacher: DMD's gradient is not zero
        for p in stage.modules["fake"].parameters():
            p.add_(0.05 * torch.randn_like(p))
    calls = _Recorder(stage.modules["generator"])
    torch.manual_seed(5)
    terms = stage.generator_loss({})
    first, later = calls.outputs[0], calls.outputs[1:]
    assert len(calls.outputs) == 3 and {"dmd", "anchor"} <= set(terms)
    # the DMD term: no gradient into the first call, some into the last
    grads = torch.autograd.grad(terms["dmd"], [first, later[-1]], retain_graph=True, allow_unused=True)
    assert grads[0] is None or torch.count_nonzero(grads[0]) == 0
    assert grads[1] is not None and torch.count_nonzero(grads[1]) > 0
    # the anchor term trains the first call only
    grads = torch.autograd.grad(terms["anchor"], [first, *later], retain_graph=True, allow_unused=True)
    assert torch.count_nonzero(grads[0]) > 0 and all(g is None for g in grads[1:])
    # the weighted total: d loss / d first output is exactly lambda times the anchor's gradient
    total = torch.autograd.grad(terms["loss"], first, retain_graph=True)[0]
    torch.testing.assert_close(total, 0.5 * grads[0])


def test_dpdmd_has_no_discriminator_and_reads_no_images(tiny_factory, source_file):
    stage = make_stage("dpdmd", tiny_factory, source_file, real=torch.full((5, 3, 8, 8), 0.3))
    assert set(stage.modules) == {"teacher", "generator", "fake"}
    ups = {u.name: u for u in stage.updates()}
    assert ups["generator"].every == 5 and ups["critic"].every == 1  # 5 fake-score updates per student update
    torch.manual_seed(1)
    a = ups["generator"].loss({})["loss"]  # no "real" in the batch: nothing reads it
    torch.manual_seed(1)
    b = ups["generator"].loss({"real": torch.zeros(2, 3, 8, 8)})["loss"]
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="gen_steps >= 2"):
        make_stage("dpdmd", tiny_factory, source_file, gen_steps=1)


def test_unidad_dp_anchors_to_the_target_teacher(tiny_factory, source_file):
    stage = make_stage("unidad_dp", tiny_factory, source_file, target_teacher="online", gen_steps=2)
    with torch.no_grad():  # a target teacher unlike the source one
        for p in stage.modules["target_teacher"].parameters():
            p.add_(0.05)
    x_start = torch.randn(2, 3, 8, 8) * 80
    with_target = stage.anchor_target(x_start)
    stage.anchor_module = "teacher"
    assert not torch.allclose(with_target, stage.anchor_target(x_start))
    with pytest.raises(ValueError, match="target_teacher to online or frozen"):
        make_stage("unidad_dp", tiny_factory, source_file, target_teacher="none")


# ------------------------------------------------------------------------------------ Imagine Flash
def test_backward_input_is_the_students_own_rollout_without_real_images(tiny_factory, source_file):
    stage = make_stage("imagine_flash", tiny_factory, source_file, gan_weight_g=0.0, gan_weight_d=0.0)
    g, sig = stage.modules["generator"], stage._sigmas
    z = torch.randn(2, 3, 8, 8)
    for step in range(3):
        torch.manual_seed(11)
        with torch.no_grad():
            _, states = unroll_generator(g, z, sig, return_states=True)
        torch.manual_seed(11)
        x = stage.training_state({"real": torch.ones(2, 3, 8, 8)}, z, step)
        torch.manual_seed(11)
        other = stage.training_state({"real": -torch.ones(2, 3, 8, 8)}, z, step)
        assert torch.equal(x, states[step][0]) and torch.equal(x, other) and not x.requires_grad
    # forward distillation, by contrast, starts from the stage's images
    fwd = make_stage("imagine_flash", tiny_factory, source_file, gan_weight_g=0.0, gan_weight_d=0.0,
                     distill_input="forward")
    torch.manual_seed(2)
    a = fwd.training_state({"real": torch.ones(2, 3, 8, 8)}, z, 2)
    torch.manual_seed(2)
    b = fwd.training_state({"real": -torch.ones(2, 3, 8, 8)}, z, 2)
    torch.testing.assert_close(a - b, torch.full_like(a, 2.0))


def test_shifted_reconstruction_time_map_is_monotone_and_configurable(tiny_factory, source_file):
    sigmas = torch.logspace(-2.5, 1.9, 200)
    for shift in (0.25, 1.0, 3.0):
        mapped = shifted_sigma(sigmas, shift, 0.002, 80.0)
        inside = (sigmas * shift > 0.002) & (sigmas * shift < 80.0)
        assert torch.all(mapped[1:] >= mapped[:-1])  # monotone; strictly so where it is not clamped
        assert torch.all(mapped[1:][inside[1:] & inside[:-1]] > mapped[:-1][inside[1:] & inside[:-1]])
    torch.testing.assert_close(shifted_sigma(sigmas, 1.0, 0.002, 80.0), sigmas)
    assert float(shifted_sigma(torch.tensor(80.0), 3.0, 0.002, 80.0)) == 80.0  # high noise stays high
    assert torch.all(shifted_sigma(sigmas[:50], 3.0, 0.002, 80.0) > sigmas[:50])
    # the stage's teacher sees exactly gamma(sigma_j) in the reconstruction loss
    stage = make_stage("imagine_flash", tiny_factory, source_file, gan_weight_g=0.0, gan_weight_d=0.0,
                       backward_weight=0.0, teacher_steps=1, recon_shift=3.0)
    seen, student = _sigmas_seen(stage.modules["teacher"]), _sigmas_seen(stage.modules["generator"])
    for seed in range(6):
        torch.manual_seed(seed)
        stage.generator_loss({})
        assert float(seen[-1][0]) == pytest.approx(min(3.0 * float(student[-1][0]), 80.0), rel=1e-6)
    assert len({round(float(s[0]), 3) for s in student}) > 1  # several student steps were drawn
    with pytest.raises(ValueError, match="recon_shift"):
        get_stage("imagine_flash").config_cls.from_dict({"recon_shift": 0.0})


def test_imagine_flash_discriminator_is_optional(tiny_factory, source_file):
    off = make_stage("imagine_flash", tiny_factory, source_file, gan_weight_g=0.0, gan_weight_d=0.1)
    on = make_stage("imagine_flash", tiny_factory, source_file, gan_weight_g=0.1, gan_weight_d=0.1)
    assert "heads" not in off.modules and [u.name for u in off.updates()] == ["generator"]
    assert "heads" in on.modules and [u.name for u in on.updates()] == ["generator", "critic"]
    torch.manual_seed(0)
    terms = on.generator_loss({"real": torch.rand(2, 3, 8, 8)})
    assert {"backward", "recon", "gan_g"} <= set(terms)
    terms["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in on.modules["generator"].parameters())


# --------------------------------------------------------------------------------- noise correction
def test_noise_correction_equals_its_formula_and_is_void_at_one_step(tiny_factory):
    from unidad.sampling import generate

    model = tiny_factory().eval()
    seeds = [3, 4]
    few = {"kind": "few_step", "steps": 1, "sigma_start": 80.0, "sigma_end": 0.5}
    plain, _ = generate(model, {**few, "noise_correction": False}, seeds)
    corrected, _ = generate(model, {**few, "noise_correction": True}, seeds)
    assert (plain == corrected).all()
    # K = 3: x_1 = x0_0 + sigma_1 * z (the initial noise), later re-noises fresh
    sig = student_sigmas(3)
    noise = PerImageNoise(seeds)  # as the sampler draws: the initial noise, then the re-noises
    z = noise.randn((3, 8, 8))
    with torch.no_grad():
        _, states = unroll_generator(model.denoise, z, sig, noise=noise, noise_correction=True, return_states=True)
        torch.testing.assert_close(states[1][0], states[0][2] + float(sig[1]) * z)
        assert not torch.allclose(states[2][0], states[1][2] + float(sig[2]) * z)  # the second re-noise is fresh
    plain3, _ = generate(model, {**few, "steps": 3}, seeds)
    corrected3, _ = generate(model, {**few, "steps": 3, "noise_correction": True}, seeds)
    assert (plain3 != corrected3).any()


# ------------------------------------------------------------------- noise correction as an eval axis
def _plan(**evaluation):
    from pathlib import Path

    import yaml

    from unidad.config import validate_config
    from unidad.plan import Plan

    root = Path(__file__).resolve().parent.parent
    cfg = yaml.safe_load((root / "config" / "config.yaml").read_text())
    cfg.update(methods=["ft", "unidad", "ft_dpdmd"], targets=["near"], seeds=[0],
               ablations=[{"method": "unidad", "param": "dual_weight", "values": [0.25]}])
    cfg["evaluation"].update(evaluation)
    return Plan(validate_config(cfg))


def test_noise_correction_axis_samples_every_few_step_student_with_and_without():
    from unidad.jobs.params import eval_unit_record, sampling_job

    default, both = _plan(), _plan(noise_correction=[False, True])
    assert not any(u.noise_correction for u in default.eval_units)
    assert all("corrected_nfes" not in sampling_job(default, s, k) for s, k in default.eval_checkpoints)
    corrected = [u for u in both.eval_units if u.noise_correction]
    by_method = {(u.method_run.label, u.nfe) for u in corrected}
    # few-step students of the main grid at every NFE above 1; not the 25-step teacher, not ablation variants
    assert by_method == {(m, k) for m in ("unidad", "ft_dpdmd") for k in (2, 3, 4)}
    assert all(u.final for u in corrected)
    unit = next(u for u in corrected if u.method_run.method == "unidad" and u.nfe == 3)
    assert sampling_job(both, unit.slug, unit.step)["corrected_nfes"] == [2, 3, 4]
    rec = eval_unit_record(both, unit)
    assert rec["sample_key"] == "3_nc" and rec["ablation"] == "noise_correction=on"
    assert rec["ablation_param"] == "noise_correction" and rec["ablation_value"] == "on"
    # the uncorrected units and their sampling jobs are the same as without the axis
    plain = [(u.slug, u.step, u.nfe) for u in both.eval_units if not u.noise_correction]
    assert plain == [(u.slug, u.step, u.nfe) for u in default.eval_units]
    for slug, step in default.eval_checkpoints:
        job = sampling_job(both, slug, step)
        job.pop("corrected_nfes", None)
        assert job == sampling_job(default, slug, step)


def test_sample_checkpoint_stores_the_corrected_sets_apart(tmp_path, tiny_factory):
    import numpy as np

    from unidad.jobs.evaluate import sample_checkpoint
    from unidad.metrics.inputs import MetricInputs

    weights = tmp_path / "w.safetensors"
    export_weights(weights, {"generator": tiny_factory()})
    backbone = {"kind": "tiny", "params": {"image_size": 8, "channels": [8, 16], "emb_dim": 16}}
    sampling = {"kind": "few_step", "steps": 3, "sigma_start": 80.0, "sigma_end": 0.5, "noise_correction": False}
    out = tmp_path / "samples.npz"
    sample_checkpoint(backbone, weights, "generator", sampling, [1, 3], 3, [5, 6, 7], 8, 10, out,
                      tmp_path / "grid.png", device="cpu", corrected_nfes=[3])
    images = MetricInputs(samples=out).images
    assert set(images) == {1, 3, "3_nc"}
    assert not np.array_equal(images[3], images["3_nc"])
    timing = MetricInputs(samples=out).timing
    assert set(timing) == {"1", "3", "3_nc"} and timing["3_nc"]["nfe"] == 3


# ------------------------------------------------------------------------------------------ claims 5-7
def _claim_frame(with_new_methods=True, dataset="near"):
    import pandas as pd

    rows = []

    def add(method, nfe, metric, value, seed, ablation=""):
        param, _, val = ablation.partition("=")
        extractor = f"oracle:{dataset}" if metric.startswith("oracle") else "demo-cnn-v1-lpips-style"
        rows.append({"benchmark": "demo", "dataset": dataset, "shots": 10, "method": method, "seed": seed,
                     "slug": f"{method}{ablation}{seed}", "step": 400, "nfe": nfe, "method_nfe": 3, "final": True,
                     "selection": "final", "metric": metric, "value": value, "extractor": extractor,
                     "variant": "rule-based", "ablation": ablation, "ablation_param": param, "ablation_value": val})

    for seed, noise in ((0, -0.01), (1, 0.01)):
        for method, cov in (("ft_dmd2", 0.5), ("unidad", 0.6), ("dmd2_ft", 0.4)) + (
                (("ft_dpdmd", 0.8), ("ft_iflash", 0.7)) if with_new_methods else ()):
            for nfe in (1, 2, 3, 4):
                add(method, nfe, "oracle_mode_coverage", cov + noise, seed)
                add(method, nfe, "intra_lpips", cov / 2 + noise, seed)
                add(method, nfe, "oracle_in_domain", cov + noise, seed)
        if with_new_methods:
            for nfe in (1, 2, 3, 4):  # forward-noised: worse except at 2 NFE
                add("ft_iflash", nfe, "oracle_in_domain", (0.9 if nfe == 2 else 0.3) + noise, seed,
                    "distill_input=forward")
            for nfe in (2, 3, 4):
                add("ft_iflash", nfe, "oracle_in_domain", 0.75 + noise, seed, "noise_correction=on")
    return pd.DataFrame(rows)


def test_claims_of_dp_dmd_and_imagine_flash():
    from unidad.results.claims import evaluate_claims

    claims = evaluate_claims(_claim_frame())
    five = claims[claims["claim_id"] == 5]
    assert list(five["held"]) == ["held"] and "ft_dpdmd 0.800" in five["evidence"].iloc[0]
    six = claims[claims["claim_id"] == 6].set_index("dataset")["held"]
    assert six.to_dict() == {"near @ 1 NFE": "held", "near @ 2 NFE": "not held", "near @ 3 NFE": "held"}
    seven = claims[claims["claim_id"] == 7]
    assert list(seven["dataset"]) == ["near (ft_iflash)"] and list(seven["held"]) == ["held"]
    # where the methods did not run, the claims table has no rows for them (the default demo's is unchanged)
    assert not evaluate_claims(_claim_frame(False))["claim_id"].isin([5, 6, 7]).any()


def test_claims_compare_each_target_under_its_own_oracle():
    # each demo target has its own oracle (extractor oracle:near, oracle:far): a claim on near must not
    # look for near's numbers under far's oracle and call them missing
    import pandas as pd

    from unidad.results.claims import evaluate_claims

    claims = evaluate_claims(pd.concat([_claim_frame(dataset="near"), _claim_frame(dataset="far")]))
    for claim_id in (5, 6, 7):
        rows = claims[claims["claim_id"] == claim_id]
        assert len(rows) and "not tested" not in set(rows["held"]), rows[["dataset", "held", "evidence"]].to_dict("records")
    five = claims[claims["claim_id"] == 5].set_index("dataset")
    assert five["held"].to_dict() == {"near": "held", "far": "held"}
    assert "oracle:far" in five.loc["far", "evidence"] and "oracle:near" not in five.loc["far", "evidence"]
