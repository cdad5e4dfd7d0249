"""Public reference cases for FID, KID and PRDC, and the Inception extractor (spec/metrics.md cases 1-5)."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unidad import weights
from unidad.metrics import METRICS
from unidad.metrics.extractors import (
    FeatureExtractor,
    InceptionV3Extractor,
    extract_features,
    to_uint8_nchw,
)
from unidad.metrics.frechet import feature_statistics, fid_from_features, frechet_distance
from unidad.metrics.kid import kid_from_features
from unidad.metrics.prdc import prdc


# ------------------------------------------------------------------------------------ case 1 and 2

def test_case1_fid_from_statistics_is_2048():
    d = 2048
    assert frechet_distance(np.zeros(d), np.eye(d), np.ones(d), np.eye(d)) == pytest.approx(2048.0, rel=1e-8)


@pytest.mark.parametrize(
    "mu1, s1, mu2, s2, expected",
    [
        ([0.0], [[1.0]], [1.0], [[4.0]], 2.0),  # (0-1)^2 + 1 + 4 - 2*2
        (np.zeros(4), np.diag([1.0, 4, 9, 16]), np.ones(4), np.diag([4.0, 1, 16, 9]), 8.0),
        ([0.0, 0.0], [[2.0, 1.0], [1.0, 2.0]], [0.0, 0.0], np.eye(2), 4.0 - 2.0 * math.sqrt(3.0)),
    ],
)
def test_case2_closed_form_gaussians(mu1, s1, mu2, s2, expected):
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_case2_identical_gaussians_give_zero():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 64))
    mu, sigma = feature_statistics(a)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9
    assert abs(frechet_distance([0.0, 0.0], [[2.0, 1.0], [1.0, 2.0]], [0.0, 0.0], [[2.0, 1.0], [1.0, 2.0]])) < 1e-9


def test_frechet_is_symmetric_and_matches_torch_fidelity():
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((300, 32)), rng.standard_normal((250, 32)) * 1.3 + 0.2
    ours = fid_from_features(a, b)
    assert ours == pytest.approx(fid_from_features(b, a), rel=1e-9)
    stats = lambda f: {"mu": f.mean(0), "sigma": np.cov(f, rowvar=False)}  # noqa: E731
    theirs = fid_statistics_to_metric(stats(a), stats(b), False)["frechet_inception_distance"]
    assert ours == pytest.approx(theirs, rel=1e-9)
    assert ours > 1.0


def test_feature_statistics_dtype_and_ddof():
    feats = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]], dtype=np.float32)
    mu, sigma = feature_statistics(feats)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, [2.0, 4.0])
    np.testing.assert_allclose(sigma, np.cov(feats.astype(np.float64), rowvar=False))  # N-1 normalisation
    assert sigma[0, 0] == pytest.approx(4.0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), np.eye(3)), "sigma1 has shape"),
        (lambda: frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3)), "different dimensions"),
        (lambda: frechet_distance([np.nan, 0.0], np.eye(2), np.zeros(2), np.eye(2)), "NaN or Inf"),
        (lambda: feature_statistics(np.zeros(5)), "2-D"),
        (lambda: feature_statistics(np.zeros((1, 4))), "at least 2"),
        (lambda: fid_from_features(np.zeros((3, 4)), np.zeros((3, 5))), "differ in dimension"),
    ],
)
def test_frechet_input_validation(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------- case 3: images -> statistics

class SpatialMeanExtractor:
    """A stand-in feature extractor: per-channel spatial mean of the [0, 1] image (pytorch-fid's test)."""

    id = "spatial_mean"
    weights_sha256 = "none"
    resize_protocol = "none"

    def __call__(self, images) -> np.ndarray:
        x = to_uint8_nchw(images).double() / 255.0
        return x.mean(dim=(2, 3)).numpy()


def test_case3_png_to_statistics_plumbing(tmp_path: Path):
    paths = []
    for value in (0, 127, 255):
        path = tmp_path / f"img_{value:03d}.png"
        Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8)).save(path)
        paths.append(path)
    extractor = SpatialMeanExtractor()
    assert isinstance(extractor, FeatureExtractor)
    features = extract_features(extractor, sorted(paths), batch_size=2)  # two batches: exercises batching
    assert features.shape == (3, 3)
    mu, sigma = feature_statistics(features)
    np.testing.assert_allclose(mu, np.full(3, 0.4993464), atol=1e-3)
    np.testing.assert_allclose(sigma, np.full((3, 3), 0.2500013), atol=1e-3)


def test_image_conversion_conventions():
    nhwc = np.zeros((2, 5, 6, 3), dtype=np.uint8)
    nhwc[0, 1, 2] = (10, 20, 30)
    out = to_uint8_nchw(nhwc)
    assert out.shape == (2, 3, 5, 6) and out[0, :, 1, 2].tolist() == [10, 20, 30]
    floats = torch.full((1, 3, 2, 2), 0.5)
    assert to_uint8_nchw(floats).unique().tolist() == [128]  # 0.5 * 255 = 127.5 rounds to 128
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_uint8_nchw(torch.full((1, 3, 2, 2), -0.5))
    with pytest.raises(ValueError, match="NHWC"):
        to_uint8_nchw(np.zeros((1, 3, 4, 4), dtype=np.uint8))


# --------------------------------------------------------------------------------------- case 4: PRDC

def test_case4_prdc_standard_normal_reference():
    rng = np.random.RandomState(0)
    real = rng.normal(size=(10000, 1000)).astype(np.float32)
    fake = rng.normal(size=(10000, 1000)).astype(np.float32)
    result = prdc(real, fake, k=5)
    assert result["precision"] == pytest.approx(0.477, abs=0.04)
    assert result["recall"] == pytest.approx(0.471, abs=0.04)
    assert result["density"] == pytest.approx(1.06, abs=0.3)
    assert result["coverage"] == pytest.approx(0.974, abs=0.03)


def _brute_force_prdc(real, fake, k):
    from scipy.spatial.distance import cdist

    d = cdist(real, fake)
    r_real = np.sort(cdist(real, real), axis=1)[:, k]
    r_fake = np.sort(cdist(fake, fake), axis=1)[:, k]
    inside = d < r_real[:, None]
    return {
        "precision": inside.any(axis=0).mean(),
        "recall": (d < r_fake[None, :]).any(axis=1).mean(),
        "density": inside.sum(axis=0).mean() / k,
        "coverage": (d.min(axis=1) < r_real).mean(),
    }


def test_prdc_matches_brute_force_and_is_chunk_independent():
    rng = np.random.default_rng(3)
    real = rng.standard_normal((300, 20))
    fake = rng.standard_normal((350, 20)) * 1.2 + 0.3
    expected = _brute_force_prdc(real, fake, 5)
    for chunk, dtype in ((7, torch.float32), (128, torch.float64), (1000, torch.float32)):
        got = prdc(real, fake, k=5, chunk_size=chunk, dtype=dtype)
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-12), (key, chunk, dtype)


def test_prdc_copy_is_one_and_far_shift_is_zero():
    rng = np.random.default_rng(4)
    real = rng.standard_normal((2000, 64)).astype(np.float32)
    same = prdc(real, real.copy(), k=5)
    assert same == {"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0}
    far = prdc(real, real + 100.0, k=5)
    assert far["precision"] == 0.0 and far["recall"] == 0.0 and far["coverage"] == 0.0 and far["density"] == 0.0


def test_prdc_validation():
    with pytest.raises(ValueError, match="more than k"):
        prdc(np.zeros((5, 3)), np.zeros((10, 3)), k=5)
    with pytest.raises(ValueError, match="dimension"):
        prdc(np.zeros((10, 3)), np.zeros((10, 4)))


# ------------------------------------------------------------------------------------------------ KID

def test_kid_identical_near_zero_and_shift_positive():
    rng = np.random.default_rng(5)
    feats = rng.standard_normal((2000, 64))
    same_distribution = rng.standard_normal((2000, 64))
    independent_mean, independent_std = kid_from_features(feats, same_distribution, subsets=20, subset_size=1000)
    # the same set: the two subsets overlap, so the unbiased estimate sits O(1/subset_size) below 0
    identical_mean, _ = kid_from_features(feats, feats.copy(), subsets=20, subset_size=1000)
    shifted_mean, _ = kid_from_features(feats, same_distribution + 0.5, subsets=20, subset_size=1000)
    assert abs(independent_mean) < 0.002 and independent_std < 0.005
    assert abs(identical_mean) < 0.01
    assert shifted_mean > 0.5


@pytest.mark.parametrize("whole_set_kernels", [True, False], ids=["whole-set-kernels", "per-subset-kernels"])
def test_kid_matches_torch_fidelity_same_subsets(whole_set_kernels, monkeypatch):
    from torch_fidelity.metric_kid import kid_features_to_metric

    import unidad.metrics.kid as kid_module

    if not whole_set_kernels:
        monkeypatch.setattr(kid_module, "_MAX_GRAM_ENTRIES", 0)
    rng = np.random.default_rng(6)
    a = rng.standard_normal((250, 16))  # float64: torch-fidelity computes in the input dtype
    b = rng.standard_normal((220, 16)) + 0.2
    ours = kid_from_features(a, b, subsets=7, subset_size=100, seed=11)
    theirs = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=7, kid_subset_size=100,
                                    rng_seed=11, verbose=False)
    assert ours[0] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-10)
    assert ours[1] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-9)


def test_kid_clips_subset_size_and_validates():
    rng = np.random.default_rng(7)
    mean, _ = kid_from_features(rng.standard_normal((30, 8)), rng.standard_normal((40, 8)), subsets=3)
    assert np.isfinite(mean)
    with pytest.raises(ValueError, match="equal D"):
        kid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))


def test_metric_registry_lists_metrics_with_needs_and_display():
    from unidad.metrics.registry import check_metric_names, metric_ids, metrics_needing, value_info, value_names

    assert metric_ids()[:6] == ["fid", "kid", "prdc", "intra_lpips", "oracle", "speed"]  # the tables' order
    assert METRICS.get("fid").needs == frozenset({"reference"})
    assert metrics_needing("shots", ["fid", "intra_lpips", "oracle"]) == ["intra_lpips"]
    assert value_info("fid").label == "FID" and value_info("fid").higher_is_better is False
    assert value_info("prdc_recall").bounded and not value_info("prdc_density").bounded
    assert value_names("oracle") == ["oracle_in_domain", "oracle_mode_coverage", "oracle_tv",  # the FSIG demo's
                                     "oracle_subject", "oracle_context", "oracle_subject_context"]  # the SDP demo's
    assert value_info("not_a_value").higher_is_better is None
    with pytest.raises(KeyError, match="known metrics"):
        METRICS.get("fdi")
    with pytest.raises(ValueError, match="unknown metric.*fdi"):
        check_metric_names(["fid", "fdi"])


# ------------------------------------------------------------------- Inception extractor plumbing

@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory) -> Path:
    """A state_dict of torch-fidelity's Inception with random weights (the real file is not staged in CI)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    original = FeatureExtractorInceptionV3.load_state_dict
    original_load = torch.load
    try:
        FeatureExtractorInceptionV3.load_state_dict = lambda self, sd, *a, **k: None
        torch.load = lambda *a, **k: {}
        torch.manual_seed(0)
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="unused")
    finally:
        FeatureExtractorInceptionV3.load_state_dict = original
        torch.load = original_load
    torch.save(net.state_dict(), path)
    return path


def test_inception_extractor_protocols(random_inception_weights):
    images = np.random.default_rng(8).integers(0, 256, size=(2, 40, 48, 3), dtype=np.uint8)
    tf_ext = InceptionV3Extractor(random_inception_weights, protocol="torch-fidelity", device="cpu")
    pt_ext = InceptionV3Extractor(random_inception_weights, protocol="pytorch-fid", device="cpu")
    assert isinstance(tf_ext, FeatureExtractor)
    assert tf_ext.weights_sha256 == weights.file_sha256(random_inception_weights)
    assert tf_ext.id != pt_ext.id and tf_ext.resize_protocol == "torch-fidelity"
    f_tf, f_pt = tf_ext(images), pt_ext(images)
    assert f_tf.shape == (2, 2048) and f_pt.shape == (2, 2048)
    assert np.all(np.isfinite(f_tf)) and np.all(np.isfinite(f_pt))
    # the two resize protocols give different features and must never be mixed
    assert np.abs(f_tf - f_pt).max() > 1e-3 * np.abs(f_tf).max()
    with pytest.raises(ValueError, match="unknown resize protocol"):
        InceptionV3Extractor(random_inception_weights, protocol="tf")


# ------------------------------------------------------------------------------- case 5 (weights)

@pytest.mark.weights
@pytest.mark.slow
def test_case5_cifar10_fid_reference():
    cifar_root = os.environ.get("UNIDAD_CIFAR10_DIR")
    if not cifar_root:
        pytest.skip("case 5 needs CIFAR-10 (torchvision layout) in $UNIDAD_CIFAR10_DIR; not available offline")
    try:
        weights_path = weights.resolve("inception_v3_tf")
    except weights.WeightsError as err:
        pytest.skip(str(err))
    from torchvision.datasets import CIFAR10

    extractor = InceptionV3Extractor(weights_path, protocol="torch-fidelity")
    features = []
    for train in (True, False):
        data = CIFAR10(cifar_root, train=train, download=False).data  # uint8 NHWC
        pick = np.random.RandomState(2020).choice(len(data), 5000, replace=False)
        features.append(extractor(data[pick]))
    tolerance = 1e-2 if extractor.device.type == "cuda" else 1e-4
    assert fid_from_features(*features) == pytest.approx(10.3233274, abs=tolerance)


# ------------------------------------------------------------------- the pytorch-fid resize protocol

def test_pytorch_fid_protocol_input_matches_the_pytorch_fid_package():
    """The `pytorch-fid` protocol (what the Uni-DAD tables used) feeds Inception exactly what
    pytorch_fid.inception.InceptionV3.forward makes of the same images: its ToTensor [0, 1] input,
    F.interpolate bilinear (align_corners=False) to 299, then 2x - 1. No weights are needed: the
    package's forward runs with its network blocks replaced by the identity."""
    from pytorch_fid.inception import InceptionV3

    from unidad.metrics.extractors import pytorch_fid_input

    net = InceptionV3.__new__(InceptionV3)
    torch.nn.Module.__init__(net)
    net.resize_input, net.normalize_input = True, True
    net.output_blocks, net.last_needed_block = [0], 0
    net.blocks = torch.nn.ModuleList([torch.nn.Identity()])
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 3, 64, 48), dtype=np.uint8))
    (theirs,) = net(images.float() / 255.0)
    assert torch.equal(pytorch_fid_input(images), theirs)
    assert tuple(theirs.shape) == (3, 3, 299, 299)


def test_prdc_and_kid_record_the_set_sizes_they_used():
    from unidad.metrics.feature_metrics import _protocol_params, prdc_set_size

    assert prdc_set_size(1336, 5000) == 1336  # MetFaces: the generated set is cut to the reference's size
    assert _protocol_params("prdc", 1336, 5000) == {"prdc_k": 5, "prdc_n_per_set": 1336}
    assert _protocol_params("kid", 1336, 500) == {"kid_subsets": 100, "kid_subset_size": 500}
