"""The weights manifest, local lookup, checksum verification, the explicit downloader and the CLI."""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from unidad import preflight, weights, weights_cli

EXPECTED_ENTRIES = {"adm_ffhq256", "inception_v3_tf", "lpips_vgg16", "lpips_vgg_lin_v01",
                    "clip_vit_b32_openai", "dino_vits16", "sd15"}


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch):
    """Point every searched location at empty temporary folders."""
    dirs = {name: tmp_path / name for name in ("explicit", "unidad", "torch", "hf")}
    for d in dirs.values():
        d.mkdir()
    monkeypatch.setenv("UNIDAD_WEIGHTS_DIR", str(dirs["unidad"]))
    monkeypatch.setenv("TORCH_HOME", str(dirs["torch"]))
    monkeypatch.setenv("HF_HOME", str(dirs["hf"]))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return dirs


@pytest.fixture
def temp_entry(tmp_path, monkeypatch):
    """A manifest entry 'unit_test_blob' for a small temporary file; returns (file, setter for fields)."""
    blob = tmp_path / "source" / "blob.bin"
    blob.parent.mkdir()
    blob.write_bytes(b"unidad weights test payload\n" * 100)
    base = weights.WeightsEntry(
        name="unit_test_blob", kind="file", filename="blob.bin", url=blob.as_uri(), sha256=None,
        licence="CC0", description="test", used_by=("tests",),
    )

    def set_entry(**fields):
        monkeypatch.setitem(weights.manifest(), "unit_test_blob", dataclasses.replace(base, **fields))

    set_entry()
    return blob, set_entry


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -------------------------------------------------------------------------------------------- manifest

def test_manifest_entries_are_complete():
    entries = weights.load_manifest()
    assert EXPECTED_ENTRIES <= set(entries)
    for entry in entries.values():
        assert entry.filename and entry.licence and entry.description and entry.used_by, entry.name
        assert entry.url.startswith("https://"), entry.name
        assert entry.kind in weights.KINDS
        assert entry.sha256 is None or (len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0)
        if entry.kind == "hf_dir":
            assert entry.hf_repo and entry.hf_files
    assert entries["lpips_vgg16"].sha256_prefix == "397923af"
    assert entries["sd15"].hf_repo == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert "unet/diffusion_pytorch_model.safetensors" in entries["sd15"].hf_files
    assert entries["inception_v3_tf"].filename == "weights-inception-2015-12-05-6726825d.pth"
    assert entries["adm_ffhq256"].url.endswith("/ddpm_checkpoints/ffhq.pt")


def test_manifest_rejects_incomplete_entry(tmp_path):
    bad = {"weights": [{"name": "x", "kind": "file", "filename": "x.pt", "url": "https://e/x.pt", "sha256": None,
                        "licence": "MIT", "description": "d"}]}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(weights.WeightsError, match=r"'x' lacks field\(s\) \['used_by'\]"):
        weights.load_manifest(path)


def test_unknown_name_lists_known_ones():
    with pytest.raises(weights.WeightsError, match="unknown weights 'nope'; known: .*inception_v3_tf"):
        weights.resolve("nope")


# ---------------------------------------------------------------------------------------------- lookup

def test_resolve_missing_file_message(isolated_dirs):
    with pytest.raises(weights.WeightsError) as info:
        weights.resolve("inception_v3_tf", weights_dir=isolated_dirs["explicit"])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("missing weights 'inception_v3_tf': file weights-inception-2015-12-05-6726825d.pth")
    for folder in (isolated_dirs["explicit"], isolated_dirs["unidad"], isolated_dirs["torch"] / "hub" / "checkpoints"):
        assert str(folder) in message
    assert "unidad weights fetch inception_v3_tf (on a machine with internet)" in message
    assert "place weights-inception-2015-12-05-6726825d.pth in $UNIDAD_WEIGHTS_DIR" in message
    assert "expected sha256" in message


def test_resolve_lookup_order(isolated_dirs):
    name = "vgg16-397923af.pth"
    torch_ckpt = isolated_dirs["torch"] / "hub" / "checkpoints"
    torch_ckpt.mkdir(parents=True)
    for folder in (isolated_dirs["explicit"], isolated_dirs["unidad"], torch_ckpt):
        (folder / name).write_bytes(b"x")
    assert weights.resolve("lpips_vgg16", isolated_dirs["explicit"]) == isolated_dirs["explicit"] / name
    assert weights.resolve("lpips_vgg16") == isolated_dirs["unidad"] / name
    (isolated_dirs["unidad"] / name).unlink()
    assert weights.resolve("lpips_vgg16") == torch_ckpt / name


def test_resolve_from_hf_cache_snapshot(isolated_dirs):
    repo = isolated_dirs["hf"] / "hub" / "models--timm--vit_base_patch32_clip_224.openai"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"x")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    assert weights.resolve("clip_vit_b32_openai") == snapshot / "open_clip_model.safetensors"


def test_resolve_hf_dir_needs_every_listed_file(isolated_dirs):
    entry = weights.get_entry("sd15")
    folder = isolated_dirs["unidad"] / entry.filename
    for rel in entry.hf_files:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(b"{}")
    assert weights.resolve("sd15") == folder
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(weights.WeightsError, match="missing weights 'sd15': folder stable-diffusion-v1-5"):
        weights.resolve("sd15")
    # alternatives: either weights file completes the DINO folder
    dino = isolated_dirs["unidad"] / "dino-vits16"
    dino.mkdir()
    (dino / "config.json").write_text("{}")
    assert not weights.is_available("dino_vits16")
    (dino / "pytorch_model.bin").write_bytes(b"x")
    assert weights.resolve("dino_vits16") == dino
    assert weights.verify("dino_vits16").sha256 is None


def test_package_file_resolves_inside_installed_lpips():
    path = weights.resolve("lpips_vgg_lin_v01")
    assert path.parts[-3:] == ("weights", "v0.1", "vgg.pth")
    assert weights.verify("lpips_vgg_lin_v01").pinned


# ------------------------------------------------------------------------------------------ verify

def test_verify_right_wrong_and_unpinned_hash(isolated_dirs, temp_entry):
    blob, set_entry = temp_entry
    staged = isolated_dirs["unidad"] / "blob.bin"
    staged.write_bytes(blob.read_bytes())
    actual = sha256_of(blob)

    set_entry(sha256=actual)
    report = weights.verify("unit_test_blob")
    assert report.pinned and report.sha256 == actual and report.path == staged

    wrong = "0" * 64
    set_entry(sha256=wrong)
    with pytest.raises(weights.WeightsError) as info:
        weights.verify("unit_test_blob")
    message = str(info.value)
    assert "\n" not in message
    assert f"expected {wrong}, actual {actual}" in message and "unidad weights fetch unit_test_blob" in message

    set_entry(sha256=None)
    report = weights.verify("unit_test_blob")
    assert not report.pinned and actual in report.message

    set_entry(sha256=None, sha256_prefix="ffffffff")
    with pytest.raises(weights.WeightsError, match="expected prefix ffffffff"):
        weights.verify("unit_test_blob")
    set_entry(sha256=None, sha256_prefix=actual[:8])
    assert weights.verify("unit_test_blob").sha256 == actual


def test_hub_entries_pin_a_commit_or_say_how_to_pin_one(tmp_path):
    for entry in weights.load_manifest().values():
        if entry.hf_repo:
            assert entry.revision_pinned or (entry.revision_note and "hf_revision" in entry.revision_note), entry.name
        else:
            assert entry.revision_pinned and entry.revision_note is None, entry.name
    raw = {"name": "hub", "kind": "hf_dir", "filename": "hub", "url": "https://huggingface.co/o/r", "sha256": None,
           "licence": "MIT", "description": "d", "used_by": ["t"], "hf_repo": "o/r", "hf_files": ["config.json"],
           "hf_revision": "main"}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"weights": [raw]}))
    with pytest.raises(weights.WeightsError, match="follows the branch 'main' of o/r; pin hf_revision"):
        weights.load_manifest(path)
    path.write_text(json.dumps({"weights": [{**raw, "hf_revision": "0123456789abcdef0123456789abcdef01234567"}]}))
    assert weights.load_manifest(path)["hub"].revision_pinned
    path.write_text(json.dumps({"weights": [{**raw, "revision_note": "pin it with ..."}]}))
    assert not weights.load_manifest(path)["hub"].revision_pinned


def test_prefix_is_checked_and_the_full_sha256_recorded_at_first_verification(isolated_dirs, temp_entry):
    blob, set_entry = temp_entry
    staged = isolated_dirs["unidad"] / "blob.bin"
    staged.write_bytes(blob.read_bytes())
    actual = sha256_of(blob)
    set_entry(sha256=None, sha256_prefix=actual[:8])
    record_file = isolated_dirs["unidad"] / "blob.bin.sha256.json"

    first = weights.verify("unit_test_blob")
    assert not first.pinned and f"prefix {actual[:8]} ok; first verification: sha256 {actual} recorded" in first.message
    record = json.loads(record_file.read_text())
    assert record["sha256"] == actual and record["file"] == str(staged) and record["checked_prefix"] == actual[:8]
    again = weights.verify("unit_test_blob")
    assert "matches the one recorded at its first verification" in again.message
    assert json.loads(record_file.read_text()) == record  # recorded once

    # a file replaced later (here: without a prefix to catch it) fails against the record
    set_entry(sha256=None, sha256_prefix=None)
    staged.write_bytes(b"another file")
    with pytest.raises(weights.WeightsError, match="changed since its first verification") as info:
        weights.verify("unit_test_blob")
    assert "\n" not in str(info.value) and actual in str(info.value) and str(record_file) in str(info.value)
    with pytest.raises(weights.WeightsError, match="changed since its first verification"):
        weights.fetch("unit_test_blob", isolated_dirs["unidad"])  # present but not the recorded file
    # a pinned sha256 wins over the record
    set_entry(sha256=sha256_of(staged))
    assert weights.verify("unit_test_blob").pinned


def test_a_file_in_the_hf_cache_is_recorded_in_the_users_weights_folder(isolated_dirs):
    repo = isolated_dirs["hf"] / "hub" / "models--timm--vit_base_patch32_clip_224.openai"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"clip weights")
    report = weights.verify("clip_vit_b32_openai")
    assert "first verification" in report.message and "revision not pinned (main)" in report.message
    assert list(snapshot.iterdir()) == [snapshot / "open_clip_model.safetensors"]  # the cache is left alone
    [record] = (isolated_dirs["unidad"] / ".sha256").iterdir()
    assert json.loads(record.read_text())["sha256"] == hashlib.sha256(b"clip weights").hexdigest()
    assert "matches the one recorded" in weights.verify("clip_vit_b32_openai").message


def test_verifying_a_package_file_writes_nothing_into_the_package():
    path = weights.resolve("lpips_vgg_lin_v01")
    before = sorted(p.name for p in path.parent.iterdir())
    assert weights.verify("lpips_vgg_lin_v01").pinned
    assert sorted(p.name for p in path.parent.iterdir()) == before


# ------------------------------------------------------------------------------------------- fetch

def test_fetch_downloads_checks_and_renames_atomically(tmp_path, temp_entry):
    blob, set_entry = temp_entry
    dest = tmp_path / "dest"
    set_entry(sha256="1" * 64)
    with pytest.raises(weights.WeightsError, match="sha256 mismatch"):
        weights.fetch("unit_test_blob", dest)
    assert list(dest.iterdir()) == []  # no partial file left behind

    set_entry(sha256=sha256_of(blob))
    path = weights.fetch("unit_test_blob", dest)
    assert path == dest / "blob.bin" and path.read_bytes() == blob.read_bytes()
    assert [p.name for p in dest.iterdir()] == ["blob.bin"]
    assert weights.fetch("unit_test_blob", dest) == path  # present and valid: no second download


def test_fetch_refuses_package_files_and_offline_hub(tmp_path, monkeypatch):
    with pytest.raises(weights.WeightsError, match="pip install lpips"):
        weights.fetch("lpips_vgg_lin_v01", tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(weights.WeightsError, match="HF_HUB_OFFLINE is set"):
        weights.fetch("sd15", tmp_path)


# --------------------------------------------------------------------------------------------- CLI

def test_cli_verify_all_fails_on_a_corrupt_file(isolated_dirs, temp_entry, capsys):
    blob, set_entry = temp_entry
    (isolated_dirs["unidad"] / "blob.bin").write_bytes(b"corrupt")
    set_entry(sha256=sha256_of(blob))
    assert weights_cli.cli(["verify"]) == 1
    captured = capsys.readouterr()
    assert "sha256 mismatch for weights 'unit_test_blob'" in captured.err
    assert "inception_v3_tf: absent" in captured.out


def test_cli_list_path_and_errors(isolated_dirs, capsys):
    assert weights_cli.cli(["list"]) == 0
    out = capsys.readouterr().out
    assert "inception_v3_tf" in out and "MISSING" in out and "lpips_vgg_lin_v01" in out

    assert weights_cli.cli(["path", "inception_v3_tf"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: missing weights 'inception_v3_tf'") and err.count("\n") == 1

    assert weights_cli.cli(["verify", "lpips_vgg_lin_v01"]) == 0
    assert "ok" in capsys.readouterr().out
    assert weights_cli.cli(["verify"]) == 0  # missing entries are reported, not failures, when verifying all


def test_add_weights_subparser_wires_into_a_parent_cli(capsys):
    parser = argparse.ArgumentParser(prog="unidad")
    weights_cli.add_weights_subparser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["weights", "path", "lpips_vgg_lin_v01"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip().endswith("vgg.pth")


# ------------------------------------------------------------------------------ case 7 (CLIP weights)

@pytest.mark.weights
def test_case7_clip_vit_b32_openai_zero_shot():
    try:
        path = weights.resolve("clip_vit_b32_openai")
    except weights.WeightsError as err:
        pytest.skip(f"CLIP weights not staged: {err}")
    import open_clip
    import torch
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32-quickgelu", pretrained=str(path))
    tokenizer = open_clip.get_tokenizer("ViT-B-32-quickgelu")
    image = preprocess(Image.open(Path(__file__).parent / "data" / "open_clip" / "CLIP.png")).unsqueeze(0)
    with torch.no_grad():
        img = model.encode_image(image)
        txt = model.encode_text(tokenizer(["a diagram", "a dog", "a cat"]))
    img = img / img.norm(dim=-1, keepdim=True)
    txt = txt / txt.norm(dim=-1, keepdim=True)
    probs = (100.0 * img @ txt.T).softmax(dim=-1)[0].tolist()
    assert probs == pytest.approx([0.9927937, 0.00421068, 0.00299572], abs=2e-3)


# ----------------------------------------------------------------------- what a config needs

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
PAPER_FSIG = CONFIG_DIR / "paper_fsig.yaml"
PAPER_FSIG_NEEDS = ["adm_ffhq256", "inception_v3_tf", "lpips_vgg16", "lpips_vgg_lin_v01"]


def test_required_weights_follow_the_config():
    from unidad.config import load_config_file

    assert preflight.required_weights(load_config_file(CONFIG_DIR / "config.yaml")) == []  # the demo needs none
    needed = preflight.required_weights(load_config_file(PAPER_FSIG))
    assert [r.name for r in needed] == PAPER_FSIG_NEEDS
    assert needed[0].needed_by == ("source.weights",)
    assert needed[1].needed_by == ("evaluation.extractor inception",)
    assert needed[3].needed_by == ("evaluation.lpips vgg",)
    for name in {n for table in (preflight.BACKBONE_WEIGHTS, preflight.EXTRACTOR_WEIGHTS, preflight.DISTANCE_WEIGHTS)
                 for names in table.values() for n in names}:
        assert name in weights.manifest()

    # only the metrics that read reference statistics need the extractor; paths are paths
    needed = preflight.required_weights(load_config_file(PAPER_FSIG, {
        "evaluation": {"metrics": ["intra_lpips", "speed"]},
        "source": {"weights": "staged/ffhq.pt"},
        "extra_methods": {"from_file": {"stages": [
            {"stage": "ft", "data": "target", "init": "staged/student.safetensors"}]}},
        "methods": ["ft", "from_file"],
    }))
    assert [r.label for r in needed] == ["staged/ffhq.pt", "lpips_vgg16", "lpips_vgg_lin_v01",
                                         "staged/student.safetensors"]
    assert needed[0].name is None and needed[3].needed_by[0] == "method from_file stage ft role init"

    needed = preflight.required_weights(load_config_file(CONFIG_DIR / "config.yaml", {"backbone": {"kind": "sd15"}}))
    assert [(r.name, r.needed_by) for r in needed] == [("sd15", ("backbone.kind sd15",))]


def test_cli_verify_config_fails_naming_each_missing_file(isolated_dirs, capsys):
    assert weights_cli.cli(["--weights-dir", str(isolated_dirs["explicit"]), "verify", "--config", str(PAPER_FSIG)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    for name in ("adm_ffhq256", "inception_v3_tf", "lpips_vgg16"):
        (line,) = [ln for ln in lines if ln.startswith(f"{name}: missing")]
        assert f"get it with: unidad weights fetch {name}" in line
    assert any(ln.startswith("lpips_vgg_lin_v01: ok") for ln in lines)  # shipped in the lpips package
    assert captured.err.startswith(f"error: {PAPER_FSIG} needs 3 weights file(s) that are missing or wrong: "
                                   "adm_ffhq256, inception_v3_tf, lpips_vgg16")
    # without a config, verify keeps listing what is absent and succeeds
    assert weights_cli.cli(["verify"]) == 0
    assert "adm_ffhq256: absent" in capsys.readouterr().out


def test_cli_verify_config_passes_when_every_needed_file_is_staged(isolated_dirs, monkeypatch, capsys):
    staged = isolated_dirs["explicit"]
    for name in ("adm_ffhq256", "inception_v3_tf", "lpips_vgg16"):
        entry = weights.get_entry(name)
        path = staged / entry.filename
        path.write_bytes(f"fake {name} weights\n".encode())
        monkeypatch.setitem(weights.manifest(), name,
                            dataclasses.replace(entry, sha256=sha256_of(path), sha256_prefix=None))
    argv = ["--weights-dir", str(staged), "verify", "--config", str(PAPER_FSIG)]
    assert weights_cli.cli(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert all(f"{name}: ok" in captured.out for name in PAPER_FSIG_NEEDS)
    assert captured.out.splitlines()[-1] == f"{PAPER_FSIG}: all 4 weights file(s) it needs are in place"

    (staged / weights.get_entry("inception_v3_tf").filename).write_bytes(b"a different version")
    assert weights_cli.cli(argv) == 1
    captured = capsys.readouterr()
    (line,) = [ln for ln in captured.out.splitlines() if ln.startswith("inception_v3_tf:")]
    assert "sha256 mismatch" in line and line.endswith("get it with: delete it and run: unidad weights fetch inception_v3_tf")
    assert "missing or wrong: inception_v3_tf" in captured.err


def test_cli_verify_config_refuses_a_bad_config(tmp_path, capsys):
    assert weights_cli.cli(["verify", "--config", str(tmp_path / "nope.yaml")]) == 1
    assert "not found" in capsys.readouterr().err
    assert weights_cli.cli(["verify", "sd15", "--config", str(PAPER_FSIG)]) == 1
    assert "either NAME or --config" in capsys.readouterr().err
