"""The byte budget: the best .fcz file of at most N bytes for one face.

Every model given, every latent size with its finest fitting quantiser, and the highest
fitting detail quality are tried; the one that decodes closest to the face (PSNR) wins. If
nothing fits, the smallest file.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from . import detail_coder, entropy, fcz
from .fcz import LoadedModel, Models
from .format import Compressed
from .pictures import preview_decode

# A detail file grows by about 7% from one quality to the next: the rate highest_fitting
# assumes until it knows a size over the budget.
DETAIL_GROWTH_PER_QUALITY = 1.07


def highest_fitting(size_at: Callable[[int], int], low: int, high: int, max_bytes: int, growth: float) -> int | None:
    """The highest q in [low, high] with size_at(q) <= max_bytes, for sizes that grow with q
    about geometrically, by `growth` a step; None when not even `low` fits.

    Each probe goes where the sizes seen so far put the budget on a log scale (from `low` with
    `growth` until a size over the budget is known, then between the two nearest sizes): the
    same answer as a binary search in fewer probes, each of which is an encode. size_at is
    called once per quality probed.
    """
    sizes: dict[int, int] = {}

    def fits(q: int) -> bool:
        sizes[q] = size_at(q)
        return sizes[q] <= max_bytes

    if not fits(low):
        return None
    lo, hi = low, high + 1  # lo fits; hi is the lowest quality known not to (high + 1: none yet)
    while hi - lo > 1:
        rate = math.log(sizes[hi] / sizes[lo]) / (hi - lo) if hi <= high else math.log(growth)
        ahead = math.log(max_bytes / sizes[lo]) / rate if rate > 0 else 1.0
        q = min(max(lo + int(ahead), lo + 1), hi - 1)
        lo, hi = (q, hi) if fits(q) else (lo, q)
    return lo


def finest_detail_within(
    model: LoadedModel, image: torch.Tensor, code: np.ndarray, max_bytes: int
) -> tuple[Compressed, torch.Tensor] | None:
    """The highest detail quality whose file fits, with its picture; None when even the lowest
    does not fit."""
    prepared = fcz.prepare_detail(model, image, code)
    probed: dict[int, tuple[Compressed, detail_coder.Analysed]] = {}

    def size_at(quality: int) -> int:
        analysed = fcz.analyse(model, prepared, quality)
        probed[quality] = (fcz.detail_file(model, prepared, analysed), analysed)
        return len(probed[quality][0].data)

    top = model.detail_codec.layer.cfg.qualities - 1
    quality = highest_fitting(size_at, 0, top, max_bytes, DETAIL_GROWTH_PER_QUALITY)
    if quality is None:
        return None
    found, analysed = probed[quality]
    return found, fcz.detail_picture(model, prepared, analysed)


def base_candidates(model: LoadedModel, code: np.ndarray, max_bytes: int) -> list[tuple[Compressed, torch.Tensor]]:
    """Per latent size the finest base file within max_bytes (else the smallest), each with a
    preview of its picture from one batched bfloat16 decode: a preview's squared error is off
    by ~1e-6 against ~3e-3 for a face at 26 dB, so only near-ties rank differently."""
    network = model.network
    files = [fcz.compress_code(model, code[:latent], max_bytes=max_bytes) for latent in network.cfg.ladder]
    codes = torch.from_numpy(
        np.stack([entropy.dequantise(network, entropy.quantise(network, code[: f.latent], f.q)[0], f.q) for f in files])
    ).float()
    return list(zip(files, preview_decode(network, codes), strict=True))


def best_within(models: Models, image: torch.Tensor, max_bytes: int) -> tuple[Compressed, torch.Tensor]:
    """The best file of at most `max_bytes` for one crop and the picture it decodes to."""
    candidates = []
    for model in models.values():
        code = fcz.encode_latent(model, image)
        candidates += base_candidates(model, code, max_bytes)
        if model.detail_codec is not None and (found := finest_detail_within(model, image, code, max_bytes)):
            candidates.append(found)
    fitting = [c for c in candidates if len(c[0].data) <= max_bytes]
    if not fitting:
        smallest = min((file for file, _ in candidates), key=lambda f: len(f.data))
        return smallest, fcz.decompress(smallest.data, models)
    best, picture = min(fitting, key=lambda c: float(((c[1] - image) ** 2).mean()))
    # A detail picture is already the decoder's; a base one is a bfloat16 preview, so decode it.
    return best, picture if best.detail_quality is not None else fcz.decompress(best.data, models)


def compress_within(models: Models, image: torch.Tensor, max_bytes: int) -> Compressed:
    """The best file of at most `max_bytes` for one crop (see best_within)."""
    return best_within(models, image, max_bytes)[0]
