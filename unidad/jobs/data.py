"""Jobs of workflow/rules/data.smk: demo dataset splits, checks of staged folders, the domain picture."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from unidad.atomic import atomic_path, write_json_atomic


def write_demo_split(dataset: Mapping[str, Any], split: str, image_size: int, out_dir: str | Path) -> None:
    """One split of a demo dataset (config `datasets.<name>`) as a folder of PNGs, like a real dataset.

    split: "train" (teacher pretraining set), "full" (reference statistics), "val" (checkpoint
    selection; disjoint seeds from "full"), or "k{shots}" (the few-shot training set)."""
    from unidad.data.datasets import make_fewshot, make_full
    from unidad.data.domains import get_domain, write_image_folder

    if dataset["kind"] != "demo":
        _write_text_demo_split(dataset, split, image_size, out_dir)
        return
    dom = get_domain(dataset["domain"])
    seed = int(dataset.get("seed", 0))
    if split == "train":
        images, _ = dom.sample(int(dataset.get("train_size", 10000)), seed=seed + 101, image_size=image_size)
    elif split == "full":
        images = make_full(dom, int(dataset.get("full_size", 5000)), seed=seed, image_size=image_size)
    elif split == "val":
        images = make_full(dom, int(dataset.get("val_size", 1000)), seed=seed + 7_777, image_size=image_size)
    elif split.startswith("k") and split[1:].isdigit():
        images = make_fewshot(dom, int(split[1:]), seed=seed, image_size=image_size)
    else:
        raise ValueError(f"unknown demo split {split!r}; expected train, full, val or k<shots>")
    write_image_folder(images, out_dir)


def _write_text_demo_split(dataset: Mapping[str, Any], split: str, image_size: int, out_dir: str | Path) -> None:
    """The text-conditioned demo's sets: the captioned source (split train, PNGs + captions.jsonl) and a
    subject's shots (split k<shots>, all in the subject's one context; the workflow captions them)."""
    from unidad.data.folders import write_image_folder
    from unidad.data.sdp_demo import make_shots
    from unidad.jobs.sdp_data import write_captioned_source

    seed = int(dataset.get("seed", 0))
    if dataset["kind"] == "demo_captions" and split == "train":
        write_captioned_source(int(dataset.get("train_size", 10000)), seed + 101, image_size, out_dir)
    elif dataset["kind"] == "demo_subject" and split.startswith("k") and split[1:].isdigit():
        write_image_folder(make_shots(dataset["subject"], int(split[1:]), seed=seed, image_size=image_size), out_dir)
    else:
        raise ValueError(f"a {dataset['kind']} dataset has no split {split!r}; "
                         f"expected {'train' if dataset['kind'] == 'demo_captions' else 'k<shots>'}")


def verify_staged_folder(folder: str | Path, shots: int | None, image_size: int, on_wrong_size: str,
                         out: str | Path) -> None:
    """Reads every file of a staged dataset split with the validating reader, one at a time (the folder
    is never held in memory); writes a marker with its size."""
    from unidad.data.folders import verify_image_folder

    n_images = verify_image_folder(folder, shots=shots, image_size=image_size, on_wrong_size=on_wrong_size)
    write_json_atomic(out, {"folder": str(folder), "shots": shots, "n_images": n_images})


def domain_figure(demo_datasets: Mapping[str, Mapping[str, Any]], targets: Sequence[str], image_size: int,
                  out: str | Path) -> None:
    """One figure: 32 images of each demo domain, then each demo target's 10-shot training set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unidad.data.datasets import make_fewshot
    from unidad.data.domains import get_domain
    from unidad.imageio import make_grid

    panels = []
    for key, d in demo_datasets.items():
        domain = get_domain(d["domain"])
        images, _ = domain.sample(32, seed=int(d.get("seed", 0)) + 5, image_size=image_size)
        panels.append((f"{key}: domain '{d['domain']}' ({len(domain.modes)} modes)", make_grid(images, nrow=8, scale=4)))
    for key in targets:
        d = demo_datasets.get(key)
        if d is None:
            continue
        shots = make_fewshot(d["domain"], 10, seed=int(d.get("seed", 0)), image_size=image_size)
        panels.append((f"{key}: the 10-shot training set", make_grid(shots, nrow=10, scale=4)))
    if not panels:
        raise ValueError("no demo datasets in this config: nothing to draw")
    fig, axes = plt.subplots(len(panels), 1, figsize=(6, 2.2 * len(panels)))
    for ax, (title, img) in zip(np.atleast_1d(axes), panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
