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


CAPTIONS_FILE = "captions.json"


def load_captions(folder, shots: int | None = None) -> list[str] | None:
    """The captions of a training-image folder, aligned with `load_image_folder(folder, shots)`: a
    `captions.json` object {file name: caption} beside the images. None when the folder has no
    captions file (unconditional data)."""
    import json
    from pathlib import Path

    from unidad.data.folders import list_image_files

    path = Path(folder) / CAPTIONS_FILE
    if not path.is_file():
        return None
    captions = json.loads(path.read_text())
    files = list_image_files(folder)
    files = files if shots is None else files[:shots]
    missing = [f.name for f in files if not isinstance(captions.get(f.name), str)]
    if missing:
        raise ValueError(f"{path} has no caption for {missing[:3]}{' ...' if len(missing) > 3 else ''}; "
                         "give every image of the folder a caption string")
    return [captions[f.name] for f in files]
