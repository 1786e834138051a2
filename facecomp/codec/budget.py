"""The byte budget: the best .fcz file of at most N bytes for one face.

Every model given, every latent size with its finest fitting quantiser, and the highest
fitting detail quality are candidates; the one that decodes closest to the face (PSNR) wins.
If nothing fits, the smallest file. Candidates that cannot or will not win are not decoded:
the detail layer when its base alone is over the budget, and the base-only files when the
detail picture is well ahead of the best any of them came near on validation faces.
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
# A base-only file is the face's code cut short and quantised: on validation faces none decoded
# more than 1.3% closer (squared error) than the whole code unquantised. A detail picture
# closer than this share of that error is ahead of every base-only file.
DETAIL_CLEARLY_AHEAD = 0.9


def highest_fitting(
    size_at: Callable[[int], int], low: int, high: int, max_bytes: int, growth: float, start: int | None = None
) -> int | None:
    """The highest q in [low, high] with size_at(q) <= max_bytes, for sizes that grow with q
    about geometrically, by `growth` a step; None when not even `low` fits.

    The first probe is at `start` (a guess, such as the last face's answer), else at `low`.
    Each next one goes where the sizes seen so far put the budget on a log scale (from the
    highest fitting quality with `growth` until a size over the budget is known, then between
    the two nearest sizes): the same answer as a binary search in fewer probes, each of which
    is an encode. size_at is called once per quality probed.
    """
    sizes: dict[int, int] = {}

    def fits(q: int) -> bool:
        sizes[q] = size_at(q)
        return sizes[q] <= max_bytes

    lo, hi = None, high + 1  # a quality that fits; the lowest known not to (high + 1: none yet)
    if start is not None and low < start <= high:
        lo, hi = (start, hi) if fits(start) else (None, start)
    if lo is None:
        if not fits(low):
            return None
        lo = low
    while hi - lo > 1:
        rate = math.log(sizes[hi] / sizes[lo]) / (hi - lo) if hi <= high else math.log(growth)
        ahead = math.log(max_bytes / sizes[lo]) / rate if rate > 0 else 1.0
        q = min(max(lo + int(ahead), lo + 1), hi - 1)
        lo, hi = (q, hi) if fits(q) else (lo, q)
    return lo


# The detail quality each budget's last search found, per detail layer: the next face's search
# starts there and usually ends after two probes. Shared by threads: a stale entry costs probes,
# and another answer only where file size shrinks as quality rises (it grows ~7% a step; on 560
# validation searches every file was the one a search from quality 0 finds).
_last_detail_quality: dict[tuple[bytes, int], int] = {}


def finest_detail_within(
    model: LoadedModel, image: torch.Tensor, code: np.ndarray, max_bytes: int
) -> tuple[Compressed, torch.Tensor] | None:
    """The highest detail quality whose file fits, with its picture; None when even the lowest
    does not fit."""
    cfg = model.detail_codec.layer.cfg
    if len(fcz.encode_base(model, code[: cfg.base_latent], cfg.base_q).data) >= max_bytes:
        return None  # a detail file holds this base and more: it cannot fit
    prepared = fcz.prepare_detail(model, image, code)
    probed: dict[int, tuple[Compressed, detail_coder.Analysed]] = {}

    def size_at(quality: int) -> int:
        analysed = fcz.analyse(model, prepared, quality)
        probed[quality] = (fcz.detail_file(model, prepared, analysed), analysed)
        return len(probed[quality][0].data)

    hint = (model.detail_codec.tag, max_bytes)
    start = _last_detail_quality.get(hint)
    quality = highest_fitting(size_at, 0, cfg.qualities - 1, max_bytes, DETAIL_GROWTH_PER_QUALITY, start)
    if quality is None:
        return None
    _last_detail_quality[hint] = quality
    found, analysed = probed[quality]
    return found, fcz.detail_picture(model, prepared, analysed)


def base_candidates(model: LoadedModel, code: np.ndarray, max_bytes: int) -> list[tuple[Compressed, torch.Tensor]]:
    """Per latent size the finest base file within max_bytes (else the smallest), each with a
    preview of its picture from one batched decode (pictures.preview_decode): a bfloat16
    preview's squared error is off by ~1e-6 against ~3e-3 for a face at 26 dB, so only near-ties
    rank differently."""
    network = model.network
    files = [fcz.compress_code(model, code[:latent], max_bytes=max_bytes) for latent in network.cfg.ladder]
    codes = torch.from_numpy(
        np.stack([entropy.dequantise(network, entropy.quantise(network, code[: f.latent], f.q)[0], f.q) for f in files])
    ).float()
    return list(zip(files, preview_decode(network, codes), strict=True))


def _squared_error(picture: torch.Tensor, image: torch.Tensor) -> float:
    return float(((picture - image) ** 2).mean())


def _detail_clearly_ahead(model: LoadedModel, image: torch.Tensor, code: np.ndarray, picture: torch.Tensor) -> bool:
    """Whether a detail picture beats every base-only file of this code (DETAIL_CLEARLY_AHEAD)."""
    whole = preview_decode(model.network, torch.from_numpy(code[None]).float())[0]
    return _squared_error(picture, image) <= DETAIL_CLEARLY_AHEAD * _squared_error(whole, image)


def best_within(models: Models, image: torch.Tensor, max_bytes: int) -> tuple[Compressed, torch.Tensor]:
    """The best file of at most `max_bytes` for one crop and the picture it decodes to."""
    candidates = []
    for model in models.values():
        code = fcz.encode_latent(model, image)
        detail = finest_detail_within(model, image, code, max_bytes) if model.detail_codec is not None else None
        if detail is not None:
            candidates.append(detail)
        if detail is None or not _detail_clearly_ahead(model, image, code, detail[1]):
            candidates += base_candidates(model, code, max_bytes)
    fitting = [c for c in candidates if len(c[0].data) <= max_bytes]
    if not fitting:
        smallest = min((file for file, _ in candidates), key=lambda f: len(f.data))
        return smallest, fcz.decompress(smallest.data, models)
    best, picture = min(fitting, key=lambda c: _squared_error(c[1], image))
    # A detail picture is already the decoder's; a base one is a preview, so decode it.
    return best, picture if best.detail_quality is not None else fcz.decompress(best.data, models)


def compress_within(models: Models, image: torch.Tensor, max_bytes: int) -> Compressed:
    """The best file of at most `max_bytes` for one crop (see best_within)."""
    return best_within(models, image, max_bytes)[0]
