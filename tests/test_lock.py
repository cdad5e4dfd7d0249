"""requirements.lock: exact versions inside pyproject.toml's ranges, and every install path uses it."""
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
ROOT = Path(__file__).resolve().parent.parent


def locked() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_the_lock_pins_every_dependency_inside_its_range():
    pins = locked()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["dev"]
    for text in requirements:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock; run make lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} is outside {req.specifier}"
    assert canonicalize_name(project["name"]) not in pins and "pip" not in pins
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+!-]*", v) for v in pins.values())


def test_install_paths_use_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(INSTALL_STAMP\): pyproject.toml \$\(LOCK_FILE\)$", makefile, re.M)
    assert "pip install --quiet -c $(LOCK_FILE) -e '.[dev]'" in makefile
    assert re.search(r"^lock: ", makefile, re.M)
    assert "- -c requirements.lock" in (ROOT / "environment.yml").read_text()
    assert "- -c ../../requirements.lock" in (ROOT / "workflow" / "envs" / "unidad.yaml").read_text()
    assert "make install" in (ROOT / ".ci" / "run").read_text()
