import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import pytest
import torch

torch.set_num_threads(1)  # tiny models: threads only add noise (and bitwise tests stay bitwise)


@pytest.fixture
def tiny_factory():
    """A very small pixel UNet (8x8 RGB) for fast stage tests."""
    from unidad.backbones.tiny import TinyUNet

    def make():
        torch.manual_seed(1234)
        return TinyUNet(image_size=8, channels=(8, 16), emb_dim=16)

    return make
