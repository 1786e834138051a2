"""The app's demo logic without Streamlit: built-in photos, face choice, and one
"compare everything" function that the Home and Compare pages both call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from . import codec, metrics
from .classic import CLASSIC_EXT, CLASSIC_FORMATS, classic_name, classic_within
from .faces import CROP_SIZE, FaceBox, centre_crop, crop_face, detect_faces, load_image
from .model import MODEL_KINDS, FaceAE
from .visual import png_bytes, to_pil, to_tensor

PIXELS = CROP_SIZE * CROP_SIZE


def _astronaut() -> bytes:
    from skimage import data

    return png_bytes(Image.fromarray(data.astronaut()))


def _grace_hopper() -> bytes:
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes()


# Real photos that ship inside installed packages: the demo works offline and we commit no photo.
BUILTIN_PHOTOS: dict[str, Callable[[], bytes]] = {
    "Astronaut (scikit-image)": _astronaut,
    "Grace Hopper (matplotlib)": _grace_hopper,
}


def builtin_photo_bytes(name: str) -> bytes:
    """The encoded bytes of a built-in photo, by its display name."""
    return BUILTIN_PHOTOS[name]()


@dataclass
class Photo:
    """A loaded photo and the faces found in it (largest first)."""

    image: Image.Image
    boxes: list[FaceBox]


def open_photo(data: bytes) -> Photo:
    """Load and detect; raises faces.ImageLoadError for unreadable or oversized files."""
    image = load_image(data)
    return Photo(image, detect_faces(image))


def choose_crop(photo: Photo, face: int | None) -> Image.Image:
    """The canonical crop of face number `face`, or a centred crop when `face` is None."""
    if face is None or not photo.boxes:
        return centre_crop(photo.image)
    return crop_face(photo.image, photo.boxes[min(face, len(photo.boxes) - 1)])


@dataclass
class Result:
    """One picture in the comparison row and what it cost."""

    name: str
    image: Image.Image | None  # None: the codec could not fit the budget
    n_bytes: int | None = None
    psnr: float | None = None
    ssim: float | None = None
    data: bytes | None = None  # the encoded file (.fcz, .jpg, ...)
    file_name: str | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def bpp(self) -> float | None:
        return None if self.n_bytes is None else 8 * self.n_bytes / PIXELS


def _scored(name: str, crop_t: torch.Tensor, image: Image.Image, data: bytes, file_name: str, note: str) -> Result:
    out = to_tensor(image)
    return Result(
        name=name,
        image=image,
        n_bytes=len(data),
        psnr=metrics.psnr(crop_t, out),
        ssim=metrics.ssim(crop_t, out),
        data=data,
        file_name=file_name,
        note=note,
    )


def compare(
    crop: Image.Image,
    latent: int,
    models: Mapping[str, FaceAE],
    classic: Sequence[str] = CLASSIC_FORMATS,
    budget: int | None = None,
    stem: str = "face",
) -> list[Result]:
    """The crop, then AE and VAE through the real codec, then each classic codec at the
    highest quality that fits `budget` bytes (default: the larger of the AE and VAE files,
    which favours the classic codecs slightly)."""
    crop = crop.convert("RGB").resize((CROP_SIZE, CROP_SIZE)) if crop.size != (CROP_SIZE, CROP_SIZE) else crop
    crop_t = to_tensor(crop)
    lossless = png_bytes(crop)
    results = [Result("Original", crop, len(lossless), data=lossless, file_name=f"{stem}.png", note="lossless PNG")]
    learned = []
    with torch.inference_mode():
        for kind in MODEL_KINDS:
            if kind not in models:
                continue
            packed = codec.compress(models[kind], crop_t, latent)
            image = to_pil(codec.decompress(packed.data, dict(models)))
            res = _scored(kind.upper(), crop_t, image, packed.data, f"{stem}_{kind}{latent}.fcz", f"latent {latent}")
            res.extra["estimated_bytes"] = packed.estimated_bits / 8
            results.append(res)
            learned.append(len(packed.data))
    if budget is None:
        budget = max(learned) if learned else len(lossless)
    for fmt in classic:
        name = classic_name(fmt)
        found = classic_within(crop, fmt, budget)
        if not found.fits:
            note = f"needs {len(found.data):,} bytes, {found.over_budget:.1f}× the {budget:,}-byte budget"
            results.append(Result(name, None, note=note, extra={"needed_bytes": len(found.data)}))
        else:
            file_name = f"{stem}_q{found.quality}.{CLASSIC_EXT.get(fmt, fmt.lower())}"
            results.append(_scored(name, crop_t, found.image, found.data, file_name, f"quality {found.quality}"))
    return results


def png_name(result: Result) -> str:
    """A PNG file name for a result's decoded picture."""
    base = (result.file_name or result.name).rsplit(".", 1)[0]
    return f"{base}.png"


def card_rows(cards: Mapping[str, dict]) -> list[dict]:
    """One row per model card for the Home page's table of loaded weights."""
    rows = []
    for kind, card in cards.items():
        val = card.get("validation_psnr") or {}
        row = {
            "model": kind.upper(),
            "latent sizes": ", ".join(str(k) for k in card.get("latent_sizes", [])),
            # A fine-tuned model's totals include the run it started from.
            "epochs": card.get("total_epochs", card.get("epochs")),
            "training minutes": card.get("total_training_minutes", card.get("training_minutes")),
            "hardware": card.get("hardware"),
        }
        for size in sorted(val, key=int):
            row[f"val PSNR @{size}"] = None if val[size] is None else round(float(val[size]), 2)
        row["SHA-256"] = str(card.get("sha256", ""))[:12]
        rows.append(row)
    return rows
