"""Evaluating a checkpoint extracts each feature once: one feature pass per sample set shared by FID,
KID and PRDC, and one LPIPS embedding per generated image for Intra-LPIPS."""
import json

import numpy as np

from unidad.jobs.evaluate import compute_metrics
from unidad.metrics.inputs import MetricInputs


class CountingExtractor:
    id, weights_sha256, resize_protocol = "counting", "0" * 64, "none"

    def __init__(self):
        self.images = 0
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        self.images += len(images)
        x = images.reshape(len(images), -1).astype(np.float64)
        return np.stack([x[:, i::8].mean(1) for i in range(8)], axis=1) / 255.0


class CountingDistance:
    def __init__(self):
        self.embedded = 0
        self.direct_pairs = 0

    def embed(self, images):
        self.embedded += images.shape[0]
        return [images.float().mean(dim=1, keepdim=True)]

    def compare(self, fa, fb):
        return (fa[0] - fb[0]).abs().mean(dim=(1, 2, 3))

    def __call__(self, a, b):
        self.direct_pairs += a.shape[0]
        return (a - b).abs().mean(dim=(1, 2, 3))


def test_one_checkpoint_costs_one_feature_pass_per_image(tmp_path):
    rng = np.random.default_rng(0)
    n, shots, nfes = 30, 3, (1, 2)
    samples = tmp_path / "samples.npz"
    arrays = {f"images_nfe{k}": rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8) for k in nfes}
    np.savez(samples, checkpoint="ckpt", timing=json.dumps({}), **arrays)
    extractor, distance = CountingExtractor(), CountingDistance()
    ref_features = extractor(rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8))
    extractor.calls = extractor.images = 0
    reference = tmp_path / "ref.npz"
    np.savez(reference, mu=ref_features.mean(0), sigma=np.cov(ref_features, rowvar=False), features=ref_features,
             n=len(ref_features), extractor_sha256=extractor.weights_sha256)
    inputs = MetricInputs(samples=samples, references={"full": reference}, extractor="counting", lpips="counting",
                          shots=shots)
    inputs.__dict__.update(feature_extractor=extractor, distance=(distance, {"id": "counting"}),
                           shot_images=rng.integers(0, 256, (shots, 8, 8, 3), dtype=np.uint8))
    outputs = {m: tmp_path / f"{m}.json" for m in ("fid", "kid", "prdc", "intra_lpips")}
    compute_metrics(inputs, outputs, "slug", 1)
    assert (extractor.calls, extractor.images) == (len(nfes), len(nfes) * n), "FID, KID and PRDC share one pass"
    assert distance.direct_pairs == 0
    assert distance.embedded == len(nfes) * (n + shots), "each sample and shot embedded once per sample set"
    for path in outputs.values():
        assert set(json.loads(path.read_text())["per_nfe"]) == {"1", "2"}
