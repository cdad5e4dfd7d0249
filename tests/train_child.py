"""A tiny Uni-DAD training run in its own process, for the resume, preemption and data-parallel tests.

    python tests/train_child.py RUN_DIR ITERATIONS STOP_AT [CHECKPOINT_EVERY LOG_EVERY]

Started directly it is one process; started by torchrun it trains data-parallel (gloo). The source
weights are written next to RUN_DIR on first use.

TRAIN_CHILD_FAKE_CLOCK="START,TICK" (tests of the job deadline): the clock the deadline reads starts at
START (Unix seconds) and moves on by TICK seconds each time it is read (once per iteration), so a faked
job end time stops the run at a step that does not depend on how fast this machine is.
"""
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from unidad.backbones.tiny import TinyUNet  # noqa: E402
from unidad.data.stream import TrainingImages  # noqa: E402
from unidad.distributed import init_world, shutdown_world  # noqa: E402
from unidad.stages import StageContext, get_stage  # noqa: E402
from unidad.train.loop import train  # noqa: E402
from unidad.weights_file import export_weights  # noqa: E402


def factory():
    torch.manual_seed(1234)
    return TinyUNet(image_size=8, channels=(8, 16), emb_dim=16)


class _FakeClock:
    def __init__(self, start: float, tick: float):
        self.now, self.tick = start, tick

    def time(self) -> float:
        self.now += self.tick
        return self.now


def main(argv):
    torch.set_num_threads(1)
    if os.environ.get("TRAIN_CHILD_FAKE_CLOCK"):
        import unidad.train.deadline as deadline

        start, tick = (float(x) for x in os.environ["TRAIN_CHILD_FAKE_CLOCK"].split(","))
        deadline.time = _FakeClock(start, tick)  # only the deadline's clock; timings stay real
    run_dir, iterations, stop_at = Path(argv[0]), int(argv[1]), int(argv[2]) or None
    checkpoint_every, log_every = (int(argv[3]), int(argv[4])) if len(argv) > 3 else (5, 1)
    world = init_world("cpu")
    src = run_dir.parent / "source.safetensors"
    if world.is_main and not src.exists():
        export_weights(src, {"model": factory()})
    world.barrier()
    cls = get_stage("unidad")
    cfg = cls.config_cls.from_dict(dict(iterations=iterations, batch_size=2, lr=1e-3, warmup_iters=1, ratio=2,
                                        gen_steps=2, precision="fp32", checkpoint_every=checkpoint_every,
                                        log_every=log_every, target_teacher="online"))
    torch.manual_seed(0)
    real = TrainingImages.from_pixels(torch.randint(0, 256, (6, 8, 8, 3), dtype=torch.uint8).numpy())
    ctx = StageContext(backbone_factory=factory, weights={r: (src, "model") for r in cls.roles}, real_images=real,
                       device=torch.device("cpu"), seed=3)
    try:
        train(cls(cfg, ctx), run_dir, stop_at=stop_at, log=lambda m: print(m, flush=True), world=world)
    finally:
        shutdown_world()


if __name__ == "__main__":
    main(sys.argv[1:])
