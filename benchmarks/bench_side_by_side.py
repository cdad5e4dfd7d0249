"""One Uni-DAD training iteration of the official 1_FSIG code against the project's `unidad` stage,
side by side on the same ADM backbone and weights.

    .venv/bin/python benchmarks/bench_side_by_side.py --official ~/src/uni-DAD [--rounds 5 --iters 10]
    .venv/bin/python benchmarks/bench_side_by_side.py --scale adm256 --device cuda --precision bf16 [--batch 1]

--official is a local checkout of github.com/yaramohamadi/uni-DAD (its 1_FSIG folder is put on the
path) with github.com/openai/guided-diffusion importable (on PYTHONPATH, or in the checkout's
third_party/dhariwal as its scripts expect). Nothing of it is copied here: the official side is built
from its own classes (dhariwalUniModel and its guidance model) and driven in the order of its
train_one_step (generator turn, guidance turn, both optimiser steps, then the target teacher), with
accelerate's bf16 autocast as a plain autocast around the turns. Without --official only the project
side runs.

Configuration (both sides): batch 2 (--batch), ratio 5, K = 3, online target teacher, 13 global heads on every
encoder tap, BCE GAN with weights 0.015 (G) / 0.05 (D); --scale reduced is ADM 64x64 with 64
channels, 2 res blocks, attention at 16 and 8, scale-shift norm, learn_sigma (what the official
adapter builds at 256, shrunk); adm256 is the FFHQ-256 ADM. Weights are random (one file, loaded
by both sides). Each side lives in its own process (so its peak memory is its own); the sides run
alternately, round by round, after one untimed warm-up round each. Prints the network passes per
iteration of each side (forward hooks on the UNets), per-update times, the official / project ratio of
the mean time per iteration (median over rounds, with min-max), peak memory, and the floating-point
work of an iteration (torch.utils.flop_counter: matrix products, convolutions and attention, forward and
backward) with the achieved TFLOP/s and its share of the device's dense peak at the precision
(--peak-tflops, or the datasheet figure of a GPU in PEAK_TFLOPS). Nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
RATIO, K, GAN_G, GAN_D = 5, 3, 0.015, 0.05
ROLES = ("generator", "fake score", "source teacher", "target teacher")
# dense (no sparsity) datasheet peaks in TFLOP/s: bf16 tensor cores, TF32 tensor cores, plain fp32
PEAK_TFLOPS = {"H100": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
               "H200": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
               "A100": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}}


def device_peak(device: str, precision: str, tf32: bool) -> tuple[str, str, float | None]:
    """The device's name, the matrix mode the precision runs in (bf16, tf32, fp32) and the device's dense
    peak for it (None on a CPU or a GPU not in the table)."""
    import torch

    mode = precision if precision == "bf16" else ("tf32" if tf32 else "fp32")
    if not device.startswith("cuda"):
        return "cpu", mode, None
    name = torch.cuda.get_device_name(torch.device(device))
    return name, mode, next((peaks[mode] for key, peaks in PEAK_TFLOPS.items() if key in name), None)


SCALES = {"adm256": dict(image_size=256, num_channels=256, attention_resolutions="32,16,8"),
          "reduced": dict(image_size=64, num_channels=64, attention_resolutions="16,8"),
          "tiny": dict(image_size=64, num_channels=32, attention_resolutions="8")}  # the tests' size


def arch(scale: str) -> dict:
    """guided-diffusion script_util flags of the backbone (the official adapter's, shrunk below adm256)."""
    return SCALES[scale]


def adm_config(scale: str) -> dict:
    a = arch(scale)
    return dict(image_size=a["image_size"], num_channels=a["num_channels"], num_res_blocks=2,
                attention_resolutions=a["attention_resolutions"], num_head_channels=64,
                use_scale_shift_norm=True, resblock_updown=True, learn_sigma=True)


def random_adm(scale: str):
    """The project's ADM at `scale` with random weights: every parameter drawn, zero-initialised layers
    included, so no branch is trivially zero."""
    import torch

    from unidad.backbones import build_backbone

    torch.manual_seed(0)
    model = build_backbone({"kind": "adm", "params": {"config": adm_config(scale)}})
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.02 if p.ndim > 1 else 0.01))
    return model


def write_weights(scale: str, folder: Path) -> tuple[Path, Path]:
    """`random_adm` as a guided-diffusion .pt state_dict and as the project's weights file."""
    import torch

    from unidad.weights_file import export_weights

    model = random_adm(scale)
    pt, st = folder / "adm.pt", folder / "adm.safetensors"
    torch.save(model.unet.state_dict(), pt)
    export_weights(st, {"model": model})
    return pt, st


def flop_counter():
    """A dispatch mode adding up the FLOPs of every matrix product, convolution and attention op it
    sees (torch.utils.flop_counter's formulas). FlopCounterMode itself cannot be used: its module tracker
    fails inside guided-diffusion's own checkpoint function, which the official UNet's attention uses.
    Ops recomputed by checkpointing are counted: this is the work the device executes."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class FlopCount(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                self.total += formula(*args, **kwargs, out_val=out)
            return out

    return FlopCount()


# ------------------------------------------------------------------------------------------------
# pass counting: every pass runs input_blocks[0]; only a full forward runs the output layer
class PassCounter:
    def __init__(self, unets: dict):
        self.counts = {role: [0, 0] for role in unets}
        for role, unet in unets.items():
            unet.input_blocks[0].register_forward_hook(lambda *_, r=role: self._bump(r, 0))
            unet.out.register_forward_hook(lambda *_, r=role: self._bump(r, 1))

    def _bump(self, role, slot):
        self.counts[role][slot] += 1

    def take(self) -> dict:
        out = {role: {"full": c[1], "encoder_only": c[0] - c[1]} for role, c in self.counts.items()}
        self.counts = {role: [0, 0] for role in self.counts}
        return out


def _autocast(device, precision):
    import torch

    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------------
# the official side
class OfficialSide:
    def __init__(self, checkout: Path, scale: str, pt: Path, device, precision: str, real, batch: int):
        for extra in (checkout / "1_FSIG", checkout / "third_party" / "dhariwal", checkout):
            if extra.is_dir():
                sys.path.insert(0, str(extra))
        try:
            from guided_diffusion import script_util
            from main.dhariwal.dhariwal_unified_model import dhariwalUniModel
        except ImportError as e:
            raise SystemExit(f"bench_side_by_side: cannot import the official code from {checkout} ({e}); "
                             "pass the uni-DAD checkout and put guided-diffusion on PYTHONPATH") from None
        import torch

        if scale != "adm256":
            # the adapter hard-codes the FFHQ-256 width and attention; shrink them at the factory it calls
            original = script_util.create_model_and_diffusion
            script_util.create_model_and_diffusion = lambda **kw: original(**(kw | arch(scale)))
        args = SimpleNamespace(
            model_id=str(pt), resolution=arch(scale)["image_size"], label_dim=0, use_fp16=False,
            gan_classifier=True, gan_multihead=True, gan_head_type="global", gan_head_layers="all",
            gan_adv_loss="bce", wgan_gp_lambda=10.0, hinge_margin=1.0, bce_smooth=0.0, ls_target_real=1.0,
            ls_target_fake=0.0, ls_target_gen=1.0, r1_gamma=0.0, use_source_teacher=1.0, use_target_teacher=1.0,
            train_target_teacher=1.0, train_fake_on_real=False, dmd_source_weight=1.0, dmd_target_weight=1.0,
            target_teacher_ckpt_path=None, sigma_data=0.5, sigma_max=80.0, sigma_min=0.002, rho=7.0,
            reverse_dmd=False, diffusion_gan=True, diffusion_gan_max_timestep=1000, num_train_timesteps=1000,
            min_step_percent=0.02, max_step_percent=0.98, initialie_generator=True, denoising=True,
            num_denoising_step=K, denoising_sigma_end=0.5)
        self.device, self.precision, self.real, self.batch = device, precision, real, batch
        self.model = dhariwalUniModel(args, SimpleNamespace(device=device)).to(device)
        gm = self.model.guidance_model
        lr = 2e-6
        self.opt_g = torch.optim.AdamW(self.model.feedforward_model.parameters(), lr=lr, weight_decay=0.01)
        self.opt_d = torch.optim.AdamW([p for n, p in gm.named_parameters() if p.requires_grad
                                        and not n.startswith("target_unet.")], lr=lr, weight_decay=0.01)
        self.opt_tt = torch.optim.AdamW(gm.target_unet.parameters(), lr=lr, weight_decay=0.01)
        self.unets = {"generator": self.model.feedforward_model.unet, "fake score": gm.fake_unet.unet,
                      "source teacher": gm.real_unet.unet, "target teacher": gm.target_unet.unet}

    def iteration(self, it: int) -> dict[str, float]:
        import torch

        m, dev, times = self.model, self.device, {}
        m.train()
        real = self.real[torch.randint(0, len(self.real), (self.batch,))].to(dev)
        real_train = {"real_image": real, "real_label": None}
        noise = torch.randn(self.batch, *real.shape[1:], device=dev) * 80.0
        sigma = torch.full((self.batch,), 80.0, device=dev)
        gen = it % RATIO == 0
        t0 = time.perf_counter()
        with _autocast(dev, self.precision):
            g_loss, g_log = m(noise, sigma, None, real_train_dict=real_train, compute_generator_gradient=gen,
                              generator_turn=True, guidance_turn=False)
        if gen:
            (g_loss["loss_dm"] + GAN_G * g_loss["gen_cls_loss"]).backward()
        _sync(dev)
        t1 = time.perf_counter()
        with _autocast(dev, self.precision):
            d_loss, _ = m(noise, sigma, None, real_train_dict=real_train, compute_generator_gradient=False,
                          generator_turn=False, guidance_turn=True, guidance_data_dict=g_log["guidance_data_dict"])
        (d_loss["loss_fake_mean"] + GAN_D * d_loss["guidance_cls_loss"]).backward()
        torch.nn.utils.clip_grad_norm_(m.feedforward_model.parameters(), 10.0)
        torch.nn.utils.clip_grad_norm_([p for g in self.opt_d.param_groups for p in g["params"] if p.grad is not None], 10.0)
        for opt in (self.opt_g, self.opt_d):
            opt.step()
            opt.zero_grad(set_to_none=True)
        _sync(dev)
        t2 = time.perf_counter()
        times["generator turn"], times["guidance turn"] = t1 - t0, t2 - t1
        if gen:  # the official code calls the target teacher's loss outside the (autocast) model forward
            tt = m.guidance_model.compute_loss_target_teacher(real, None, g_log["generated_image"].detach())
            tt["loss_target_teacher"].backward()
            torch.nn.utils.clip_grad_norm_(m.guidance_model.target_unet.parameters(), 10.0)
            self.opt_tt.step()
            self.opt_tt.zero_grad(set_to_none=True)
            _sync(dev)
            times["target teacher"] = time.perf_counter() - t2
        return times


# ------------------------------------------------------------------------------------------------
# the project side: the unidad stage through the training loop's own update step
class ProjectSide:
    def __init__(self, scale: str, st: Path, device, precision: str, real, perf: dict, batch: int):
        from unidad.backbones import build_backbone
        from unidad.stages import StageContext, get_stage
        from unidad.train.loop import apply_speed_options, build_optimizers, seed_everything

        cls = get_stage("unidad")
        params = dict(iterations=10**6, batch_size=batch, ratio=RATIO, gen_steps=K, target_teacher="online",
                      gan_weight_g=GAN_G, gan_weight_d=GAN_D, gan_loss="bce", head_type="global", head_taps="all",
                      discriminator="multi", lr=2e-6, precision=precision, **perf)
        spec = {"kind": "adm", "params": {"config": adm_config(scale)}}
        ctx = StageContext(backbone_factory=lambda: build_backbone(spec), weights={r: (st, "model") for r in cls.roles},
                           real_images=real, device=device, seed=0)
        self.stage = cls(cls.config_cls.from_dict(params), ctx)
        seed_everything(0)
        self.stage.build()
        apply_speed_options(self.stage)  # tf32 / channels_last / compile, as train() applies them
        self.optims = build_optimizers(self.stage)
        self.device = device
        for name in self.stage.trainable_modules():
            self.stage.modules[name].train()
        names = {"generator": "generator", "fake score": "fake", "source teacher": "teacher",
                 "target teacher": "target_teacher"}
        self.unets = {role: self.stage.modules[n].unet for role, n in names.items()}

    def iteration(self, it: int) -> dict[str, float]:
        from unidad.train.loop import run_update

        times = {}
        for o in self.optims:
            if it % o.update.every == 0:
                t0 = time.perf_counter()
                run_update(self.stage, o, it)
                _sync(self.device)
                times[o.update.name] = time.perf_counter() - t0
        return times


# ------------------------------------------------------------------------------------------------
def _peak(device) -> float:
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def child(args) -> None:
    """Serve one side: build it, then answer {"iters": n} with n iterations' times, {"counts": 1} with
    one generator and one other iteration's pass counts, {"peak": 1} with the peak memory."""
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # the official code prints while building; keep stdout for the protocol
    import torch

    torch.set_num_threads(args.threads)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    device = torch.device(args.device)
    from unidad.data.domains import get_domain
    from unidad.imageio import to_float_nchw

    size = arch(args.scale)["image_size"]
    images, _ = get_domain("far").sample(10, seed=0, image_size=size)
    real = torch.from_numpy(to_float_nchw(images))
    torch.manual_seed(0)
    if args.child == "official":
        side = OfficialSide(Path(args.official), args.scale, Path(args.pt), device, args.precision, real, args.batch)
    else:
        side = ProjectSide(args.scale, Path(args.st), device, args.precision, real, json.loads(args.perf), args.batch)
    counter = PassCounter(side.unets)
    it = 0
    for line in sys.stdin:
        req = json.loads(line)
        if "counts" in req:  # a generator iteration, then the other iterations up to the next one
            counter.take()
            side.iteration(it)
            out = {"generator iteration": counter.take()}
            for j in range(1, RATIO):
                side.iteration(it + j)
            other = counter.take()
            out["other iteration"] = {r: {k: v / (RATIO - 1) for k, v in c.items()} for r, c in other.items()}
            it += RATIO
        elif "flops" in req:  # one generator iteration and the other iterations of its cycle
            out = {}
            for j in range(RATIO):
                with flop_counter() as fc:
                    side.iteration(it)
                out["gen" if j == 0 else "other"] = fc.total
                it += 1
        elif "iters" in req:
            out = []
            for _ in range(req["iters"]):
                t0 = time.perf_counter()
                parts = side.iteration(it)
                out.append({"gen": it % RATIO == 0, "total": time.perf_counter() - t0, "parts": parts})
                it += 1
        else:
            out = {"peak_gb": _peak(device)}
        proto.write(json.dumps(out) + "\n")
        proto.flush()


class Proc:
    def __init__(self, side: str, argv: list[str]):
        self.side = side
        self.p = subprocess.Popen([sys.executable, __file__, "--child", side, *argv], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, env=os.environ | {"PYTHONPATH": _pythonpath()})

    def ask(self, req: dict):
        self.p.stdin.write(json.dumps(req) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise SystemExit(f"bench_side_by_side: the {self.side} side exited (rc {self.p.wait()}); see its messages above")
        return json.loads(line)

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def _pythonpath() -> str:
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


def _summary(rows: list[dict]) -> dict:
    gen = [r["total"] for r in rows if r["gen"]]
    other = [r["total"] for r in rows if not r["gen"]]
    parts: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r["parts"].items():
            parts.setdefault(k, []).append(v)
    return {"mean": sum(r["total"] for r in rows) / len(rows), "gen": statistics.mean(gen),
            "other": statistics.mean(other), "parts": {k: statistics.mean(v) for k, v in parts.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", default="", help="local checkout of yaramohamadi/uni-DAD (guided-diffusion importable)")
    ap.add_argument("--scale", choices=tuple(SCALES), default="reduced")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=2, help="images per update on both sides (the paper trains at 1)")
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="the device's dense peak at the precision, "
                    "for the share of peak (default: PEAK_TFLOPS by GPU name)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=2 * RATIO, help="timed iterations per round (a multiple of 5)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls/convolutions on both sides")
    ap.add_argument("--perf", default="{}", help="JSON of the project stage's speed options, e.g. "
                    '\'{"channels_last": true, "compile": true}\'')
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--pt", help=argparse.SUPPRESS)
    ap.add_argument("--st", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if args.iters % RATIO:
        raise SystemExit(f"bench_side_by_side: --iters must be a multiple of the ratio {RATIO}, got {args.iters}")
    if args.official and not Path(args.official).is_dir():
        raise SystemExit(f"bench_side_by_side: --official {args.official} is not a folder; pass the uni-DAD checkout")
    sys.path.insert(0, str(ROOT))
    tmp = Path(tempfile.mkdtemp(prefix="side_by_side_"))
    pt, st = write_weights(args.scale, tmp)
    common = ["--scale", args.scale, "--device", args.device, "--precision", args.precision, "--threads",
              str(args.threads), "--batch", str(args.batch), "--pt", str(pt), "--st", str(st), "--perf", args.perf]
    common += ["--tf32"] if args.tf32 else []
    procs = {"project": Proc("project", common)}
    if args.official:
        procs = {"official": Proc("official", common + ["--official", str(Path(args.official).resolve())]), **procs}
    counts = {s: p.ask({"counts": 1}) for s, p in procs.items()}  # also the warm-up round
    flops = {s: p.ask({"flops": 1}) for s, p in procs.items()}
    rounds: dict[str, list[dict]] = {s: [] for s in procs}
    order = list(procs)
    for r in range(args.rounds):
        for s in (order if r % 2 == 0 else order[::-1]):
            rounds[s].append(_summary(procs[s].ask({"iters": args.iters})))
    peaks = {s: p.ask({"peak": 1})["peak_gb"] for s, p in procs.items()}
    for p in procs.values():
        p.close()

    print(f"{args.scale} ADM, {args.device} ({args.threads} thread(s)), {args.precision}, batch {args.batch}, ratio {RATIO}, "
          f"K {K}, online target teacher, 13 heads; {args.rounds} alternating rounds of {args.iters} iterations")
    print("\nnetwork passes per iteration (full forward / encoder-only), forward hooks on the UNets")
    sides = list(procs)
    print(f"{'':18s} {'':15s} " + " ".join(f"{s:>16s}" for s in sides))
    for kind in ("generator iteration", "other iteration"):
        for role in ROLES:
            cells = [f"{counts[s][kind][role]['full']:g} / {counts[s][kind][role]['encoder_only']:g}" for s in sides]
            print(f"{kind:18s} {role:15s} " + " ".join(f"{c:>16s}" for c in cells))
    device_name, mode, peak = device_peak(args.device, args.precision, args.tf32)
    peak = args.peak_tflops or peak
    print(f"\ndevice {device_name}; seconds (median over rounds of each round's mean)")
    med = {s: {k: statistics.median(x[k] for x in rounds[s]) for k in ("mean", "gen", "other")} for s in sides}
    for s in sides:
        parts = {k: statistics.median(x["parts"].get(k, 0.0) for x in rounds[s]) for k in rounds[s][0]["parts"]}
        print(f"{s:9s} per iteration {med[s]['mean']:.3f}  generator iterations {med[s]['gen']:.3f}  "
              f"other {med[s]['other']:.3f}  peak {peaks[s]:.2f} GB "
              f"({'CUDA max allocated' if args.device.startswith('cuda') else 'max RSS'})")
        print("          per update: " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
        work = (flops[s]["gen"] + (RATIO - 1) * flops[s]["other"]) / RATIO
        achieved = work / med[s]["mean"] / 1e12
        print(f"          work per iteration {work / 1e12:.2f} TFLOP (generator iterations "
              f"{flops[s]['gen'] / 1e12:.2f}, other {flops[s]['other'] / 1e12:.2f}); achieved {achieved:.3g} TFLOP/s"
              + (f", {100 * achieved / peak:.1f}% of the {device_name}'s {peak:g} TFLOP/s {mode} peak" if peak else ""))
    if "official" in procs:
        ratios = [o["mean"] / p["mean"] for o, p in zip(rounds["official"], rounds["project"])]
        print(f"\nofficial / project per iteration: {statistics.median(ratios):.2f} "
              f"(rounds: {min(ratios):.2f}-{max(ratios):.2f}); generator iterations "
              f"{med['official']['gen'] / med['project']['gen']:.2f}, other {med['official']['other'] / med['project']['other']:.2f}; "
              f"peak memory official / project {peaks['official'] / peaks['project']:.2f}")


if __name__ == "__main__":
    main()
