"""DreamBench on disk: the subject-driven personalization data set in its upstream layout.

    <root>/<subject>/*.jpg          the photos of one subject (any image type of unidad.data.folders)
    <root>/prompts_and_classes.txt  subject -> class noun, and the object and live-subject prompt lists

The prompt file is read in its upstream format (google/dreambooth `dataset/prompts_and_classes.txt`);
a folder without one uses the packaged copy (dreambench_prompts_and_classes.txt, see
DREAMBENCH_NOTICE.md). The embedded demo writes its subjects in the same layout, so one reader serves
both. A prompt is built as in the paper: the template's {0} is the unique token (paper: "prt"),
{1} the class noun ("a prt dog in the jungle").
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from unidad.data.folders import ImageFolderError, _read_rgb, list_image_files

PROMPTS_FILE = "prompts_and_classes.txt"
PACKAGED_PROMPTS = Path(__file__).with_name("dreambench_prompts_and_classes.txt")
DEFAULT_TOKEN = "prt"
# Upstream marks no subject as live; its evaluation gives the live list to the cats and dogs
# (official code 2_SDP/main/pipeline/paused_generation.py:18-22), i.e. these class nouns.
LIVE_CLASSES = frozenset({"cat", "dog"})
# The official code's prompt banks add these two to the 25 (sdp_protocol.md section 6); the paper
# protocol uses the 25 alone.
OFFICIAL_CODE_EXTRA_TEMPLATES = ("a jungle pathway", "a {0} {1}")
PROTOCOLS = ("paper", "official_code")
MIN_IMAGES_KEY = "data.min_images"

_TEMPLATE = re.compile(r"""^\s*(['"])(.*)\1\s*\.format\(\s*unique_token\s*,\s*class_token\s*\)\s*,?\s*$""")
_SUBJECT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class PromptTable:
    """The content of a prompts_and_classes.txt: subject -> class noun, and the two template lists."""

    classes: dict[str, str]
    object_templates: tuple[str, ...]
    live_templates: tuple[str, ...]
    source: str  # the file it was read from, for error messages

    @property
    def subjects(self) -> list[str]:
        return list(self.classes)

    def class_noun(self, subject: str) -> str:
        if subject not in self.classes:
            raise ImageFolderError(
                f"unknown subject '{subject}' (not in {self.source}); use one of: {', '.join(self.classes)}"
            )
        return self.classes[subject]

    def is_live(self, subject: str) -> bool:
        return self.class_noun(subject) in LIVE_CLASSES

    def templates(self, subject: str) -> tuple[str, ...]:
        return self.live_templates if self.is_live(subject) else self.object_templates


@dataclass(frozen=True)
class SubjectPrompts:
    """What a sampling or training job needs to know about one subject's prompts."""

    subject: str
    class_noun: str
    live: bool
    token: str
    templates: tuple[str, ...]  # with {0} (unique token) and {1} (class noun)
    prompts: tuple[str, ...]  # the templates filled in: the evaluation prompts, in file order

    @property
    def instance_prompt(self) -> str:
        """The caption of the subject's own photos during fine-tuning ("a prt dog")."""
        return fill_template("a {0} {1}", self.token, self.class_noun)

    @property
    def class_prompt(self) -> str:
        """The class prompt without the unique token ("a dog"): prior preservation's caption."""
        return fill_template("a {1}", self.token, self.class_noun)


def fill_template(template: str, token: str, class_noun: str) -> str:
    return template.format(token, class_noun)


# ----------------------------------------------------------------------------------- prompts file
def read_prompt_table(path: str | os.PathLike | None = None) -> PromptTable:
    """Parse a prompts_and_classes.txt in the upstream format (None: the packaged DreamBench copy).

    The class table follows the line "subject_name,class" up to the first blank line; the prompt
    lists are the `'...'.format(unique_token, class_token)` lines after the headers "Object Prompts"
    and "Live Subject Prompts". A file with no live subject may omit the live list.
    """
    file = PACKAGED_PROMPTS if path is None else Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise ImageFolderError(f"cannot read the prompt file {file}: {err.strerror or err}; "
                               f"restore it (the upstream DreamBench {PROMPTS_FILE})") from None
    fix = f"write it in the upstream DreamBench format (see {PACKAGED_PROMPTS.name})"
    stripped = [line.strip() for line in lines]
    if "subject_name,class" not in stripped:
        raise ImageFolderError(f"{file} has no 'subject_name,class' table; {fix}")
    classes: dict[str, str] = {}
    for number, line in enumerate(stripped[stripped.index("subject_name,class") + 1:],
                                  start=stripped.index("subject_name,class") + 2):
        if not line:
            break
        subject, sep, noun = (part.strip() for part in line.partition(","))
        if not sep or not noun or not _SUBJECT_NAME.match(subject):
            raise ImageFolderError(f"{file} line {number}: '{line}' is not 'subject_name,class'; {fix}")
        if subject in classes:
            raise ImageFolderError(f"{file} line {number}: subject '{subject}' is listed twice; keep one row")
        classes[subject] = noun
    if not classes:
        raise ImageFolderError(f"{file} lists no subjects under 'subject_name,class'; {fix}")

    def prompt_list(header: str) -> tuple[str, ...]:
        if header not in stripped:
            return ()
        templates = []
        for line in stripped[stripped.index(header) + 1:]:
            if line.startswith("]"):
                break
            match = _TEMPLATE.match(line)
            if match:
                templates.append(match.group(2))
            elif line and not line.startswith("prompt_list"):
                raise ImageFolderError(f"{file}: '{line}' under '{header}' is not a "
                                       f"'...'.format(unique_token, class_token) line; {fix}")
        return tuple(templates)

    table = PromptTable(classes, prompt_list("Object Prompts"), prompt_list("Live Subject Prompts"), str(file))
    if any(not table.is_live(s) for s in classes) and not table.object_templates:
        raise ImageFolderError(f"{file} has no 'Object Prompts' list; {fix}")
    if any(table.is_live(s) for s in classes) and not table.live_templates:
        raise ImageFolderError(f"{file} has live subjects ({', '.join(sorted(LIVE_CLASSES))}) but no "
                               f"'Live Subject Prompts' list; {fix}")
    return table


def format_prompt_table(classes: dict[str, str], object_templates, live_templates=(), title: str = "") -> str:
    """The text of a prompts_and_classes.txt in the upstream format (read back by read_prompt_table)."""
    def block(header: str, templates) -> list[str]:
        quoted = [f"{t!r}.format(unique_token, class_token)," for t in templates]
        if quoted:
            quoted[-1] = quoted[-1][:-1]
        return [header, "", "prompt_list = [", *quoted, "]", ""]

    lines = ([title, ""] if title else []) + ["Classes", "", "subject_name,class"]
    lines += [f"{subject},{noun}" for subject, noun in classes.items()] + ["", "Prompts", ""]
    lines += block("Object Prompts", object_templates)
    if live_templates:
        lines += block("Live Subject Prompts", live_templates)
    return "\n".join(lines)


def dataset_prompt_table(root: str | os.PathLike) -> PromptTable:
    """The folder's own prompts_and_classes.txt, else the packaged DreamBench one."""
    own = Path(root) / PROMPTS_FILE
    return read_prompt_table(own if own.is_file() else None)


def subject_prompts(subject: str, token: str = DEFAULT_TOKEN, table: PromptTable | None = None,
                    protocol: str = "paper") -> SubjectPrompts:
    """The subject's class noun, live/object kind and evaluation prompts.

    protocol "paper": the 25 templates of the subject's list; "official_code": the official code's
    27 (the two extra templates first, as its prompt banks have them).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown prompt protocol '{protocol}'; use one of: {', '.join(PROTOCOLS)}")
    if not token or any(ch.isspace() for ch in token):
        raise ValueError(f"the unique token must be one word, got {token!r}; the paper uses 'prt'")
    table = table or read_prompt_table()
    noun = table.class_noun(subject)
    templates = table.templates(subject)
    if protocol == "official_code":
        templates = OFFICIAL_CODE_EXTRA_TEMPLATES + templates
    prompts = tuple(fill_template(t, token, noun) for t in templates)
    return SubjectPrompts(subject, noun, table.is_live(subject), token, tuple(templates), prompts)


# ------------------------------------------------------------------------------------------ images
def _center_fit(img: Image.Image, size: int) -> np.ndarray:
    """The central square, resized to size x size with bicubic filtering (the official data preparation's
    ImageOps.fit)."""
    if img.size != (size, size):
        img = ImageOps.fit(img, (size, size), method=Image.BICUBIC, centering=(0.5, 0.5))
    return np.asarray(img, dtype=np.uint8)


def subject_files(root: str | os.PathLike, subject: str, min_images: int = 4,
                  table: PromptTable | None = None) -> list[Path]:
    """The image files of one subject, sorted by name, after checking the subject and its count."""
    root = Path(root)
    if not root.is_dir():
        raise ImageFolderError(f"DreamBench folder {root} does not exist; stage google/dreambooth's dataset/ there "
                               f"or fix the path in the config")
    table = table or dataset_prompt_table(root)
    table.class_noun(subject)  # unknown subject -> one-line error
    folder = root / subject
    if not folder.is_dir():
        raise ImageFolderError(f"subject '{subject}' has no folder {folder}; copy its images from "
                               f"google/dreambooth dataset/{subject}/ or drop it from the config")
    files = list_image_files(folder)
    if len(files) < min_images:
        raise ImageFolderError(f"subject '{subject}' has {len(files)} images in {folder} but at least {min_images} "
                               f"are needed; add images or lower {MIN_IMAGES_KEY}")
    return files


def load_subject_images(root: str | os.PathLike, subject: str, image_size: int, min_images: int = 4,
                        table: PromptTable | None = None) -> np.ndarray:
    """The subject's photos as uint8 [N, image_size, image_size, 3] in file-name order: centre square
    crop, bicubic resize to the backbone's size. Every file must be readable (one-line error naming it)."""
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ImageFolderError(f"image_size must be a positive integer, got {image_size!r}")
    files = subject_files(root, subject, min_images, table)
    return np.stack([_center_fit(_read_rgb(file), int(image_size)) for file in files])


def check_dreambench(root: str | os.PathLike, subjects: list[str] | None = None, min_images: int = 4) -> dict:
    """Validate a DreamBench folder without decoding it twice: every named subject (default: all of
    the prompt table) present with enough readable images. Returns {subject: number of images}."""
    table = dataset_prompt_table(root)
    counts = {}
    for subject in subjects if subjects is not None else table.subjects:
        files = subject_files(root, subject, min_images, table)
        for file in files:
            _read_rgb(file)
        counts[subject] = len(files)
    return counts


__all__ = [
    "DEFAULT_TOKEN",
    "LIVE_CLASSES",
    "PROMPTS_FILE",
    "PromptTable",
    "SubjectPrompts",
    "check_dreambench",
    "dataset_prompt_table",
    "fill_template",
    "format_prompt_table",
    "load_subject_images",
    "read_prompt_table",
    "subject_files",
    "subject_prompts",
]
