import math

import pytest
import torch

from unidad.backbones.tiny import TinyUNet
from unidad.edm import (
    PerImageNoise,
    karras_grid,
    sample_ddim,
    sample_euler,
    sample_grid_sigmas,
    sample_heun,
    sampling_sigmas,
    student_sigmas,
    unroll_generator,
)
from unidad.sampling import generate


def test_karras_grid_ends_and_order():
    g = karras_grid()
    assert g.shape == (1000,)
    assert g[0].item() == pytest.approx(0.002, rel=1e-9)
    assert g[-1].item() == pytest.approx(80.0, rel=1e-9)
    assert torch.all(g[1:] > g[:-1])
    # rho = 7 spacing: the 7th root is linear in the index
    r = g ** (1 / 7)
    d = r[1:] - r[:-1]
    assert torch.allclose(d, d.mean().expand_as(d), rtol=1e-6)


# the spec quotes 3 significant figures; compare at that precision
@pytest.mark.parametrize("k,expected,tol", [(1, [80.0], 1e-9), (3, [80.0, 6.32, 0.5], 1e-2), (4, [80.0, 14.7, 2.71, 0.5], 5e-2)])
def test_student_sigmas(k, expected, tol):
    s = student_sigmas(k).tolist()
    assert len(s) == k
    for got, want in zip(s, expected):
        assert got == pytest.approx(want, abs=tol)
    assert s[0] == pytest.approx(80.0) and s[-1] == pytest.approx(0.5 if k > 1 else 80.0)


def test_sampling_sigmas_descend_to_zero():
    s = sampling_sigmas(25)
    assert s.shape == (26,) and s[-1] == 0 and s[0] == pytest.approx(80.0)
    assert torch.all(s[1:] < s[:-1])


def test_grid_sigma_sampling_respects_index_range():
    g = karras_grid()
    s = sample_grid_sigmas(5000, 20, 980, generator=torch.Generator().manual_seed(0))
    assert s.min() >= g[20].float() - 1e-6 and s.max() <= g[980].float() + 1e-4


def test_per_image_noise_is_independent_of_batching():
    a = PerImageNoise([5, 6, 7, 8]).randn((3, 4, 4))
    b = torch.cat([PerImageNoise([5, 6]).randn((3, 4, 4)), PerImageNoise([7, 8]).randn((3, 4, 4))])
    c = PerImageNoise([7]).randn((3, 4, 4))
    assert torch.equal(a, b)
    assert torch.equal(a[2], c[0])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TinyUNet(image_size=8, channels=(8, 16), emb_dim=16).eval()


@pytest.mark.parametrize("sampling", [
    {"kind": "many_step", "sampler": "euler", "steps": 5},
    {"kind": "many_step", "sampler": "heun", "steps": 4},
    {"kind": "many_step", "sampler": "ddim", "steps": 5},
    {"kind": "few_step", "steps": 3},
])
def test_samples_do_not_depend_on_batch_size_or_job_split(model, sampling):
    seeds = list(range(100, 107))
    whole, _ = generate(model, sampling, seeds, batch_size=7)
    small, _ = generate(model, sampling, seeds, batch_size=2)
    split_jobs = [generate(model, sampling, seeds[:3], batch_size=3)[0], generate(model, sampling, seeds[3:], batch_size=4)[0]]
    assert whole.dtype.name == "uint8" and whole.shape == (7, 8, 8, 3)
    assert (whole == small).all()
    assert (whole == torch.cat([torch.from_numpy(a) for a in split_jobs]).numpy()).all()


def test_ddim_eta0_equals_euler(model):
    z = torch.randn(3, 3, 8, 8) * 80
    s = sampling_sigmas(6)
    assert torch.allclose(sample_ddim(model.denoise, z, s), sample_euler(model.denoise, z, s), atol=1e-5)


def test_heun_on_exact_denoiser_of_a_point_mass():
    # D(x, sigma) = 0 for data concentrated at 0: every ODE sampler must return exactly 0
    zero = lambda x, s, c=None: torch.zeros_like(x)  # noqa: E731
    z = torch.randn(2, 3, 4, 4) * 80
    for sampler in (sample_euler, sample_heun):
        assert torch.allclose(sampler(zero, z, sampling_sigmas(10)), torch.zeros_like(z), atol=1e-5)


def test_unroll_renoises_and_noise_correction_reuses_initial_noise():
    calls = []

    def g(x, s, c=None):
        calls.append((x.clone(), float(s[0])))
        return torch.zeros_like(x)

    z = torch.ones(1, 1, 2, 2)
    sig = student_sigmas(3)
    unroll_generator(g, z, sig, noise_correction=True)
    assert [round(c[1], 2) for c in calls] == [80.0, 6.32, 0.5]
    # step 2 input = x0 (0) + sigma_1 * z exactly when the initial noise is reused
    assert torch.allclose(calls[1][0], z * sig[1].item())
    assert torch.allclose(calls[0][0], z * 80.0)
