"""Intra-LPIPS variants on a hand-built case, and LPIPS (VGG v0.1) built from local files (metrics.md case 6)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unidad import weights
from unidad.metrics.intra_lpips import build_lpips_vgg, intra_lpips, lpips_vgg_distance, mean_pairwise_distance

LPIPS_IMGS = Path(__file__).parent / "data" / "lpips_imgs"


def toy_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per pair: a stand-in for LPIPS with numbers checkable by hand."""
    return (a - b).abs().mean(dim=(1, 2, 3))


def pixels(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).reshape(-1, 1, 1, 1)


# Training images at -0.8, 0.0, 0.8. Generated images (in [-1, 1], in generation order):
#   g0 = -0.9, g1 = 0.1, g2 = -0.7, g3 = -0.5
TRAIN = pixels(-0.8, 0.0, 0.8)
GENERATED = pixels(-0.9, 0.1, -0.7, -0.5)


def test_cdc_variant_excludes_empty_and_singleton_clusters():
    # nearest training image: g0, g2, g3 -> -0.8 (cluster 0); g1 -> 0.0 (singleton); cluster 2 empty.
    # cluster 0 pairs: |-0.9+0.7| = 0.2, |-0.9+0.5| = 0.4, |-0.7+0.5| = 0.2 -> mean 0.8/3
    result = intra_lpips(GENERATED, TRAIN, toy_distance, variant="cdc")
    assert result["cluster_sizes"] == [3, 1, 0]
    assert result["n_clusters_used"] == 1
    assert result["value"] == pytest.approx(0.8 / 3, abs=1e-12)
    assert result["cluster_scores"][1] is None and result["cluster_scores"][2] is None
    assert result["members"] == 50 and result["member_selection"] == "random"


def test_unidad_compat_variant_counts_small_clusters_as_zero_and_feeds_0_1_images():
    # compat passes generated images as (g + 1) / 2: 0.05, 0.55, 0.15, 0.25 (the official code's defect),
    # which also changes the assignment: 0.05, 0.15, 0.25 -> 0.0 (cluster 1); 0.55 -> 0.8 (singleton).
    # cluster 1 pairs: 0.1, 0.2, 0.1 -> 0.4/3; clusters 0 (empty) and 2 (singleton) count as 0.
    result = intra_lpips(GENERATED, TRAIN, toy_distance, variant="unidad_compat")
    assert result["cluster_sizes"] == [0, 3, 1]
    assert result["n_clusters_used"] == 1
    assert result["value"] == pytest.approx((0.4 / 3) / 3, abs=1e-12)
    assert result["members"] == 100 and result["small_clusters"] == "zero"
    assert result["generated_range"].startswith("[0,1]")


def test_member_cap_first_in_generation_order_for_compat():
    # first two members of cluster 1 in generation order: 0.05 and 0.15 -> 0.1; averaged over 3 clusters
    result = intra_lpips(GENERATED, TRAIN, toy_distance, variant="unidad_compat", members=2)
    assert result["value"] == pytest.approx(0.1 / 3, abs=1e-12)


def test_member_cap_random_and_seeded_for_cdc():
    values = {seed: intra_lpips(GENERATED, TRAIN, toy_distance, variant="cdc", members=2, seed=seed)["value"]
              for seed in range(12)}
    # any 2 of {-0.9, -0.7, -0.5}: distance 0.2 or 0.4
    assert all(v == pytest.approx(0.2) or v == pytest.approx(0.4) for v in values.values())
    assert len({round(v, 9) for v in values.values()}) == 2  # the draw really depends on the seed
    again = intra_lpips(GENERATED, TRAIN, toy_distance, variant="cdc", members=2, seed=3)["value"]
    assert again == values[3]


def test_cdc_without_any_pair_is_an_error():
    with pytest.raises(ValueError, match="no cluster has 2"):
        intra_lpips(pixels(-0.9, 0.1), TRAIN, toy_distance, variant="cdc")
    # compat defines the same case as 0
    assert intra_lpips(pixels(-0.9, 0.9), TRAIN, toy_distance, variant="unidad_compat")["value"] == 0.0


def test_mean_pairwise_distance_batches_all_pairs_once():
    imgs = pixels(0.0, 0.1, 0.3, 0.6, 1.0)
    expected = np.mean([abs(a - b) for i, a in enumerate([0.0, 0.1, 0.3, 0.6, 1.0])
                        for b in [0.0, 0.1, 0.3, 0.6, 1.0][i + 1:]])
    for batch in (1, 3, 64):
        assert mean_pairwise_distance(imgs, toy_distance, batch_size=batch) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"variant": "CDC"}, "unknown intra-LPIPS variant"),
        ({"members": 1}, "members must be >= 2"),
        ({"generated": pixels(0.0, 2.0)}, r"scale images to \[-1, 1\]"),
        ({"generated": torch.zeros(2, 1, 2, 2, dtype=torch.float64)}, "differ in shape"),
        ({"distance_fn": lambda a, b: torch.zeros(1)}, "one per pair"),
    ],
)
def test_intra_lpips_input_errors(kwargs, message):
    args = {"generated": GENERATED, "train_images": TRAIN, "distance_fn": toy_distance} | kwargs
    with pytest.raises(ValueError, match=message):
        intra_lpips(**args)


# ------------------------------------------------------------------------------------------ real LPIPS

def load_lpips_image(name: str) -> torch.Tensor:
    img = np.asarray(Image.open(LPIPS_IMGS / name).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(img).permute(2, 0, 1)[None] / 127.5 - 1.0  # [-1, 1]


@pytest.fixture(scope="module")
def lpips_images():
    return {k: load_lpips_image(f"ex_{k}.png") for k in ("ref", "p0", "p1")}


@pytest.fixture
def random_vgg_file(tmp_path, monkeypatch) -> Path:
    """A torchvision VGG16 trunk with random weights, accepted by the manifest for this test only."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    trunk = make_layers(cfgs["D"]).state_dict()  # vgg16().features without the big classifier
    path = tmp_path / "vgg16-random.pth"
    torch.save({f"features.{k}": v for k, v in trunk.items()}, path)
    entry = weights.get_entry("lpips_vgg16")
    monkeypatch.setitem(weights.manifest(), "lpips_vgg16", dataclasses.replace(entry, sha256_prefix=None))
    return path


def test_lpips_builds_offline_from_local_files(random_vgg_file, lpips_images):
    model, provenance = build_lpips_vgg(random_vgg_file)
    saved = torch.load(random_vgg_file, weights_only=True)
    assert torch.equal(getattr(model.net.slice5, "28").weight, saved["features.28.weight"])
    package_lin = torch.load(weights.resolve("lpips_vgg_lin_v01"), map_location="cpu", weights_only=True)
    for i in range(5):
        assert torch.equal(model.lins[i].model[1].weight, package_lin[f"lin{i}.model.1.weight"])
    assert provenance["vgg_weights_sha256"] == weights.file_sha256(random_vgg_file)
    assert provenance["weights_sha256"] == provenance["vgg_weights_sha256"]  # the metric record's extractor_sha256
    assert provenance["lin_weights_sha256"] == weights.get_entry("lpips_vgg_lin_v01").sha256

    distance = lpips_vgg_distance(random_vgg_file)
    ref, p0 = lpips_images["ref"], lpips_images["p0"]
    assert float(distance(ref, ref)[0]) == 0.0
    assert float(distance(ref, p0)[0]) == pytest.approx(float(distance(p0, ref)[0]), rel=1e-5)
    assert float(distance(ref, p0)[0]) > 0.0
    batch = distance(torch.cat([ref, ref]), torch.cat([p0, ref]))
    assert batch.shape == (2,)


def test_lpips_rejects_vgg_file_with_wrong_hash_prefix(tmp_path):
    bogus = tmp_path / "vgg16-397923af.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bogus)
    with pytest.raises(weights.WeightsError, match="expected prefix 397923af"):
        build_lpips_vgg(bogus)


@pytest.mark.weights
def test_case6_lpips_vgg_reference_values(lpips_images):
    try:
        distance = lpips_vgg_distance()
    except weights.WeightsError as err:
        pytest.skip(f"LPIPS VGG16 trunk not staged: {err}")
    ref, p0, p1 = lpips_images["ref"], lpips_images["p0"], lpips_images["p1"]
    d0, d1 = float(distance(ref, p0)[0]), float(distance(ref, p1)[0])
    assert d0 == pytest.approx(0.569, abs=0.002)
    assert d1 == pytest.approx(0.422, abs=0.002)
    assert d1 < d0
    assert float(distance(ref, ref)[0]) == 0.0
    assert float(distance(p1, ref)[0]) == pytest.approx(d1, rel=1e-5)


def test_lpips_vgg_embed_then_compare_equals_its_forward(random_vgg_file, lpips_images):
    distance = lpips_vgg_distance(random_vgg_file)
    a = torch.cat([lpips_images["ref"], lpips_images["p0"]])
    b = torch.cat([lpips_images["p1"], lpips_images["ref"]])
    torch.testing.assert_close(distance.compare(distance.embed(a), distance.embed(b)), distance(a, b),
                               rtol=1e-5, atol=1e-7)


class CountingDistance:
    """A factorised distance (embed = the pixels, compare = mean |a - b|) that counts the images it
    embeds and the pairs it is called on directly."""

    def __init__(self):
        self.embedded, self.direct_pairs = [], 0

    def embed(self, images):
        self.embedded.extend(images.reshape(images.shape[0], -1)[:, 0].tolist())
        return [images.clone()]

    def compare(self, fa, fb):
        return (fa[0] - fb[0]).abs().mean(dim=(1, 2, 3))

    def __call__(self, a, b):
        self.direct_pairs += a.shape[0]
        return toy_distance(a, b)


@pytest.mark.parametrize("cache_bytes", [None, 0])
def test_intra_lpips_embeds_each_image_once(monkeypatch, cache_bytes):
    from unidad.metrics import intra_lpips as module

    if cache_bytes is not None:  # nothing kept across steps: an image is embedded again only in its cluster
        monkeypatch.setattr(module, "EMBED_CACHE_BYTES", cache_bytes)
    torch.manual_seed(0)
    generated = torch.rand(40, 3, 4, 4) * 2 - 1
    generated[:, 0, 0, 0] = torch.linspace(-0.99, 0.99, 40)  # a distinct tag per image for the count
    shots = torch.rand(3, 3, 4, 4) * 2 - 1
    shots[:, 0, 0, 0] = torch.tensor([-1.0, 1.0, 0.995])
    counting = CountingDistance()
    result = intra_lpips(generated, shots, counting, variant="cdc", batch_size=8)
    assert result == intra_lpips(generated, shots, toy_distance, variant="cdc", batch_size=8) | {"value": pytest.approx(result["value"])}
    tags = [round(t, 6) for t in counting.embedded]
    assert counting.direct_pairs == 0
    if cache_bytes is None:
        assert sorted(tags) == sorted(round(t, 6) for t in torch.cat([generated, shots])[:, 0, 0, 0].tolist())
    else:
        generated_tags = {round(t, 6) for t in generated[:, 0, 0, 0].tolist()}
        assert max(tags.count(t) for t in generated_tags) <= 2  # once to assign, once more in its cluster at most
        assert max(tags.count(t) for t in set(tags) - generated_tags) <= -(-generated.shape[0] // 8)  # per batch
