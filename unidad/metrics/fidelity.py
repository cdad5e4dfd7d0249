"""A checked front door to torch_fidelity.calculate_metrics.

torch-fidelity silently ignores keyword arguments it does not know (a typo such as `kid_subset=...`
runs with the default), downloads weights and datasets when nothing local is given, and defaults to
cuda=True. This wrapper rejects unknown or deprecated options, always passes a local Inception weights
file, never lets torch-fidelity download, and picks cuda from the machine.

Note: torch-fidelity's "prc" (k = 3, "<=") is not the PRDC of metrics.md (k = 5, strict "<"); label
its numbers "torch-fidelity prc" if they are ever reported.
"""
from __future__ import annotations

import difflib
from pathlib import Path

import torch

# Options whose use would make torch-fidelity fetch code or weights from the internet.
_FORBIDDEN_VALUES = {
    "ppl": (True, "PPL needs torch-fidelity's LPIPS weights download; compute PPL outside torch-fidelity"),
    "datasets_download": (True, "downloads are never implicit; stage datasets locally"),
    "feature_extractor_compile": (True, "experimental in torch-fidelity and changes numerics; leave it off"),
}
_LOCAL_FEATURE_EXTRACTORS = (None, "inception-v3-compat")


def allowed_options() -> frozenset[str]:
    """The documented calculate_metrics options of the installed torch-fidelity (its DEFAULTS table)."""
    from torch_fidelity.defaults import DEFAULTS

    return frozenset(DEFAULTS)


def _deprecated_options() -> dict[str, str]:
    try:
        from torch_fidelity.deprecations import DEPRECATIONS
    except ImportError:  # older releases had none
        return {}
    return {old: info["new_name"] for old, info in DEPRECATIONS.items()}


def validate_options(options: dict) -> None:
    """Raise ValueError naming the first unknown, deprecated or download-triggering option."""
    allowed = allowed_options()
    deprecated = _deprecated_options()
    for key, value in options.items():
        if key in deprecated:
            raise ValueError(f"torch-fidelity option '{key}' is deprecated; use '{deprecated[key]}'")
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else "; see torch_fidelity.defaults.DEFAULTS"
            raise ValueError(f"unknown torch-fidelity option '{key}' (it would be silently ignored){hint}")
        if key in _FORBIDDEN_VALUES and value == _FORBIDDEN_VALUES[key][0]:
            raise ValueError(f"torch-fidelity option {key}={value!r} is not allowed: {_FORBIDDEN_VALUES[key][1]}")
    if options.get("feature_extractor") not in _LOCAL_FEATURE_EXTRACTORS:
        raise ValueError(f"feature_extractor={options['feature_extractor']!r} would be downloaded; "
                         "only 'inception-v3-compat' with a local weights file is supported")
    if options.get("cuda") and not torch.cuda.is_available():
        raise ValueError("cuda=True but no CUDA device is available; drop the option (it is set automatically)")


def calculate_metrics(weights_dir: str | Path | None = None, **options) -> dict:
    """torch_fidelity.calculate_metrics(**options) after validation, with local Inception weights.

    feature_extractor_weights_path defaults to the manifest's inception_v3_tf file (WeightsError if
    absent); cuda defaults to availability; cache and verbose default to False (torch-fidelity's
    cache is keyed by input name and would silently reuse stale statistics).
    """
    validate_options(options)
    options = dict(options)
    if options.get("feature_extractor_weights_path") is None:
        from unidad.weights import resolve

        options["feature_extractor_weights_path"] = str(resolve("inception_v3_tf", weights_dir))
    elif not Path(options["feature_extractor_weights_path"]).is_file():
        raise FileNotFoundError(f"feature_extractor_weights_path {options['feature_extractor_weights_path']} "
                                "does not exist; see: unidad weights path inception_v3_tf")
    options.setdefault("cuda", torch.cuda.is_available())
    options.setdefault("cache", False)
    options.setdefault("verbose", False)
    options["datasets_download"] = False

    import torch_fidelity

    from unidad.metrics.extractors import forced_weights_only_load

    with forced_weights_only_load():
        return torch_fidelity.calculate_metrics(**options)
