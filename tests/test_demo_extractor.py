"""The demo's trained feature extractor and LPIPS-style distance: accuracy, FID, distance axioms, files."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from unidad.data.domains import DOMAINS, get_domain  # noqa: E402
from unidad.metrics.demo_cnn import EXTRACTOR_ID, GARBAGE_CLASS, read_summary, train_demo_extractor  # noqa: E402
from unidad.metrics.demo_extractor import DISTANCE_ID, DemoFeatureExtractor, DemoPerceptualDistance  # noqa: E402

# short training for the tests: 300 steps need the higher learning rate to get well above chance
TEST_ITERATIONS = 300
TEST_LR = 1e-2
FRESH_SEED = 10**6  # far from the seeds training draws from


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo_extractor") / "demo-cnn.safetensors"
    summary = train_demo_extractor(path, iterations=TEST_ITERATIONS, lr=TEST_LR, seed=0)
    print(f"trained {TEST_ITERATIONS} steps in {summary['train_seconds']} s "
          f"({summary['train_cpu_seconds']} s CPU); held-out accuracy {summary['heldout_accuracy']}")
    return path, summary


@pytest.fixture(scope="module")
def extractor(trained):
    return DemoFeatureExtractor(trained[0])


@pytest.fixture(scope="module")
def distance(trained):
    return DemoPerceptualDistance(trained[0])


def _fid(f1: np.ndarray, f2: np.ndarray) -> float:
    try:
        from unidad.metrics.frechet import fid_from_features
    except ImportError:  # the metrics package mid-change: the same formula inline
        mu1, mu2 = f1.mean(0), f2.mean(0)
        s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
        root = np.sqrt(np.linalg.eigvals(s1 @ s2).astype(complex)).sum().real
        return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * root)
    return fid_from_features(f1, f2)


def _to_signed_nchw(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def test_summary_and_file_metadata(trained):
    path, summary = trained
    expected_classes = sum(len(get_domain(name).modes) for name in DOMAINS.names()) + 1
    assert len(summary["class_names"]) == expected_classes
    assert summary["class_names"][-1] == GARBAGE_CLASS
    assert "near/circle/orange" in summary["class_names"]
    stored = read_summary(path)
    assert stored["class_names"] == summary["class_names"]
    assert stored["image_size"] == 16 and stored["architecture"]["feature_dim"] == 128
    assert stored["heldout_accuracy"] == summary["heldout_accuracy"]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # the temporary file was renamed away


def test_classifier_is_accurate_on_fresh_images(trained, extractor):
    _, summary = trained
    assert summary["heldout_accuracy"]["overall"] >= 0.9

    names = summary["class_names"]
    correct = total = 0
    for index, name in enumerate(DOMAINS.names()):
        images, modes = get_domain(name).sample(300, seed=FRESH_SEED + index)
        with torch.no_grad():
            predicted = extractor.model(_to_signed_nchw(images)).argmax(1).numpy()
        truth = np.array([names.index(f"{name}/{get_domain(name).modes[m]}") for m in modes])
        correct += int((predicted == truth).sum())
        total += len(truth)
    accuracy = correct / total
    print(f"accuracy on {total} fresh images of all domains: {accuracy:.3f} (chance {1 / len(names):.3f})")
    assert accuracy >= 0.9


def test_extractor_protocol_and_input_conventions(trained, extractor):
    assert extractor.id == EXTRACTOR_ID
    assert extractor.resize_protocol == "none (native resolution)"
    assert extractor.dim == 128
    try:
        from unidad.metrics.extractors import EXTRACTORS, FeatureExtractor
    except ImportError:
        pass
    else:
        assert isinstance(extractor, FeatureExtractor)
        assert EXTRACTORS.get("demo") is DemoFeatureExtractor

    images, _ = get_domain("source").sample(40, seed=FRESH_SEED)
    features = extractor(images)
    assert features.dtype == np.float64 and features.shape == (40, 128)
    unit_nchw = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    np.testing.assert_array_equal(extractor(unit_nchw), features)
    # batching does not change the numbers beyond float round-off
    small_batches = DemoFeatureExtractor(trained[0], batch_size=7)
    np.testing.assert_allclose(small_batches(images), features, rtol=1e-5, atol=1e-5)
    # any resolution >= the pooling grid goes through
    big, _ = get_domain("source").sample(4, seed=FRESH_SEED, image_size=32)
    assert extractor(big).shape == (4, 128)


def test_weights_round_trip_and_determinism(trained, extractor):
    path, summary = trained
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert extractor.weights_sha256 == digest == summary["weights_sha256"]
    images, _ = get_domain("far").sample(64, seed=FRESH_SEED)
    first = extractor(images)
    np.testing.assert_array_equal(extractor(images), first)
    np.testing.assert_array_equal(DemoFeatureExtractor(path)(images), first)


def test_training_is_byte_reproducible(tmp_path):
    digests = [train_demo_extractor(tmp_path / f"run{i}.safetensors", iterations=8, batch_size=32, log=None)
               ["weights_sha256"] for i in range(2)]
    assert digests[0] == digests[1]
    other_seed = train_demo_extractor(tmp_path / "seed1.safetensors", iterations=8, batch_size=32, seed=1, log=None)
    assert other_seed["weights_sha256"] != digests[0]


def test_fid_separates_domains_and_grows_with_noise(extractor):
    near_a, _ = get_domain("near").sample(1000, seed=FRESH_SEED)
    near_b, _ = get_domain("near").sample(1000, seed=FRESH_SEED + 1)
    far, _ = get_domain("far").sample(1000, seed=FRESH_SEED + 2)
    rng = np.random.default_rng(0)
    noisy = np.clip(np.round(near_b + rng.normal(0.0, 0.1 * 255, near_b.shape)), 0, 255).astype(np.uint8)

    reference = extractor(near_a)
    same = _fid(reference, extractor(near_b))
    with_noise = _fid(reference, extractor(noisy))
    other = _fid(reference, extractor(far))
    print(f"FID near/near {same:.2f}, near/near+noise(0.1) {with_noise:.2f}, near/far {other:.2f}")
    assert other >= 10 * same
    assert same < with_noise < other


def test_distance_axioms_and_ordering(distance):
    assert distance.id == DISTANCE_ID and distance.weights_sha256 and distance.provenance["id"] == DISTANCE_ID
    near, modes = get_domain("near").sample(200, seed=FRESH_SEED)
    far, _ = get_domain("far").sample(200, seed=FRESH_SEED)
    x, y = _to_signed_nchw(near), _to_signed_nchw(far)

    self_distance = distance(x, x)
    assert isinstance(self_distance, torch.Tensor) and self_distance.shape == (200,)
    assert torch.all(self_distance == 0)
    shifted = x.roll(1, dims=0)
    forward, backward = distance(x, shifted), distance(shifted, x)
    torch.testing.assert_close(forward, backward, rtol=0, atol=1e-12)
    assert torch.all(forward > 0)
    # uint8 NHWC input means the same images
    torch.testing.assert_close(distance(near, far), distance(x, y), rtol=1e-5, atol=1e-6)

    i, j = np.triu_indices(len(near), k=1)
    same_mode = modes[i] == modes[j]
    within_mode = distance(x[i[same_mode]], x[j[same_mode]]).mean()
    between_domains = distance(x, y).mean()
    print(f"demo LPIPS-style distance: within a mode {within_mode:.3f}, near vs far {between_domains:.3f}")
    assert between_domains > within_mode


def test_distance_plugs_into_intra_lpips(distance):
    intra_lpips = pytest.importorskip("unidad.metrics.intra_lpips").intra_lpips
    from unidad.data.datasets import make_fewshot

    train = _to_signed_nchw(make_fewshot("near", 10))
    generated = _to_signed_nchw(get_domain("near").sample(60, seed=FRESH_SEED)[0])
    result = intra_lpips(generated, train, distance, variant="cdc")
    assert np.isfinite(result["value"]) and result["value"] > 0


def test_bad_inputs_fail_with_clear_errors(trained, extractor, distance, tmp_path):
    images, _ = get_domain("near").sample(4, seed=FRESH_SEED)
    signed = _to_signed_nchw(images)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        extractor(signed)  # the extractor convention is [0, 1] floats
    with pytest.raises(ValueError, match=r"\[N,H,W,3\]"):
        extractor(images[..., :2])
    with pytest.raises(ValueError, match="same size"):
        distance(signed, signed[:2])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        distance(signed * 3, signed)
    with pytest.raises(FileNotFoundError, match="train_demo_extractor"):
        DemoFeatureExtractor(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not a weights file of the demo extractor"):
        DemoPerceptualDistance(foreign)
    with pytest.raises(ValueError, match="iterations must be a positive integer"):
        train_demo_extractor(tmp_path / "x.safetensors", iterations=0)
