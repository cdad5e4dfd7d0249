"""Streamed training images: the batches the loop gets, their independence from worker processes and
preloading, exact restarts, and a memory bound on a folder of a few thousand images."""
import numpy as np
import pytest
import torch
from PIL import Image

from unidad.data.folders import ImageFolderError, verify_image_folder
from unidad.data.stream import BatchStream, TrainingImages
from unidad.imageio import to_float_nchw
from unidad.train.loop import batch_indices


def _write(folder, n, size, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    pixels = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    for i, img in enumerate(pixels):
        Image.fromarray(img).save(folder / f"{i:05d}.png", compress_level=1)
    return pixels


def _stream(images, start=0, workers=0, micros=(0,), batch=4, seed=5):
    n = len(images)
    return BatchStream(images, lambda it, m: batch_indices(seed, it, m, n, batch), start=start, micros=list(micros),
                       flip=True, device=torch.device("cpu"), workers=workers)


def test_batches_are_the_indexed_images_flipped_as_drawn(tmp_path):
    pixels = _write(tmp_path / "set", 12, 8)
    images = TrainingImages.from_folder(tmp_path / "set", shots=None, image_size=8, preload_max_bytes=0)
    assert not images.in_memory
    with _stream(images, micros=(0, 1)) as stream:
        for it in range(3):
            for micro in (0, 1, 0):  # a second update of the iteration asks for the same batch again
                idx, flip = batch_indices(5, it, micro, 12, 4)
                want = torch.from_numpy(to_float_nchw(pixels[idx.numpy()]))
                want = torch.where(flip[:, None, None, None], want.flip(-1), want)
                assert torch.equal(stream.batch(it, micro), want)


def test_workers_preloading_and_restart_give_the_same_batches(tmp_path):
    _write(tmp_path / "set", 20, 8)
    streamed = TrainingImages.from_folder(tmp_path / "set", shots=None, image_size=8, preload_max_bytes=0)
    preloaded = TrainingImages.from_folder(tmp_path / "set", shots=None, image_size=8)
    assert preloaded.in_memory
    with _stream(streamed) as a, _stream(preloaded) as b, _stream(streamed, workers=2) as c:
        ref = [a.batch(it, 0) for it in range(6)]
        assert all(torch.equal(b.batch(it, 0), ref[it]) for it in range(6))
        assert all(torch.equal(c.batch(it, 0), ref[it]) for it in (0, 2, 5))  # skipped iterations are skipped
    with _stream(streamed, start=4) as resumed:
        assert torch.equal(resumed.batch(4, 0), ref[4]) and torch.equal(resumed.batch(5, 0), ref[5])
        with pytest.raises(RuntimeError, match="after the stream passed it"):
            resumed.batch(3, 0)


def test_stream_does_not_touch_the_global_rng(tmp_path):
    _write(tmp_path / "set", 6, 8)
    images = TrainingImages.from_folder(tmp_path / "set", shots=3, image_size=8)
    assert len(images) == 3
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    with _stream(images) as stream:
        stream.batch(0, 0)
    assert torch.equal(torch.rand(3), expected)


def test_bad_files_are_named(tmp_path):
    _write(tmp_path / "set", 3, 8)
    (tmp_path / "set" / "00001.png").write_bytes(b"not a png")
    assert verify_image_folder(tmp_path / "set", shots=1, image_size=8) == 1
    with pytest.raises(ImageFolderError, match="00001.png"):
        verify_image_folder(tmp_path / "set", image_size=8)
    with pytest.raises(ImageFolderError, match="shots=5"):
        TrainingImages.from_folder(tmp_path / "set", shots=5, image_size=8)


def _rss_mib():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status on this platform")


def test_memory_does_not_grow_with_a_folder_of_thousands(tmp_path):
    """3000 48x48 images: as one float32 tensor (the path before streaming) they take 79 MiB; streaming
    every image of the folder once through the data path must add a small fraction of that."""
    n, size, batch = 3000, 48, 16
    _write(tmp_path / "set", n, size)
    images = TrainingImages.from_folder(tmp_path / "set", shots=None, image_size=size, preload_max_bytes=0)
    with _stream(images, batch=batch) as stream:
        stream.batch(0, 0)  # warm-up: allocator pools, PIL's decoder
        base, peak = _rss_mib(), 0.0
        for it in range(1, n // batch + 1):
            stream.batch(it, 0)
            peak = max(peak, _rss_mib())
    whole = n * 3 * size * size * 4 / 2**20
    assert peak - base < 12, f"RSS grew {peak - base:.1f} MiB streaming {n} images (whole set: {whole:.0f} MiB)"
