"""A corpus of hostile uploads, generated on the fly (nothing large is committed).

Each entry is (name, bytes, mime). The photos that carry faces are built from the
public-domain photos that installed packages ship (scikit-image's astronaut,
matplotlib's Grace Hopper).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from facecomp.comparison import builtin_photo_bytes

ASTRONAUT = "Astronaut (scikit-image)"
GRACE = "Grace Hopper (matplotlib)"


def _photo(name: str = ASTRONAUT) -> Image.Image:
    return Image.open(io.BytesIO(builtin_photo_bytes(name))).convert("RGB")


def _save(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decompression_bomb(side: int = 30_000) -> bytes:
    """A 1-bit side x side PNG of zeros: about 100 KB on disk, 900 megapixels decoded."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def sixteen_bit_png() -> bytes:
    grey = np.asarray(_photo().convert("L"), dtype=np.uint16) * 257
    return _save(Image.fromarray(grey), "PNG")


def palette_png_with_transparency() -> bytes:
    img = _photo().quantize(64)
    img.info["transparency"] = 0
    return _save(img, "PNG", transparency=0)


def animated(fmt: str) -> bytes:
    frames = [_photo(), _photo(GRACE).resize(_photo().size)]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=200, loop=0)


def exif_rotated_jpeg() -> bytes:
    """The photo stored sideways with EXIF orientation 6 (display rotated 90 degrees clockwise)."""
    img = _photo().transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(img, "JPEG", exif=exif.tobytes(), quality=90)


def eight_faces() -> bytes:
    """Eight copies of two real faces in a 4 x 2 sheet."""
    tiles = [_photo().resize((256, 256)), _photo(GRACE).resize((256, 256))]
    sheet = Image.new("RGB", (4 * 256, 2 * 256), "white")
    for i in range(8):
        sheet.paste(tiles[i % 2], ((i % 4) * 256, (i // 4) * 256))
    return _save(sheet, "JPEG", quality=90)


def corpus() -> list[tuple[str, bytes, str]]:
    jpeg = _save(_photo(), "JPEG", quality=90)
    png = _save(_photo(), "PNG")
    return [
        ("empty.jpg", b"", "image/jpeg"),
        ("text.jpg", b"This is a text file, not a photo.\n" * 20, "image/jpeg"),
        ("truncated.jpg", jpeg[: len(jpeg) // 2], "image/jpeg"),
        ("truncated.png", png[: len(png) // 2], "image/png"),
        ("one_pixel.png", _save(Image.new("RGB", (1, 1), (200, 150, 120)), "PNG"), "image/png"),
        ("bomb.png", decompression_bomb(), "image/png"),
        ("sixteen_bit.png", sixteen_bit_png(), "image/png"),
        ("cmyk.jpg", _save(_photo().convert("CMYK"), "JPEG", quality=90), "image/jpeg"),
        ("palette_transparent.png", palette_png_with_transparency(), "image/png"),
        ("animated.gif", animated("GIF"), "image/gif"),
        ("animated.webp", animated("WEBP"), "image/webp"),
        ("exif_rotated.jpg", exif_rotated_jpeg(), "image/jpeg"),
        ("grey.png", _save(_photo().convert("L"), "PNG"), "image/png"),
        ("no_face.png", _save(Image.new("RGB", (300, 200), (120, 160, 200)), "PNG"), "image/png"),
        ("eight_faces.jpg", eight_faces(), "image/jpeg"),
    ]
