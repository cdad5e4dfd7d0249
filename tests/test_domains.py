"""The demo's procedural domains: determinism, oracle accuracy and robustness, few-shot sets."""
from __future__ import annotations

import time

import numpy as np
import pytest

from unidad.data import DOMAINS, fewshot_modes, get_domain, load_image_folder, make_fewshot, make_full, oracle_report
from unidad.data.domains import write_image_folder
from unidad.imageio import to_float_nchw
from unidad.registry import UnknownNameError

NAMES = ["source", "near", "far"]
N = 1000


@pytest.fixture(scope="module")
def samples() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {name: get_domain(name).sample(N, seed=7) for name in NAMES}


def _box_blur(unit: np.ndarray) -> np.ndarray:
    padded = np.pad(unit, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = unit.shape[1:3]
    return sum(padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9


def _unit_to_nchw(unit: np.ndarray) -> np.ndarray:
    return np.moveaxis(np.clip(unit, 0, 1) * 2 - 1, -1, 1).astype(np.float32)


def test_registry_and_metadata():
    assert DOMAINS.names() == sorted(NAMES)
    assert [len(get_domain(n).modes) for n in NAMES] == [12, 6, 6]
    assert get_domain("near").modes[0] == "circle/orange"
    for name in NAMES:
        dist = get_domain(name).mode_distribution()
        assert dist.shape == (len(get_domain(name).modes),)
        assert dist.sum() == pytest.approx(1.0)
    with pytest.raises(UnknownNameError, match="known domains: far, near, source"):
        get_domain("ffhq")


@pytest.mark.parametrize("name", NAMES)
def test_sampling_is_deterministic_and_prefix_stable(name):
    domain = get_domain(name)
    images, modes = domain.sample(64, seed=3)
    again, again_modes = domain.sample(64, seed=3)
    assert images.dtype == np.uint8 and images.shape == (64, 16, 16, 3)
    assert images.tobytes() == again.tobytes() and np.array_equal(modes, again_modes)
    other, _ = domain.sample(64, seed=4)
    assert images.tobytes() != other.tobytes()
    longer, longer_modes = domain.sample(100, seed=3)
    assert np.array_equal(longer[:64], images) and np.array_equal(longer_modes[:64], modes)
    assert len(np.unique(images.reshape(64, -1), axis=0)) == 64  # no duplicates


def test_domains_differ_for_the_same_seed():
    a, _ = get_domain("source").sample(8, seed=0)
    b, _ = get_domain("near").sample(8, seed=0)
    assert a.tobytes() != b.tobytes()


@pytest.mark.parametrize("name", NAMES)
def test_oracle_accepts_own_domain_with_the_right_mode(name, samples):
    images, modes = samples[name]
    in_domain, found = get_domain(name).oracle(images)
    assert in_domain.mean() >= 0.99
    assert (found[in_domain] == modes[in_domain]).mean() >= 0.99
    assert np.all(found[~in_domain] == -1)
    # every mode is drawn, with roughly uniform frequency
    counts = np.bincount(modes, minlength=len(get_domain(name).modes))
    assert counts.min() > 0.5 * N / len(counts)


@pytest.mark.parametrize(("name", "other"), [(a, b) for a in NAMES for b in NAMES if a != b])
def test_oracle_rejects_other_domains(name, other, samples):
    in_domain, modes = get_domain(name).oracle(samples[other][0])
    assert in_domain.mean() <= 0.01
    assert np.all(modes[~in_domain] == -1)


@pytest.mark.parametrize("name", NAMES)
def test_oracle_tolerates_mild_noise_and_blur(name, samples):
    images, modes = samples[name]
    rng = np.random.default_rng(0)
    unit = images.astype(np.float64) / 255
    perturbed = 0.5 * unit + 0.5 * _box_blur(unit) + rng.normal(0, 0.03, unit.shape)
    in_domain, found = get_domain(name).oracle(_unit_to_nchw(perturbed))
    assert (in_domain & (found == modes)).mean() >= 0.95


@pytest.mark.parametrize("name", NAMES)
def test_oracle_tolerates_colour_drift(name, samples):
    images, modes = samples[name]
    rng = np.random.default_rng(1)
    drift = rng.uniform(-0.1, 0.1, (len(images), 1, 1, 3))
    in_domain, found = get_domain(name).oracle(_unit_to_nchw(images / 255 + drift))
    assert (in_domain & (found == modes)).mean() >= 0.95


@pytest.mark.parametrize("name", NAMES)
def test_oracle_rejects_garbage(name):
    rng = np.random.default_rng(2)
    oracle = get_domain(name).oracle
    noise = rng.integers(0, 256, (200, 16, 16, 3), dtype=np.uint8)
    assert not oracle(noise)[0].any()
    flat = np.full((3, 16, 16, 3), [[[[30]]], [[[128]]], [[[225]]]], dtype=np.uint8)
    assert not oracle(flat)[0].any()
    light_noise = np.clip(0.88 + rng.normal(0, 0.1, (200, 16, 16, 3)), 0, 1)
    assert not oracle(_unit_to_nchw(light_noise))[0].any()


@pytest.mark.parametrize(("a", "b"), [("source", "near"), ("source", "far"), ("near", "far")])
def test_half_blends_of_two_domains_are_rejected(a, b, samples):
    blend = (samples[a][0].astype(np.float64) + samples[b][0]) / 2 / 255
    for name in NAMES:
        assert get_domain(name).oracle(_unit_to_nchw(blend))[0].mean() <= 0.02, name


@pytest.mark.parametrize("name", NAMES)
def test_oracle_reads_float_nchw_like_uint8(name, samples):
    images, _ = samples[name]
    as_u8 = get_domain(name).oracle(images[:100])
    as_float = get_domain(name).oracle(to_float_nchw(images[:100]))
    assert np.array_equal(as_u8[0], as_float[0]) and np.array_equal(as_u8[1], as_float[1])


@pytest.mark.parametrize("name", NAMES)
def test_works_at_32_pixels(name):
    domain = get_domain(name)
    images, modes = domain.sample(300, seed=11, image_size=32)
    assert images.shape == (300, 32, 32, 3)
    in_domain, found = domain.oracle(images)
    assert (in_domain & (found == modes)).mean() >= 0.99
    for other in NAMES:
        if other != name:
            assert get_domain(other).oracle(images)[0].mean() <= 0.01


@pytest.mark.parametrize("name", NAMES)
def test_fewshot_sets_are_fixed_nested_and_partial(name):
    tenshot = make_fewshot(name, 10)
    assert tenshot.shape == (10, 16, 16, 3) and tenshot.dtype == np.uint8
    assert make_fewshot(name, 10).tobytes() == tenshot.tobytes()
    for k in (1, 5):
        assert np.array_equal(make_fewshot(name, k), tenshot[:k])
    assert np.array_equal(make_fewshot(name, 20)[:10], tenshot)
    assert make_fewshot(name, 10, seed=1).tobytes() != tenshot.tobytes()

    domain = get_domain(name)
    in_domain, modes = domain.oracle(tenshot)
    assert in_domain.all()
    shown = set(modes.tolist())
    assert shown == set(fewshot_modes(name))
    assert 2 <= len(shown) < len(domain.modes)  # several modes, not all
    outer, inner = domain.factor_sizes
    assert {m // inner for m in shown} == set(range(outer))  # every kind ...
    assert {m % inner for m in shown} == set(range(inner))  # ... and every colour appears


@pytest.mark.parametrize("name", NAMES)
def test_fewshot_folder_round_trip(name, tmp_path):
    tenshot = make_fewshot(name, 10)
    folder = write_image_folder(tenshot, tmp_path / name)
    assert sorted(p.name for p in folder.iterdir()) == [f"{i:05d}.png" for i in range(10)]
    assert np.array_equal(load_image_folder(folder), tenshot)
    assert np.array_equal(load_image_folder(folder, shots=5), tenshot[:5])
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary folder left behind


def test_full_set_and_report():
    started = time.perf_counter()
    full = make_full("near", 5000)
    print(f"make_full(near, 5000): {time.perf_counter() - started:.2f} s")
    assert full.shape == (5000, 16, 16, 3)
    assert full[:10].tobytes() != make_fewshot("near", 10).tobytes()
    report = oracle_report(full, "near")
    assert report["n"] == 5000 and report["in_domain_rate"] >= 0.99
    assert report["mode_coverage"] == 1.0
    assert sum(report["mode_histogram"]) == pytest.approx(5000 * report["in_domain_rate"])
    assert sum(report["true_histogram"]) == pytest.approx(1.0)
    assert report["tv_distance"] < 0.05


def test_report_of_a_collapsed_and_of_an_empty_generator():
    images, modes = get_domain("far").sample(400, seed=5)
    collapsed = images[modes == 0]
    report = oracle_report(collapsed, "far")
    assert report["mode_coverage"] == pytest.approx(1 / 6)
    # all mass on one of six equally likely modes: TV = 1 - 1/6
    assert report["tv_distance"] == pytest.approx(5 / 6)
    nothing = oracle_report(np.zeros((4, 16, 16, 3), np.uint8), get_domain("far"))
    assert nothing["in_domain_rate"] == 0.0 and nothing["mode_coverage"] == 0.0 and nothing["tv_distance"] == 1.0


def test_rejection_reasons_name_the_failing_rule(samples):
    reasons = get_domain("source").rejection_reasons(samples["far"][0][:50])
    assert reasons["background_uniform"] == 1.0
    assert set(get_domain("far").rejection_reasons(samples["far"][0][:50]).values()) == {0.0}


def test_bad_arguments():
    domain = get_domain("source")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        domain.sample(4, seed=-1)
    with pytest.raises(ValueError, match="image_size must be an integer >= 12"):
        domain.sample(4, seed=0, image_size=8)
    with pytest.raises(ValueError, match="k must be >= 1"):
        make_fewshot("source", 0)
    with pytest.raises(ValueError, match="float images must be"):
        domain.oracle(np.zeros((2, 16, 16, 3), np.float32))


def test_generation_speed(capsys):
    started = time.perf_counter()
    for name in NAMES:
        get_domain(name).sample(10_000, seed=0)
    with capsys.disabled():
        print(f"\n10k images of each of 3 domains: {time.perf_counter() - started:.2f} s")
