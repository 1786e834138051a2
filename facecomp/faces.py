"""Robust photo loading, face detection and the canonical 128x128 face crop.

One function, `canonical_crop`, serves training data and uploads alike, so the
models always see faces framed the same way.

The framing is the tightest the four training sets share: a square about as wide
as the face (forehead to chin), the framing UTKFace already has. Every set can
supply it without padding; looser photos (LFW, CelebA) are simply cut tighter.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import pillow_heif
import pillow_jxl  # noqa: F401  (registers the "JXL" format with Pillow)
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from .spec import CROP_SIZE

# Phones upload HEIC and some cameras JPEG XL: Pillow opens both once registered.
pillow_heif.register_heif_opener()

# Crop side as a multiple of the Haar box width, and how far below the box centre
# the crop centre sits (Haar boxes start high on the forehead). Chosen so that a
# UTKFace photo, where the face fills the frame, is cropped to almost all of itself.
CROP_SCALE = 0.9
CROP_SHIFT_DOWN = 0.05
# Tight crops (UTKFace) are found far more often once the face is not touching
# the border, so detection runs on a copy padded by this fraction per side.
DETECT_PAD = 0.25
MAX_PIXELS = 40_000_000  # decompression-bomb limit for uploads
_CASCADE = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"


class ImageLoadError(ValueError):
    """The input could not be read as a photo (corrupt, unsupported, too large)."""


class NoFaceFound(LookupError):
    """The detector found no face; the caller may fall back to `centre_crop`."""


@dataclass(frozen=True)
class FaceBox:
    """A detected face in original-image pixel coordinates."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h


def load_image(source: str | Path | bytes | BinaryIO, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open any photo as 8-bit RGB: EXIF orientation applied, alpha flattened on white,
    16-bit images scaled (not clipped), the first frame of an animation.

    Raises ImageLoadError with a sentence a user can read for empty, foreign, truncated
    or oversized files.
    """
    if isinstance(source, str | Path):
        try:
            source = Path(source).read_bytes()
        except OSError as err:  # missing, unreadable, a folder: as Image.open(path) reported it
            raise ImageLoadError(f"cannot read the image: {err}") from err
    if isinstance(source, bytes):
        if not source:
            raise ImageLoadError("the file is empty")
        source = io.BytesIO(source)
    # Opened without `with` and changed in place, so a large photo is held decoded only once: a
    # `with` would need a copy to outlive it (closing the file frees the decoded pixels), and
    # converting RGB to RGB would make another. The source is in memory, so no file is left open.
    try:
        img = Image.open(source)
        if img.width * img.height > max_pixels:
            raise ImageLoadError(f"image is {img.width}x{img.height} pixels; the limit is {max_pixels:,} pixels")
        img.load()
        ImageOps.exif_transpose(img, in_place=True)
    except UnidentifiedImageError as err:
        raise ImageLoadError("not an image file, or a format FaceComp cannot read") from err
    except Image.DecompressionBombError as err:
        raise ImageLoadError(f"image has too many pixels (the limit is {max_pixels:,})") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageLoadError(f"cannot read the image: {err}") from err
    img = _in_srgb(img)
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit greyscale: Pillow's RGB conversion clips at 255, so scale to 8 bits first.
        wide = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(wide / (257.0 if wide.max() > 255 else 1.0), 0, 255).round().astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, (255, 255, 255))
        rgb.paste(rgba, mask=rgba.getchannel("A"))
    else:
        rgb = img if img.mode == "RGB" else img.convert("RGB")
    # No metadata rides along: an embedded profile (3 KB in the astronaut's PNG) would go into
    # every classic codec's file and count against its byte budget.
    rgb.info = {}
    return rgb


@cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _in_srgb(img: Image.Image) -> Image.Image:
    """An RGB or CMYK photo with an embedded colour profile (a phone's Display P3, a print
    CMYK) converted to sRGB, which is what every codec here and the browser assume."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "CMYK"):
        return img
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if img.mode == "RGB":  # in place: no second copy of a large photo
            ImageCms.profileToProfile(img, source, _srgb(), inPlace=True)
            return img
        return ImageCms.profileToProfile(img, source, _srgb(), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return img  # a damaged profile: the pixels as stored


# One classifier per thread: OpenCV's CascadeClassifier is not thread-safe, and the app
# serves every user's session from its own thread: shared, concurrent uploads get wrong
# boxes and can crash the server.
_local = threading.local()


def _cascade() -> cv2.CascadeClassifier:
    detector = getattr(_local, "detector", None)
    if detector is None:
        detector = cv2.CascadeClassifier(_CASCADE)
        if detector.empty():
            raise RuntimeError(f"OpenCV could not load its face cascade {_CASCADE}")
        _local.detector = detector
    return detector


def detect_faces(img: Image.Image) -> list[FaceBox]:
    """Every frontal face the Haar cascade finds, largest first."""
    gray = np.asarray(img.convert("L"))
    height, width = gray.shape
    # Large photos are detected on a copy at most 640 px wide: faster, same boxes.
    scale = min(1.0, 640 / max(height, width))
    if scale < 1.0:
        gray = cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    pad = round(DETECT_PAD * max(gray.shape))
    padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    min_side = max(24, min(gray.shape) // 8)
    found = _cascade().detectMultiScale(padded, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    boxes = [
        FaceBox(round((x - pad) / scale), round((y - pad) / scale), round(w / scale), round(h / scale))
        for x, y, w, h in found
    ]
    return sorted(boxes, key=lambda b: b.area, reverse=True)


def crop_square(box: FaceBox) -> tuple[float, float, float]:
    """Centre x, centre y and side of the canonical square for a face box."""
    side = CROP_SCALE * box.w
    return box.x + box.w / 2, box.y + box.h / 2 + CROP_SHIFT_DOWN * box.w, side


def _cut(img: Image.Image, cx: float, cy: float, side: float, size: int) -> Image.Image:
    side = max(side, 1.0)
    if side <= img.width and side <= img.height:
        # Slide the square inside the photo rather than invent pixels.
        left = min(max(cx - side / 2, 0.0), img.width - side)
        top = min(max(cy - side / 2, 0.0), img.height - side)
    else:
        # Only a square larger than the photo is padded, by repeating edge pixels.
        pad = int(np.ceil(side))
        img = Image.fromarray(np.pad(np.asarray(img), ((pad, pad), (pad, pad), (0, 0)), mode="edge"))
        left, top = cx - side / 2 + pad, cy - side / 2 + pad
    return img.resize((size, size), Image.Resampling.LANCZOS, box=(left, top, left + side, top + side))


def crop_face(img: Image.Image, box: FaceBox, size: int = CROP_SIZE) -> Image.Image:
    """The canonical size x size crop around one detected face."""
    return _cut(img, *crop_square(box), size)


def centre_crop(img: Image.Image, size: int = CROP_SIZE) -> Image.Image:
    """The largest centred square, for photos where no face was found."""
    side = min(img.width, img.height)
    return _cut(img, img.width / 2, img.height / 2, side, size)


def canonical_crop(img: Image.Image, size: int = CROP_SIZE) -> tuple[Image.Image, FaceBox]:
    """Crop the largest face; raises NoFaceFound when there is none."""
    boxes = detect_faces(img)
    if not boxes:
        raise NoFaceFound("no face found in the image")
    return crop_face(img, boxes[0], size), boxes[0]


def source_side(box: FaceBox) -> float:
    """Side in source pixels of the square that `crop_face` resizes to 128."""
    return crop_square(box)[2]


def crop_or_centre(img: Image.Image, size: int = CROP_SIZE) -> tuple[Image.Image, FaceBox | None]:
    """The canonical crop of the largest face, or a centred crop (box None) when there is none."""
    try:
        return canonical_crop(img, size)
    except NoFaceFound:
        return centre_crop(img, size), None
