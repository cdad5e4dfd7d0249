"""Sampling speed as recorded with the samples: images per second and seconds per image at one NFE."""
from __future__ import annotations

from typing import Any

import numpy as np

from unidad.metrics.inputs import MetricInputs
from unidad.metrics.registry import Metric, Value, register_metric


def _speed(inputs: MetricInputs, nfe: int, images: np.ndarray) -> dict[str, Any]:
    timing = inputs.timing[str(nfe)]
    return {"variant": f"device={timing['device']},batch={timing['batch_size']}",
            "values": {"speed_images_per_s": timing["images_per_second"],
                       "speed_s_per_image": timing["seconds_per_image"], "speed_nfe": float(timing["nfe"])}}


register_metric(Metric(
    "speed", "Sampling throughput of the checkpoint's sampler at one NFE (device and batch size recorded)",
    (Value("speed_images_per_s", "Images/s", True, 1), Value("speed_s_per_image", "s/image", False, 4),
     Value("speed_nfe", "speed_nfe", None, 3, shown=False)),
    _speed, frozenset({"timing"}), group="speed",
))
