"""Metrics are computed once per (samples, protocol): adding a metric computes only that metric, and
new samples or a changed protocol recompute."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import dataclasses

from unidad.config import validate_config
from unidad.data.domains import get_domain
from unidad.jobs.evaluate import compute_metrics
from unidad.jobs.params import metric_inputs
from unidad.metrics.inputs import MetricInputs
from unidad.metrics.registry import METRICS, get_metric
from unidad.plan import Plan

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def checkpoint_samples(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["results_dir"] = str(tmp_path / "results")
    cfg = validate_config(cfg)
    plan = Plan(cfg)
    unit = next(u for u in plan.eval_units if u.method_run.method == "unidad")
    images, _modes = get_domain("near").sample(40, seed=3)
    timing = {"device": "cpu", "batch_size": 40, "images_per_second": 100.0, "seconds_per_image": 0.01,
              "nfe": unit.nfe}
    samples = tmp_path / "samples.npz"
    np.savez_compressed(samples, timing=json.dumps({unit.nfe: timing}), checkpoint="ckpt.safetensors",
                        step=unit.step, **{f"images_nfe{unit.nfe}": images})
    inputs = MetricInputs.from_params({**metric_inputs(plan, unit.slug, unit.step), "samples": str(samples)})
    return inputs, unit, samples


def _replace_in_registry(monkeypatch, name, **changes):
    monkeypatch.setitem(METRICS._items, name, dataclasses.replace(get_metric(name), **changes))


def _count_computations(monkeypatch):
    calls = []
    for name in ("oracle", "speed"):
        real = get_metric(name).compute

        def counting(inputs, nfe, images, name=name, real=real):
            calls.append(name)
            return real(inputs, nfe, images)

        _replace_in_registry(monkeypatch, name, compute=counting)
    return calls


def _measure(inputs, unit, outputs):
    compute_metrics(MetricInputs.from_params({**dataclasses.asdict(inputs)}), outputs, unit.slug, unit.step)


def _outputs(tmp_path, metrics):
    return {m: tmp_path / "out" / f"{m}.json" for m in metrics}


def test_adding_a_metric_computes_only_that_metric(checkpoint_samples, tmp_path, monkeypatch):
    inputs, unit, samples = checkpoint_samples
    calls = _count_computations(monkeypatch)
    _measure(inputs, unit, _outputs(tmp_path, ["oracle"]))
    assert calls == ["oracle"]
    first = json.loads((tmp_path / "out" / "oracle.json").read_text())
    assert first["per_nfe"][str(unit.nfe)]["values"]["oracle_in_domain"] == 1.0

    calls.clear()
    _measure(inputs, unit, _outputs(tmp_path, ["oracle", "speed"]))
    assert calls == ["speed"]
    assert json.loads((tmp_path / "out" / "oracle.json").read_text()) == first
    speed = json.loads((tmp_path / "out" / "speed.json").read_text())
    assert speed["per_nfe"][str(unit.nfe)]["values"]["speed_images_per_s"] == 100.0


def test_new_samples_are_measured_again(checkpoint_samples, tmp_path, monkeypatch):
    inputs, unit, samples = checkpoint_samples
    calls = _count_computations(monkeypatch)
    _measure(inputs, unit, _outputs(tmp_path, ["oracle"]))
    with np.load(samples) as f:
        arrays = {k: f[k] for k in f.files}
    arrays[f"images_nfe{unit.nfe}"] = get_domain("far").sample(40, seed=3)[0]  # off-target images
    np.savez_compressed(samples, **arrays)
    calls.clear()
    _measure(inputs, unit, _outputs(tmp_path, ["oracle"]))
    assert calls == ["oracle"]
    rec = json.loads((tmp_path / "out" / "oracle.json").read_text())
    assert rec["per_nfe"][str(unit.nfe)]["values"]["oracle_in_domain"] == 0.0


def test_a_changed_protocol_is_measured_again(checkpoint_samples, tmp_path, monkeypatch):
    inputs, unit, samples = checkpoint_samples
    calls = _count_computations(monkeypatch)
    _replace_in_registry(monkeypatch, "oracle", protocol=lambda inputs: {"version": 1})
    _measure(inputs, unit, _outputs(tmp_path, ["oracle"]))
    _replace_in_registry(monkeypatch, "oracle", protocol=lambda inputs: {"version": 2})
    _measure(inputs, unit, _outputs(tmp_path, ["oracle"]))
    assert calls == ["oracle", "oracle"]


def test_records_carry_the_environment_which_is_not_part_of_the_cache_key(checkpoint_samples, tmp_path,
                                                                           monkeypatch):
    import unidad.jobs.evaluate as evaluate

    inputs, unit, samples = checkpoint_samples
    calls = _count_computations(monkeypatch)
    monkeypatch.setattr(evaluate, "environment_record", lambda: {"torch": "2.14.1", "gpu": "cpu", "git_dirty": False})
    _measure(inputs, unit, _outputs(tmp_path, ["oracle"]))
    first = json.loads((tmp_path / "out" / "oracle.json").read_text())
    assert first["environment"] == {"torch": "2.14.1", "gpu": "cpu", "git_dirty": False}

    # another machine, another torch: the number is not computed again, and its record still says
    # where it was computed
    monkeypatch.setattr(evaluate, "environment_record", lambda: {"torch": "9.9", "gpu": "H100", "git_dirty": True})
    _measure(inputs, unit, _outputs(tmp_path, ["oracle"]))
    assert calls == ["oracle"]
    assert json.loads((tmp_path / "out" / "oracle.json").read_text()) == first


def test_the_real_environment_record_is_written(checkpoint_samples, tmp_path):
    from unidad.runtime import environment_record

    inputs, unit, samples = checkpoint_samples
    _measure(inputs, unit, _outputs(tmp_path, ["speed"]))
    rec = json.loads((tmp_path / "out" / "speed.json").read_text())
    assert rec["environment"] == json.loads(json.dumps(environment_record()))
