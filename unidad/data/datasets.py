"""The image sets drawn from a demo domain: nested k-shot training sets and the full reference set.

Like the domains' samples, every set is deterministic from its seed.
"""
from __future__ import annotations

import zlib

import numpy as np

from unidad.data.domains import BASE_SIZE, Domain, check_count, check_image_size, get_domain

FEWSHOT_CANON = 10  # the k-shot sets for k <= 10 are prefixes of one 10-image set
FEWSHOT_MODE_SHARE = 2 / 3  # share of a domain's modes that its 10-shot set shows


def fewshot_modes(domain: str | Domain, seed: int = 0) -> list[int]:
    """The modes the canonical 10-shot set shows, in the order its images cycle through them.

    About 2/3 of the modes, chosen so that every value of each factor (every shape kind and every
    colour, say) appears: the missing modes are new combinations of things the shots do show.
    """
    dom = get_domain(domain)
    n_modes = len(dom.modes)
    shown = min(FEWSHOT_CANON, max(2, int(round(FEWSHOT_MODE_SHARE * n_modes))))
    entropy = [zlib.crc32(dom.name.encode()), zlib.crc32(b"fewshot-modes"), int(seed)]
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    outer, inner = dom.factor_sizes
    for _ in range(1000):
        chosen = rng.permutation(n_modes)[:shown]
        if len(set(chosen // inner)) == outer and len(set(chosen % inner)) == inner:
            break
    return [int(m) for m in chosen]


def make_fewshot(domain: str | Domain, k: int, seed: int = 0, image_size: int = BASE_SIZE) -> np.ndarray:
    """The k-shot training set, uint8 [k,H,W,3].

    Like a real few-shot set it shows several modes but not all: the first 10 images cycle through
    fewshot_modes() (2/3 of the modes); images past the 10th come from the full distribution.
    Sets are nested: make_fewshot(d, k) is a prefix of make_fewshot(d, k') for k < k'.
    """
    dom = get_domain(domain)
    k = check_count(k, "k")
    if k == 0:
        raise ValueError("k must be >= 1 for a few-shot set")
    u = dom.uniforms(k, seed, "fewshot")
    shown = fewshot_modes(dom, seed)
    modes = dom.modes_from_uniform(u[:, 0])
    head = min(k, FEWSHOT_CANON)
    modes[:head] = [shown[i % len(shown)] for i in range(head)]
    return dom.render(modes, u, check_image_size(image_size))


def make_full(domain: str | Domain, n: int = 5000, seed: int = 0, image_size: int = BASE_SIZE) -> np.ndarray:
    """The 'full data set' of a domain, the reference for the metrics: n images from all modes."""
    dom = get_domain(domain)
    n = check_count(n, "n")
    u = dom.uniforms(n, seed, "full")
    return dom.render(dom.modes_from_uniform(u[:, 0]), u, check_image_size(image_size))
