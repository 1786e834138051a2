"""The classic codecs FaceComp is measured against: JPEG, WebP, AVIF, HEIC and JPEG XL,
each at the highest quality whose file fits a byte budget.

HEIC comes from pillow-heif and JPEG XL from pillow-jxl-plugin, registered with Pillow
by facecomp.faces (which opens every image).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from ..faces import load_image

CLASSIC_EXT = {"JPEG": "jpg", "WEBP": "webp", "AVIF": "avif", "HEIF": "heic", "JXL": "jxl"}
# Lossy quality range of each format: JPEG XL's quality 100 needs lossless=True (another mode).
QUALITY_RANGE = {"JXL": (0, 99)}
# Qualities above the binary search's boundary still tried. File size is not strictly
# monotone in quality: JPEG XL's file can shrink by several percent from one quality to the
# next, so a higher one may still fit; the other formats' dips are too small to matter.
LOOKAHEAD = {"JXL": 4}


def quality_range(fmt: str) -> tuple[int, int]:
    return QUALITY_RANGE.get(fmt, (0, 100))


@dataclass(frozen=True)
class ClassicResult:
    fmt: str
    quality: int
    data: bytes
    image: Image.Image
    max_bytes: int
    fits: bool  # False: even the lowest quality is over max_bytes, and this is that smallest file


def encode_classic(image: Image.Image, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    options = {"optimize": True} if fmt == "JPEG" else {}
    image.save(buf, format=fmt, quality=quality, **options)
    return buf.getvalue()


def classic_within(image: Image.Image, fmt: str, max_bytes: int) -> ClassicResult:
    """The highest quality of `fmt` whose file fits max_bytes.

    When even the lowest quality does not fit (common at our sizes), its file comes back
    anyway with fits=False, so a caller can say how many bytes it would need.
    """
    low, high = quality_range(fmt)
    lowest = encode_classic(image, fmt, low)
    if len(lowest) > max_bytes:
        return ClassicResult(fmt, low, lowest, load_image(lowest), max_bytes, fits=False)
    best = (low, lowest)
    lo, hi = low + 1, high
    while lo <= hi:  # file size (nearly) grows with quality: binary search
        mid = (lo + hi) // 2
        data = encode_classic(image, fmt, mid)
        if len(data) <= max_bytes:
            best, lo = (mid, data), mid + 1
        else:
            hi = mid - 1
    for quality in range(best[0] + 2, min(best[0] + 1 + LOOKAHEAD.get(fmt, 0), high) + 1):
        data = encode_classic(image, fmt, quality)  # best[0] + 1 is known not to fit
        if len(data) <= max_bytes:
            best = (quality, data)
    quality, data = best
    return ClassicResult(fmt, quality, data, load_image(data), max_bytes, fits=True)
