"""Prompts of the subject-driven benchmark: the unique-token caption and what each network role reads.

A subject's instance caption is "a <token> <class noun>" (the paper's token is "prt"); the source
teacher never learnt the token, so it reads the caption without it ("a <class noun>"), which is also
the class prompt of DreamBooth's prior preservation.
"""
from __future__ import annotations

from typing import Sequence


def instance_prompt(token: str, class_noun: str) -> str:
    """The caption of a subject's own images."""
    return f"a {token} {class_noun}"


def drop_token(prompt: str, token: str) -> str:
    """`prompt` without the unique token (as a whole word); a prompt without it is returned as is."""
    words = prompt.split()
    kept = [w for w in words if w != token]
    return prompt if len(kept) == len(words) else " ".join(kept)


def drop_tokens(prompts: Sequence[str] | None, token: str) -> list[str] | None:
    return None if prompts is None else [drop_token(p, token) for p in prompts]


def load_captions(folder, shots: int | None = None) -> list[str] | None:
    """The captions of a training-image folder, aligned with `load_image_folder(folder, shots)`: the
    folder's captions file (unidad.data.captioned, one caption per image). None when the folder has
    no captions file (unconditional data)."""
    from pathlib import Path

    from unidad.data.captioned import CAPTIONS_FILE, read_captions
    from unidad.data.folders import list_image_files

    if not (Path(folder) / CAPTIONS_FILE).is_file():
        return None
    captions = {file.name: text for file, text in read_captions(folder)}
    files = list_image_files(folder)
    return [captions[f.name] for f in (files if shots is None else files[:shots])]


# -- the workflow's side: captions of a subject's images and the evaluation prompts ----------------
def subject_caption(config, dataset: str) -> str | None:
    """The caption of every training image of a subject dataset (one with a class noun), else None."""
    noun = config["datasets"][dataset].get("class_noun")
    return instance_prompt(config["unique_token"], noun) if noun else None


def check_stage_token(config, params, where: str) -> None:
    """A stage's unique_token option must be the token the captions and evaluation prompts use."""
    from unidad.config import ConfigError

    token = params.get("unique_token")
    if token is not None and token != config["unique_token"]:
        raise ConfigError(f"{where}stage option unique_token '{token}' differs from the config's unique_token "
                          f"'{config['unique_token']}'; set one value (the config key unique_token)")


def evaluation_prompts(config, dataset: str) -> tuple[list[str], list[int]] | None:
    """(prompt per image, seed per image) of a dataset with evaluation prompts: each template filled
    with the unique token and the class noun, sampled images_per_prompt times with the seeds offset + j
    (the same seeds for every prompt, as the official protocol's seeds 0..3). None without prompts."""
    from unidad.config import ConfigError

    d, ev = config["datasets"][dataset], config["evaluation"]
    templates = d.get("prompts") or []
    if not templates:
        return None
    if not d.get("class_noun"):
        raise ConfigError(f"config key datasets.{dataset}.prompts needs datasets.{dataset}.class_noun")
    per = ev["images_per_prompt"]
    prompts, seeds = [], []
    for template in templates:
        try:
            prompt = template.format(token=config["unique_token"], class_noun=d["class_noun"])
        except (KeyError, IndexError, ValueError):
            raise ConfigError(f"config key datasets.{dataset}.prompts: template {template!r} may only use "
                              "{token} and {class_noun}") from None
        prompts += [prompt] * per
        seeds += [ev["sample_seed_offset"] + j for j in range(per)]
    return prompts, seeds
