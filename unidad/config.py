"""Workflow configuration: schema validation with defaults, one-line errors naming the key."""
from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = PROJECT_ROOT / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A bad configuration; the message is one line naming the key and the fix."""


def _extend_with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _extend_with_defaults(jsonschema.Draft7Validator)


def load_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _key_path(error)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        known = ", ".join(sorted(error.schema.get("properties", {})))
        keys = ", ".join(f"'{k}'" for k in extra)
        prefix = f"{where}." if where != "(top level)" else ""
        return f"unknown config key {prefix}{extra[0] if len(extra) == 1 else keys}" + (
            f"; known keys here: {known}" if known else ""
        )
    if error.validator == "type":
        return f"config key {where} must be of type {error.validator_value}, got {error.instance!r}"
    if error.validator == "enum":
        return f"config key {where} must be one of {error.validator_value}, got {error.instance!r}"
    if error.validator == "required":
        return f"config key {where}: {error.message}"
    return f"config key {where}: {error.message}"


# --------------------------------------------------------------------------- command-line values
# `snakemake --config key='{a: 0.25}'` reads nested values with YAML's BaseLoader, which leaves every
# scalar a string ('0.25', '400', 'true'); top-level values (`key=3`) arrive as int/float/bool.
# Strings are therefore turned into the type the schema (or a stage's config dataclass) declares;
# what does not parse is left as it is, for the type check to reject with its usual one-line error.
_TRUE = ("true", "yes", "on")
_FALSE = ("false", "no", "off")
_INT = re.compile(r"[-+]?[0-9]+")


def parse_text(text: str, kind: str) -> Any:
    """`text` as `kind` (int, float or bool); ValueError when it does not parse as one.

    float accepts what Python's float() does (0.25, 2e-6, 3) except nan and infinities; bool accepts
    YAML's words (true/false, yes/no, on/off, any case); int only an optionally signed run of digits."""
    s = text.strip()
    if kind == "int" and _INT.fullmatch(s):
        return int(s)
    if kind == "float":
        value = float(s)  # raises ValueError itself
        if math.isfinite(value):
            return value
    if kind == "bool" and s.lower() in _TRUE + _FALSE:
        return s.lower() in _TRUE
    raise ValueError(f"{text!r} is not {kind}")


_SCHEMA_KINDS = {"integer": "int", "number": "float", "boolean": "bool"}


def coerce_strings(instance: Any, schema: dict[str, Any]) -> Any:
    """Turn strings into the integer/number/boolean the schema declares for them, IN PLACE (through
    objects, their additionalProperties and arrays' items); returns `instance`."""
    if isinstance(instance, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in instance.items():
            sub = properties.get(key, extra)
            if isinstance(sub, dict):
                instance[key] = _coerced(value, sub)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for i, value in enumerate(instance):
            instance[i] = _coerced(value, schema["items"])
    return instance


def _coerced(value: Any, schema: dict[str, Any]) -> Any:
    kind = _SCHEMA_KINDS.get(schema.get("type"))
    if kind is None or not isinstance(value, str):
        return coerce_strings(value, schema)
    try:
        parsed = parse_text(value, kind)
    except ValueError:
        return value
    # a number schema keeps whole numbers whole (as YAML would read them)
    return int(parsed) if kind == "float" and _INT.fullmatch(value.strip()) else parsed


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate and fill defaults IN PLACE (Snakemake's config object is shared); returns it.
    Strings where the schema declares a number or boolean (`--config` values) are converted first."""
    schema = load_schema()
    coerce_strings(config, schema)
    validator = _Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(list(e.absolute_path)), str(e.absolute_path)))
    if errors:
        raise ConfigError(_describe(errors[0]))
    # a second pass: defaults filled inside newly created sub-objects
    errors = list(validator.iter_errors(config))
    if errors:
        raise ConfigError(_describe(errors[0]))
    _check_references(config)
    _check_protocol(config["evaluation"])
    return config


# What each evaluation protocol label promises: config key -> (required value, or values refused).
PROTOCOLS = {
    "corrected": {"intra_lpips_variant": ("cdc",), "selections_refused": ("best_test",),
                  "extractor_refused": ("inception_pytorch_fid",)},
    "official_code": {"intra_lpips_variant": ("unidad_compat",), "selections_required": ("best_test",),
                      "extractor": ("inception_pytorch_fid",)},
}


def _check_protocol(ev: dict[str, Any]) -> None:
    """The protocol label is what every number is reported under, so the settings must be that protocol's."""
    name, rules = ev["protocol"], PROTOCOLS[ev["protocol"]]
    for key in ("intra_lpips_variant", "extractor"):
        if key in rules and ev[key] not in rules[key]:
            raise ConfigError(f"config key evaluation.{key} is {ev[key]!r}, but evaluation.protocol {name} "
                              f"measures with {rules[key][0]!r}; set it, or change the protocol")
        if ev[key] in rules.get(f"{key}_refused", ()):
            raise ConfigError(f"config key evaluation.{key} {ev[key]!r} belongs to another protocol than "
                              f"evaluation.protocol {name}; set evaluation.protocol: official_code or change it")
    for sel in rules.get("selections_refused", ()):
        if sel in ev["selections"]:
            raise ConfigError(f"config key evaluation.selections has {sel}, which evaluation.protocol {name} "
                              "does not use (selection on the test set is optimistic); remove it")
    for sel in rules.get("selections_required", ()):
        if sel not in ev["selections"]:
            raise ConfigError(f"config key evaluation.selections lacks {sel}, the selection of evaluation.protocol "
                              f"{name}; add it")


def _check_references(config: dict[str, Any]) -> None:
    datasets = config.get("datasets", {})
    for t in config["targets"]:
        if t not in datasets:
            raise ConfigError(f"config key targets names dataset '{t}', which is not under datasets (known: {sorted(datasets)})")
    src = config["source"]
    if src["kind"] == "pretrain" and src["dataset"] not in datasets:
        raise ConfigError(f"config key source.dataset names '{src['dataset']}', which is not under datasets (known: {sorted(datasets)})")
    if src["kind"] == "file" and not src["weights"]:
        raise ConfigError("config key source.weights is empty; with source.kind=file name a weights-manifest entry or a path")
    for name, d in datasets.items():
        if d["kind"] == "demo" and not d.get("domain"):
            raise ConfigError(f"config key datasets.{name}.domain is required for kind demo (source, near or far)")
        if d["kind"] == "folder" and not d.get("path"):
            raise ConfigError(f"config key datasets.{name}.path is required for kind folder")
        if d["kind"] == "demo_subject":
            from unidad.data.sdp_demo import SUBJECTS

            if d.get("subject") not in SUBJECTS:
                raise ConfigError(f"config key datasets.{name}.subject is {d.get('subject')!r}; name one of the demo "
                                  f"subjects: {', '.join(SUBJECTS)}")
    if config["backbone"].get("vae_fit") and config["backbone"]["kind"] != "tiny_sd":
        raise ConfigError(f"config key backbone.vae_fit is for kind tiny_sd (the demo's miniature SD), not "
                          f"{config['backbone']['kind']}; remove it")


DEFAULT_CONFIG = PROJECT_ROOT / "config" / "config.yaml"


def load_config_file(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A config as Snakemake sees it: the Snakefile's default config/config.yaml with `path`
    merged over it (nested keys merge, lists and values replace), then `overrides`."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} not found")
    with open(DEFAULT_CONFIG) as f:
        config = yaml.safe_load(f) or {}
    if path.resolve() != DEFAULT_CONFIG.resolve():
        with open(path) as f:
            config = deep_merge(config, yaml.safe_load(f) or {})
    if overrides:
        config = deep_merge(config, overrides)
    return validate_config(config)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
