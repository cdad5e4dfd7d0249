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


def pytest_terminal_summary(terminalreporter):
    """With $UNIDAD_SKIPS_FILE set (`make test-unit` sets it), write there one line per skip reason,
    naming the skipped test(s), for `make test` to print at its end (a skip is easy to miss in pytest's
    summary). Without it, nothing is written."""
    path = os.environ.get("UNIDAD_SKIPS_FILE")
    if not path:
        return
    by_reason: dict[str, list[str]] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reason = " ".join(reason.removeprefix("Skipped: ").split())  # one line
        by_reason.setdefault(reason, []).append(report.nodeid)
    lines = []
    for reason, tests in by_reason.items():
        more = f" and {len(tests) - 1} more" if len(tests) > 1 else ""
        lines.append(f"pytest {tests[0]}{more}: {reason}\n")
    with open(path, "w") as fh:
        fh.writelines(lines)
