"""Pictures for people: tensor <-> PIL, crisp upscaling, face boxes, error heat maps.

Pure PIL/numpy/torch (no Streamlit), so the app and scripts share one look.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .faces import FaceBox

DISPLAY_SIZE = 512  # 128 x 4: an exact integer factor keeps every pixel square
BOX_COLOURS = ("#00e676", "#ffca28", "#40c4ff", "#ff4081", "#b388ff")


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) float tensor in [0, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def to_pil(x: torch.Tensor) -> Image.Image:
    """(3, H, W) or (1, 3, H, W) tensor in [0, 1] -> PIL RGB (rounded, not truncated)."""
    if x.dim() == 4:
        x = x[0]
    arr = (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


def png_bytes(img: Image.Image, compress_level: int = 6) -> bytes:
    """PNG at zlib level 6 (Pillow's default): the size quoted for a lossless original."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def display_png(img: Image.Image) -> bytes:
    """A PNG to show and download, whose size nobody quotes: zlib level 1 encodes several times
    faster than level 6 for a slightly larger file, and a comparison makes seven."""
    return png_bytes(img, compress_level=1)


def upscale(img: Image.Image, size: int = DISPLAY_SIZE) -> Image.Image:
    """Nearest-neighbour enlargement: the audience sees the codec's real pixels, not a blur."""
    if img.width == img.height == size:
        return img
    return img.resize((size, size), Image.Resampling.NEAREST)


def enlarge(img: Image.Image, factor: int) -> Image.Image:
    """Nearest-neighbour enlargement by an integer factor (any aspect ratio)."""
    return img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)


def fit_width(img: Image.Image, width: int = 900) -> Image.Image:
    """A large photo shrunk for display, not about pixels: first by the largest whole factor
    that keeps it at least `width` wide (Image.reduce, a box filter several times faster than
    resampling), then bilinear to the width."""
    if img.width <= width:
        return img
    if (factor := img.width // width) >= 2:
        img = img.reduce(factor)
    if img.width > width:
        img = img.resize((width, round(img.height * width / img.width)), Image.Resampling.BILINEAR)
    return img


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def draw_boxes(
    img: Image.Image,
    boxes: Sequence[FaceBox],
    selected: int | None = 0,
    width: int = 900,
    source_width: int | None = None,
) -> Image.Image:
    """The photo, shrunk to `width`, with every face box numbered; the selected one drawn thicker.

    source_width: img is a preview of a photo this wide, in whose pixels the boxes are.
    """
    shown = fit_width(img, width)
    if shown is img:  # drawn on a copy: img is often a cached preview
        shown = img.copy()
    scale = shown.width / (source_width or img.width)
    draw = ImageDraw.Draw(shown)
    line = max(2, round(shown.width / 250))
    font = _font(max(14, round(shown.width / 30)))
    for i, box in enumerate(boxes):
        colour = BOX_COLOURS[i % len(BOX_COLOURS)]
        x0, y0 = box.x * scale, box.y * scale
        x1, y1 = (box.x + box.w) * scale, (box.y + box.h) * scale
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=line * (2 if i == selected else 1))
        label = str(i + 1)
        text_h = draw.textbbox((0, 0), label, font=font)[3]
        # Number above the box, or inside it when the box touches the top edge.
        tx, ty = x0 + line, y0 - text_h - 2 * line if y0 >= text_h + 2 * line else y0 + line
        bbox = draw.textbbox((tx, ty), label, font=font)
        draw.rectangle(bbox, fill=colour)
        draw.text((tx, ty), label, fill="black", font=font)
    return shown


def error_map(original: Image.Image, recon: Image.Image, max_error: float = 0.25) -> Image.Image:
    """Per-pixel absolute error (mean over RGB) as an 'inferno' heat map; `max_error` maps to white-yellow."""
    from matplotlib import colormaps

    a = np.asarray(original.convert("RGB"), dtype=np.float32) / 255.0
    b = np.asarray(recon.convert("RGB").resize(original.size), dtype=np.float32) / 255.0
    err = np.abs(a - b).mean(axis=2) / max_error
    rgba = colormaps["inferno"](np.clip(err, 0.0, 1.0))
    return Image.fromarray((rgba[..., :3] * 255).round().astype(np.uint8), "RGB")
