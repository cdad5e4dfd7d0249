"""Image folders: validation messages, colour-mode handling, resizing, atomic writing; imageio."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from unidad.data import ImageFolderError, load_image_folder, write_image_folder
from unidad.data import folders as folders_module
from unidad.imageio import load_png, make_grid, save_grid, save_png_atomic, to_float_nchw, to_uint8_hwc


def _rgb(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _write_pngs(folder, count: int, size: int = 16):
    folder.mkdir(parents=True, exist_ok=True)
    images = [_rgb(i, size) for i in range(count)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"img{i:02d}.png")
    return np.stack(images)


# ---------------------------------------------------------------------------------------- loading
def test_loads_sorted_and_selects_first_shots(tmp_path):
    images = _write_pngs(tmp_path / "set", 4)
    (tmp_path / "set" / "notes.txt").write_text("not an image")
    (tmp_path / "set" / ".hidden.png").write_bytes(b"junk")
    (tmp_path / "set" / "sub").mkdir()
    loaded = load_image_folder(tmp_path / "set")
    assert loaded.dtype == np.uint8 and loaded.shape == (4, 16, 16, 3)
    assert np.array_equal(loaded, images)
    assert np.array_equal(load_image_folder(tmp_path / "set", shots=2), images[:2])


def test_accepts_all_listed_formats(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    ramp = np.linspace(0, 255, 16).astype(np.uint8)
    image = np.stack([ramp[None, :].repeat(16, 0), ramp[:, None].repeat(16, 1), np.full((16, 16), 90, np.uint8)], -1)
    Image.fromarray(image).save(folder / "a.png")
    Image.fromarray(image).save(folder / "b.BMP")
    Image.fromarray(image).save(folder / "c.webp", lossless=True)
    Image.fromarray(image).save(folder / "d.jpg", quality=95)
    Image.fromarray(image).save(folder / "e.jpeg", quality=95)
    loaded = load_image_folder(folder)
    assert loaded.shape == (5, 16, 16, 3)
    assert np.array_equal(loaded[:3], np.stack([image] * 3))  # lossless formats are exact
    assert np.abs(loaded[3:].astype(int) - image).mean() < 8  # JPEG is close, not exact


def test_missing_folder(tmp_path):
    with pytest.raises(ImageFolderError, match="does not exist"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(ImageFolderError, match="is not a folder"):
        load_image_folder(tmp_path / "file.png")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no images here")
    with pytest.raises(ImageFolderError, match=r"no images in .*empty; expected PNG/JPEG files"):
        load_image_folder(tmp_path / "empty")


def test_corrupt_file_is_named(tmp_path):
    _write_pngs(tmp_path / "set", 2)
    (tmp_path / "set" / "img05.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageFolderError, match=r"cannot read image .*img05\.png") as err:
        load_image_folder(tmp_path / "set")
    assert "\n" not in str(err.value)


def test_truncated_file_is_named(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    Image.fromarray(_rgb(1, 64)).save(folder / "big.png")
    data = (folder / "big.png").read_bytes()
    (folder / "big.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageFolderError, match=r"cannot read image .*big\.png"):
        load_image_folder(folder, image_size=64)


def test_too_few_images_for_the_shots(tmp_path):
    _write_pngs(tmp_path / "set", 3)
    with pytest.raises(ImageFolderError, match=r"has 3 images but shots=10 were requested"):
        load_image_folder(tmp_path / "set", shots=10)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_shots_value(tmp_path, bad):
    _write_pngs(tmp_path / "set", 3)
    with pytest.raises(ImageFolderError, match="shots must be a positive integer"):
        load_image_folder(tmp_path / "set", shots=bad)


def test_wrong_size_resize_or_error(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    big = _rgb(3, 32)
    Image.fromarray(big).save(folder / "big.png")
    resized = load_image_folder(folder, image_size=16)
    expected = np.asarray(Image.fromarray(big).resize((16, 16), Image.BILINEAR))
    assert np.array_equal(resized[0], expected)
    with pytest.raises(ImageFolderError) as err:
        load_image_folder(folder, image_size=16, on_wrong_size="error")
    message = str(err.value)
    for part in ("big.png", "32x32", "16x16", "data.on_wrong_size"):
        assert part in message


def test_unknown_wrong_size_policy(tmp_path):
    _write_pngs(tmp_path / "set", 1)
    with pytest.raises(ImageFolderError, match=r"data.on_wrong_size is 'crop'; use one of: resize, error"):
        load_image_folder(tmp_path / "set", on_wrong_size="crop")


def test_grayscale_palette_and_16bit_become_rgb(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(gray, mode="L").save(folder / "a_gray.png")
    Image.fromarray(_rgb(4)).convert("P", palette=Image.ADAPTIVE, colors=8).save(folder / "b_palette.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(folder / "c_gray16.png")
    loaded = load_image_folder(folder)
    assert loaded.shape == (3, 16, 16, 3)
    assert np.array_equal(loaded[0], np.stack([gray] * 3, -1))
    assert np.array_equal(loaded[2], np.stack([gray] * 3, -1))
    palette_rgb = np.asarray(Image.open(folder / "b_palette.png").convert("RGB"))
    assert np.array_equal(loaded[1], palette_rgb)


def test_transparency_is_composited_on_white(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0] = 200  # red everywhere ...
    rgba[:8, :, 3] = 255  # ... opaque on the top half, transparent on the bottom half
    Image.fromarray(rgba, mode="RGBA").save(folder / "a.png")
    loaded = load_image_folder(folder)[0]
    assert np.array_equal(loaded[0, 0], [200, 0, 0])
    assert np.array_equal(loaded[-1, -1], [255, 255, 255])


# ---------------------------------------------------------------------------------------- writing
def test_write_folder_round_trip_and_replace(tmp_path):
    images = np.stack([_rgb(i) for i in range(3)])
    out = write_image_folder(images, tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert np.array_equal(load_image_folder(out), images)
    write_image_folder(images[:1], out)  # replaces the old folder as a whole
    assert sorted(p.name for p in out.iterdir()) == ["00000.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_write_folder_leaves_nothing_on_error(tmp_path, monkeypatch):
    images = np.stack([_rgb(i) for i in range(5)])
    real_fromarray = Image.fromarray
    calls = {"n": 0}

    def failing_fromarray(array, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real_fromarray(array, *args, **kwargs)

    monkeypatch.setattr(folders_module.Image, "fromarray", failing_fromarray)
    with pytest.raises(OSError, match="disk full"):
        write_image_folder(images, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []

    # an existing folder survives a failed rewrite untouched
    monkeypatch.setattr(folders_module.Image, "fromarray", real_fromarray)
    write_image_folder(images[:2], tmp_path / "out")
    calls["n"] = 0
    monkeypatch.setattr(folders_module.Image, "fromarray", failing_fromarray)
    with pytest.raises(OSError):
        write_image_folder(images, tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00000.png", "00001.png"]


def test_write_folder_rejects_bad_input(tmp_path):
    with pytest.raises(ImageFolderError, match="no images to write"):
        write_image_folder(np.zeros((0, 16, 16, 3), np.uint8), tmp_path / "out")
    with pytest.raises(ImageFolderError, match=r"expected images \[N,H,W,3\]"):
        write_image_folder(np.zeros((2, 16, 16, 4), np.uint8), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------- imageio
def test_uint8_float_round_trip_is_exact():
    u8 = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    x = to_float_nchw(u8)
    assert x.dtype == np.float32 and x.shape == (1, 3, 16, 16)
    assert x.min() == -1.0 and x.max() == 1.0
    assert np.array_equal(to_uint8_hwc(x), u8)


def test_to_uint8_rounds_to_nearest_and_clamps():
    # scaled value (x + 1) * 127.5: 0.6 -> 1, 1.4 -> 1, x = 0 is the one exact half (127.5) -> 128;
    # outside [-1, 1] clamps
    values = np.array([0.6 / 127.5 - 1, 1.4 / 127.5 - 1, 0.0, -10.0, 1e9])
    out = to_uint8_hwc(values.reshape(1, 1, 1, 5))
    assert out.shape == (1, 1, 5, 1)
    assert out.ravel().tolist() == [1, 1, 128, 0, 255]


def test_to_uint8_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    x = torch.zeros(2, 3, 4, 4)
    out = to_uint8_hwc(x)
    assert out.shape == (2, 4, 4, 3) and np.all(out == 128)


def test_png_and_grid(tmp_path):
    image = _rgb(5)
    path = save_png_atomic(image, tmp_path / "deep" / "a.png")
    assert np.array_equal(load_png(path), image)
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["a.png"]

    images = np.stack([_rgb(i) for i in range(5)])
    grid = make_grid(images, nrow=3, scale=2)
    # 2 rows x 3 columns of 32-pixel cells, 1-pixel separators around and between
    assert grid.shape == (2 * 33 + 1, 3 * 33 + 1, 3)
    assert np.array_equal(grid[1:33, 1:33], images[0].repeat(2, 0).repeat(2, 1))
    assert np.all(grid[0] == 128)
    save_grid(to_float_nchw(images), tmp_path / "grid.png", nrow=3, scale=2)
    assert np.array_equal(load_png(tmp_path / "grid.png"), grid)
