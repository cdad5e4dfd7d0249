"""DreamBench data: the packaged prompt table, prompts per subject, the upstream folder layout and its
validation (one-line errors), centre crop + resize; the captioned-folder format."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from unidad.data import dreambench as db
from unidad.data.captioned import CAPTIONS_FILE, load_captioned_folder, read_captions, write_captioned_folder
from unidad.data.folders import ImageFolderError


# ----------------------------------------------------------------------------------- prompt table
def test_packaged_table_is_the_upstream_list():
    table = db.read_prompt_table()
    assert len(table.subjects) == 30
    assert len(table.object_templates) == 25 and len(table.live_templates) == 25
    assert table.class_noun("bear_plushie") == "stuffed animal"
    live = sorted(s for s in table.subjects if table.is_live(s))
    assert live == ["cat", "cat2", "dog", "dog2", "dog3", "dog5", "dog6", "dog7", "dog8"]
    # the two lists share the first 10 (contexts) and the last 5 (properties), differ in between
    assert table.object_templates[:10] == table.live_templates[:10]
    assert table.object_templates[20:] == table.live_templates[20:]
    assert "a {0} {1} wearing a santa hat" in table.live_templates
    assert "a {0} {1} wearing a santa hat" not in table.object_templates


def test_packaged_copy_matches_the_reference_file():
    from pathlib import Path

    reference = Path("/work/shared/refdata/dreambooth/prompts_and_classes.txt")
    if not reference.is_file():
        pytest.skip("the shared reference copy is not on this machine")
    assert db.PACKAGED_PROMPTS.read_bytes() == reference.read_bytes()


def test_subject_prompts_fill_token_and_class_noun():
    dog = db.subject_prompts("dog3")
    assert dog.class_noun == "dog" and dog.live and dog.token == "prt"
    assert dog.prompts[0] == "a prt dog in the jungle"
    assert "a prt dog wearing a red hat" in dog.prompts
    assert dog.instance_prompt == "a prt dog" and dog.class_prompt == "a dog"
    plush = db.subject_prompts("bear_plushie", token="sks")
    assert not plush.live and plush.prompts[-1] == "a cube shaped sks stuffed animal"
    assert all(" sks stuffed animal" in p for p in plush.prompts)
    official = db.subject_prompts("can", protocol="official_code")
    assert len(official.prompts) == 27 and official.prompts[:2] == ("a jungle pathway", "a prt can")
    with pytest.raises(ValueError, match="one word"):
        db.subject_prompts("can", token="two words")
    with pytest.raises(ValueError, match="unknown prompt protocol"):
        db.subject_prompts("can", protocol="mine")


def test_drop_token_removes_the_word_only():
    from unidad.prompts import drop_token

    assert drop_token("a prt dog in the snow", "prt") == "a dog in the snow"
    assert drop_token("a sks teapot", "sks") == "a teapot"
    assert drop_token("a sprt dog", "prt") == "a sprt dog"  # not part of another word


def test_format_and_read_round_trip(tmp_path):
    text = db.format_prompt_table({"blob": "circle", "pup": "dog"}, ["a {0} {1} in the snow"], ["a {0} {1} sleeping"])
    (tmp_path / "p.txt").write_text(text)
    table = db.read_prompt_table(tmp_path / "p.txt")
    assert table.classes == {"blob": "circle", "pup": "dog"}
    assert db.subject_prompts("pup", table=table).prompts == ("a prt dog sleeping",)
    assert db.subject_prompts("blob", table=table).prompts == ("a prt circle in the snow",)


@pytest.mark.parametrize("text, message", [
    ("Classes\n\nnothing here\n", "no 'subject_name,class' table"),
    ("subject_name,class\nbad line\n", "is not 'subject_name,class'"),
    ("subject_name,class\nx,cup\nx,cup\n", "listed twice"),
    ("subject_name,class\nx,cup\n\nObject Prompts\nprompt_list = [\n'a {0}'.format(a, b),\n]\n", "is not a"),
    ("subject_name,class\nx,dog\n\nObject Prompts\nprompt_list = [\n'a {0} {1}'.format(unique_token, class_token)\n]\n",
     "no 'Live Subject Prompts'"),
    ("subject_name,class\nx,cup\n", "no 'Object Prompts'"),
])
def test_bad_prompt_files_give_one_line_errors(tmp_path, text, message):
    (tmp_path / "p.txt").write_text(text)
    with pytest.raises(ImageFolderError, match=message) as info:
        db.read_prompt_table(tmp_path / "p.txt")
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------- folders
def _photo(width: int, height: int, seed: int) -> np.ndarray:
    """A landscape/portrait photo whose centre square is one colour and whose margins another, so the
    crop is visible in the result."""
    image = np.zeros((height, width, 3), np.uint8)
    image[...] = (250, 10, 10)
    side = min(width, height)
    top, left = (height - side) // 2, (width - side) // 2
    image[top:top + side, left:left + side] = (10, 200, 30 + seed)
    return image


def _dreambench(tmp_path, counts: dict[str, int], with_table: bool = True):
    root = tmp_path / "dataset"
    for subject, count in counts.items():
        (root / subject).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(_photo(120 + 40 * (i % 2), 100, i)).save(root / subject / f"{i:02d}.jpg", quality=95)
    if with_table:
        (root / db.PROMPTS_FILE).write_bytes(db.PACKAGED_PROMPTS.read_bytes())
    return root


def test_loads_a_subject_centre_cropped_and_resized(tmp_path):
    root = _dreambench(tmp_path, {"dog": 5, "teapot": 4})
    images = db.load_subject_images(root, "dog", image_size=32)
    assert images.shape == (5, 32, 32, 3) and images.dtype == np.uint8
    # only the green centre square survives the crop: no red margin anywhere
    assert images[..., 1].min() > 150 and images[..., 0].max() < 60
    assert db.check_dreambench(root, ["dog", "teapot"]) == {"dog": 5, "teapot": 4}


def test_without_its_own_table_the_packaged_one_is_used(tmp_path):
    root = _dreambench(tmp_path, {"teapot": 4}, with_table=False)
    assert db.dataset_prompt_table(root).source == str(db.PACKAGED_PROMPTS)
    assert db.load_subject_images(root, "teapot", 16).shape == (4, 16, 16, 3)


def test_folder_errors_name_the_problem_and_the_fix(tmp_path):
    root = _dreambench(tmp_path, {"dog": 2, "teapot": 4})
    cases = [
        (lambda: db.load_subject_images(root, "unicorn", 32), "unknown subject 'unicorn'"),
        (lambda: db.load_subject_images(root, "dog", 32), "has 2 images .* at least 4 .* lower data.min_images"),
        (lambda: db.load_subject_images(root, "vase", 32), "has no folder"),
        (lambda: db.load_subject_images(tmp_path / "none", "dog", 32), "does not exist"),
        (lambda: db.check_dreambench(root, ["dog", "teapot"]), "'dog' has 2 images"),
    ]
    (root / "teapot" / "03.jpg").write_bytes(b"not a jpeg")
    cases.append((lambda: db.load_subject_images(root, "teapot", 32), r"cannot read image .*03\.jpg.*replace or remove"))
    for call, message in cases:
        with pytest.raises(ImageFolderError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
    assert db.load_subject_images(root, "dog", 32, min_images=2).shape == (2, 32, 32, 3)


# ------------------------------------------------------------------------------- captioned folders
def test_captioned_folder_round_trip_and_validation(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    captions = ["a red circle", "a blue square on the beach", "a triangle"]
    folder = write_captioned_folder(images, captions, tmp_path / "set")
    loaded, texts = load_captioned_folder(folder, 8)
    assert np.array_equal(loaded, images) and texts == captions

    index = folder / CAPTIONS_FILE
    lines = index.read_text().splitlines()
    index.write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(ImageFolderError, match="have no caption"):
        read_captions(folder)
    index.write_text("\n".join(lines + [json.dumps({"file": "99999.png", "caption": "x"})]) + "\n")
    with pytest.raises(ImageFolderError, match="not an image"):
        read_captions(folder)
    index.write_text("\n".join(lines + [lines[0]]) + "\n")
    with pytest.raises(ImageFolderError, match="second caption"):
        read_captions(folder)
    index.unlink()
    with pytest.raises(ImageFolderError, match="has no captions.jsonl"):
        read_captions(folder)
    with pytest.raises(ImageFolderError, match="one caption per image"):
        write_captioned_folder(images, captions[:2], tmp_path / "other")
