"""What every layer agrees on: crop size, model kinds, latent sizes, byte budgets, the identity rule.

Plain Python: the app's first page, the results page and the file format read these without torch.
"""

from __future__ import annotations

CROP_SIZE = 128  # every face is coded as a 128x128 crop (faces.py makes them)
PIXELS = CROP_SIZE * CROP_SIZE
MODEL_KINDS = ("ae", "vae")  # the order is part of the .fcz format: its kind bit indexes this
LATENT_LADDER = (16, 32, 64, 128, 256, 512)  # the code sizes one nested model serves
CLASSIC_FORMATS = ("JPEG", "WEBP", "AVIF", "HEIF", "JXL")  # Pillow's names of the classic codecs compared
CLASSIC_NAMES = {
    "JPEG": "JPEG",
    "WEBP": "WebP",
    "AVIF": "AVIF",
    "HEIF": "HEIC",
    "JXL": "JPEG XL",
}  # as people read them
SAME_PERSON = 0.6  # dlib's published threshold on face-descriptor distance (identity.py measures it)

# Byte budgets: Compare's slider, the evaluation's budget table, and its rows on Benchmarks.
COMPARE_BUDGETS = (32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
EVALUATED_BUDGETS = (32, 64, 128, 256, 512, 1024, 2048)
SHOWN_BUDGETS = (64, 128, 256, 512, 1024, 2048)


def codec_name(codec: str) -> str:
    """What a person reads for a codec key: "AE", "VAE", "WebP", "HEIC", "JPEG XL"."""
    return codec.upper() if codec in MODEL_KINDS else CLASSIC_NAMES.get(codec, codec)


def bits_per_pixel(n_bytes: int) -> float:
    """A file's size in bits per pixel of the 128x128 crop."""
    return 8 * n_bytes / PIXELS
