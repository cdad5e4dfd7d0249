"""What evaluating one checkpoint costs next to training the segment that produced it
(`bench_eval.py --relative`), with the feature passes it takes, measured on this machine.

Demo scale (config/config.yaml): the unidad stage on the demo backbone, its checkpoint interval; the
checkpoint's evaluation as the DAG runs it: sampling of every NFE of the sweep, demo-CNN features
(one pass per image, shared by FID/KID/PRDC), the demo LPIPS-style embeddings (one per image and shot)
and the metric arithmetic. The networks have random weights (same cost as trained ones).

Reduced paper scale (config/paper_fsig.yaml counts: 5000 samples, NFEs 1-4, a checkpoint every 2500
iterations): the reduced ADM of bench_side_by_side.py (64x64, 64 channels) at batch 2, ratio 5; per-image
costs of sampling, Inception-v3 at 299 px (torchvision's architecture, random weights) and LPIPS-VGG at
64 px are measured on small batches and multiplied by the counts. Figures are printed; nothing is
asserted.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
NFES = (1, 2, 3, 4)


def _seconds(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _iteration_seconds(stage, iterations: int) -> float:
    from unidad.train.loop import build_optimizers, run_update, seed_everything

    seed_everything(0)
    stage.build()
    optims = build_optimizers(stage)
    ratio = max(o.update.every for o in optims)
    for it in range(ratio):  # warm-up: one full cycle
        for o in optims:
            if it % o.update.every == 0:
                run_update(stage, o, it)
    n = max(ratio, iterations - iterations % ratio)
    t0 = time.perf_counter()
    for it in range(ratio, ratio + n):
        for o in optims:
            if it % o.update.every == 0:
                run_update(stage, o, it)
    return (time.perf_counter() - t0) / n


def _pairs_without_factorising(n: int, shots: int, members: int = 50) -> int:
    """Network passes of an LPIPS called pair by pair (2 per pair): assignment and cluster pairs
    (at most `members` per cluster, n spread evenly over the shots)."""
    per_cluster = min(members, n // shots)
    return 2 * (n * shots + shots * per_cluster * (per_cluster - 1) // 2)


def demo_scale(train_iters: int) -> None:
    import yaml

    from unidad.backbones import backbone_image_size, build_backbone
    from unidad.data.domains import get_domain
    from unidad.imageio import to_float_nchw
    from unidad.metrics.demo_cnn import train_demo_extractor
    from unidad.metrics.demo_extractor import DemoFeatureExtractor, DemoPerceptualDistance
    from unidad.metrics.feature_metrics import _fid, _kid, _prdc
    from unidad.metrics.frechet import feature_statistics
    from unidad.metrics.intra_lpips import intra_lpips
    from unidad.sampling import generate
    from unidad.stages import StageContext, get_stage
    from unidad.weights_file import export_weights

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    params = dict(cfg["stage_params"]["unidad"])
    n, batch = cfg["evaluation"]["n_samples"], cfg["evaluation"]["batch_size"]
    nfes = cfg["evaluation"].get("nfe_sweep", list(NFES))
    tmp = Path(tempfile.mkdtemp())
    factory = lambda: build_backbone(cfg["backbone"])  # noqa: E731
    export_weights(tmp / "source.safetensors", {"model": factory()})
    size = backbone_image_size(cfg["backbone"])
    shots_u8, _ = get_domain("far").sample(10, seed=0, image_size=size)
    cls = get_stage("unidad")
    ctx = StageContext(backbone_factory=factory, weights={r: (tmp / "source.safetensors", "model") for r in cls.roles},
                       real_images=torch.from_numpy(to_float_nchw(shots_u8)), device=torch.device("cpu"), seed=0)
    stage = cls(cls.config_cls.from_dict(params), ctx)
    per_it = _iteration_seconds(stage, train_iters)
    segment = per_it * stage.config.checkpoint_every

    ext_path = tmp / "extractor.safetensors"
    train_demo_extractor(ext_path, image_size=size, iterations=1, log=None)
    extractor, distance = DemoFeatureExtractor(ext_path), DemoPerceptualDistance(ext_path)
    ref_feats = extractor(get_domain("far").sample(1000, seed=1, image_size=size)[0])
    mu, sigma = feature_statistics(ref_feats)
    ref = {"mu": mu, "sigma": sigma, "features": ref_feats, "n": len(ref_feats)}
    generator = stage.modules["generator"].eval()
    times = {"sampling": 0.0, "features": 0.0, "lpips": 0.0, "metric arithmetic": 0.0}
    for nfe in nfes:
        spec = dict(stage.sampling(), steps=nfe)
        t0 = time.perf_counter()
        images, _ = generate(generator, spec, range(n), batch_size=batch)
        t1 = time.perf_counter()
        feats = extractor(images)
        t2 = time.perf_counter()
        intra_lpips(torch.from_numpy(to_float_nchw(images)), torch.from_numpy(to_float_nchw(shots_u8)), distance)
        t3 = time.perf_counter()
        _fid(ref, feats), _kid(ref, feats), _prdc(ref, feats)
        t4 = time.perf_counter()
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            times[key] += dt
    total = sum(times.values())
    print(f"demo scale: unidad on the demo backbone, batch {stage.config.batch_size}, ratio {stage.config.ratio}: "
          f"{per_it:.3f} s/iteration; a checkpoint every {stage.config.checkpoint_every} iterations -> "
          f"segment {segment:.1f} s")
    print(f"  one checkpoint's evaluation ({n} samples x NFE {list(nfes)}): {total:.1f} s = "
          f"{total / segment:.2f}x the segment's training; " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
    print(f"  feature passes: {n * len(nfes)} demo-CNN (one per image, shared by FID/KID/PRDC), "
          f"{(n + len(shots_u8)) * len(nfes)} LPIPS-style embeddings (one per image and shot per NFE; "
          f"pair by pair it would be {_pairs_without_factorising(n, len(shots_u8)) * len(nfes)})")


def reduced_paper_scale(train_iters: int) -> None:
    import torchvision

    from unidad.backbones import build_backbone
    from unidad.metrics.intra_lpips import LPIPSDistance

    import bench_side_by_side as sbs

    n, every, shots, probe = 5000, 2500, 10, 8
    tmp = Path(tempfile.mkdtemp())
    _, st = sbs.write_weights("reduced", tmp)
    size = sbs.arch("reduced")["image_size"]
    from unidad.data.domains import get_domain
    from unidad.imageio import to_float_nchw

    real = torch.from_numpy(to_float_nchw(get_domain("far").sample(shots, seed=0, image_size=size)[0]))
    side = sbs.ProjectSide("reduced", st, torch.device("cpu"), "fp32", real, {})
    t0 = time.perf_counter()
    for it in range(sbs.RATIO):  # warm-up cycle
        side.iteration(it)
    t0 = time.perf_counter()
    count = max(sbs.RATIO, train_iters - train_iters % sbs.RATIO)
    for it in range(sbs.RATIO, sbs.RATIO + count):
        side.iteration(it)
    per_it = (time.perf_counter() - t0) / count
    segment = per_it * every

    net = build_backbone({"kind": "adm", "params": {"config": sbs._adm_config("reduced")}}).eval()
    x = torch.randn(probe, 3, size, size)
    with torch.no_grad():
        per_forward = _seconds(lambda: net.denoise(x, torch.full((probe,), 80.0)), 2) / probe
        inception = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
        per_inception = _seconds(lambda: inception(torch.randn(probe, 3, 299, 299)), 2) / probe
    import lpips

    model = lpips.LPIPS(net="vgg", version="0.1", pretrained=False, pnet_rand=True, verbose=False).eval()
    per_embed = _seconds(lambda: LPIPSDistance(model).embed(x.clamp(-1, 1)), 2) / probe
    forwards = n * sum(NFES)
    factorised = (n + shots) * len(NFES)
    pairwise = _pairs_without_factorising(n, shots) * len(NFES)
    cost = {"sampling": forwards * per_forward, "Inception": n * len(NFES) * per_inception,
            "LPIPS-VGG": factorised * per_embed}
    total = sum(cost.values())
    print(f"reduced paper scale: unidad on the reduced ADM (64x64, 64 ch), batch {sbs.BATCH}, ratio {sbs.RATIO}: "
          f"{per_it:.2f} s/iteration; a checkpoint every {every} iterations -> segment {segment / 3600:.1f} h")
    print(f"  one checkpoint's evaluation ({n} samples x NFE {list(NFES)}), from per-image costs "
          f"(ADM forward {per_forward:.3f} s, Inception {per_inception:.3f} s, LPIPS-VGG embedding {per_embed:.3f} s): "
          f"{total / 3600:.2f} h = {total / segment:.2f}x the segment's training; "
          + ", ".join(f"{k} {v / 3600:.2f} h" for k, v in cost.items()))
    print(f"  feature passes: {n * len(NFES)} Inception (shared by FID/KID/PRDC), {factorised} LPIPS-VGG embeddings "
          f"(pair by pair, as before: {pairwise}, which would cost {pairwise * per_embed / 3600:.1f} h)")


def relative_cost(train_iters: int) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    np.seterr(all="ignore")
    demo_scale(train_iters)
    reduced_paper_scale(train_iters)
