"""Data: the demo's procedural image domains and their oracles, the few-shot and full sets drawn
from them, and image folders on disk."""
from unidad.data.datasets import fewshot_modes, make_fewshot, make_full
from unidad.data.domains import DOMAINS, Domain, get_domain, oracle_report
from unidad.data.folders import ImageFolderError, list_image_files, load_image_folder, write_image_folder

__all__ = [
    "DOMAINS",
    "Domain",
    "ImageFolderError",
    "fewshot_modes",
    "get_domain",
    "list_image_files",
    "load_image_folder",
    "make_fewshot",
    "make_full",
    "oracle_report",
    "write_image_folder",
]
