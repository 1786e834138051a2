"""The app's demo logic without Streamlit: built-in photos, face choice, and one
"compare everything" function that the Home and Compare pages both call.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import codec, identity, metrics
from .classic import CLASSIC_EXT, CLASSIC_FORMATS, classic_name, classic_within
from .faces import FaceBox, centre_crop, crop_face, detect_faces, load_image
from .model import MODEL_KINDS, FaceAE
from .result import CROP_SIZE, Result
from .visual import display_png, fit_width, png_bytes, to_pil, to_tensor

COMPARE_WORKERS = 2  # threads one comparison runs its codecs on


def _astronaut() -> bytes:
    # The PNG inside scikit-image's package, read as it is: importing skimage.data and
    # re-encoding the picture took 0.15 s of the first page.
    spec = importlib.util.find_spec("skimage")
    return (Path(spec.origin).parent / "data" / "astronaut.png").read_bytes()


def _grace_hopper() -> bytes:
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes()


# Real photos that ship inside installed packages: the demo works offline and we commit no photo.
BUILTIN_PHOTOS: dict[str, Callable[[], bytes]] = {
    "Astronaut (scikit-image)": _astronaut,
    "Grace Hopper (matplotlib)": _grace_hopper,
}


@cache
def builtin_photo_bytes(name: str) -> bytes:
    """The encoded bytes of a built-in photo, by its display name: read once, shared by every
    session (each session holding its own copy of the astronaut was 20 MB with 22 visitors)."""
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


# Wide enough for the pages' photo with its boxes (800 px on Compare).
PREVIEW_WIDTH = 1000


@dataclass(frozen=True)
class KeptPhoto:
    """What the app keeps of a photo: a preview to draw the face boxes on, and every crop a
    visitor can pick, cut once. The photo itself (up to 40 megapixels, 120 MB decoded) is let
    go: four such uploads kept whole in the app's cache took the server from 1.0 to 1.6 GB."""

    preview: Image.Image
    width: int  # the photo's width: the boxes are in its pixels
    boxes: list[FaceBox]
    crops: tuple[bytes, ...]  # PNG of each face's crop in box order; without a face, the centred crop

    def crop_png(self, face: int | None) -> bytes:
        """The crop of face number `face` (past the last face: the last one); on a photo without
        faces, the centred crop for any `face`. None on a photo with faces raises ValueError:
        keep_photo cuts only the crops a visitor can pick, and no centred one among them."""
        if face is None and self.boxes:
            raise ValueError("this photo has faces: pick one by number; only a photo without faces has a centred crop")
        return self.crops[0 if face is None else min(face, len(self.crops) - 1)]


def keep_photo(data: bytes) -> KeptPhoto:
    """Load, detect and cut the crops; raises faces.ImageLoadError for unreadable or oversized files."""
    photo = open_photo(data)
    faces = range(len(photo.boxes)) if photo.boxes else [None]
    crops = tuple(png_bytes(choose_crop(photo, face)) for face in faces)
    return KeptPhoto(fit_width(photo.image, PREVIEW_WIDTH), photo.image.width, photo.boxes, crops)


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
        png=display_png(image),
    )


def over_budget_note(n_bytes: int, max_bytes: int) -> str:
    ratio = n_bytes / max_bytes
    return f"needs {n_bytes:,} bytes, {ratio:.{1 if ratio >= 1.1 else 2}f}× the budget"


def _mark_over(res: Result, max_bytes: int) -> Result:
    """Flag a file that does not fit: its picture and numbers stay, the note says what it needs."""
    if res.n_bytes is not None and res.n_bytes > max_bytes:
        res.extra.update(over_budget=True, needed_bytes=res.n_bytes)
        res.note = over_budget_note(res.n_bytes, max_bytes)
    return res


def measure_identity(results: Sequence[Result]) -> None:
    """Set the identity of each result after the first (the original): the dlib descriptor
    distance of its picture to the original's (~7 ms a picture). Without dlib or its model
    files, identities stay None."""
    shown = [r for r in results if r.image is not None]
    if len(shown) < 2:
        return
    try:
        found = identity.descriptors([r.image for r in shown])
    except ImportError:
        return
    for res, dist in zip(
        shown[1:], identity.distances(found[1:], np.broadcast_to(found[0], found[1:].shape)), strict=True
    ):
        res.identity = float(dist)


def background_thread(torch_threads: int) -> None:
    """Set up a worker thread for long work (a comparison's codecs, the app's heavy jobs): the
    given torch threads, and a lower priority (nice 10, Linux schedules threads one by one), so
    that in the app a visitor's slider move is not queued behind another visitor's comparison."""
    torch.set_num_threads(torch_threads)
    if sys.platform.startswith("linux"):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


_codec_pools = threading.local()


def _codec_pool() -> ThreadPoolExecutor:
    """The calling thread's codec threads, kept for the life of the process. glibc gives each
    new thread a malloc arena in turn: threads made for each comparison spread its memory peaks
    over every arena of the app server, and each arena kept its own high-water mark (measured
    with scripts/load_test.py). One pool per caller keeps a comparison's concurrency as it was."""
    if not hasattr(_codec_pools, "pool"):
        _codec_pools.pool = ThreadPoolExecutor(COMPARE_WORKERS, "codec", initializer=background_thread, initargs=(1,))
    return _codec_pools.pool


def _with_torch_threads(threads: int, job: Callable[[], Result]) -> Result:
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)  # the caller's setting, per thread
    return job()


def compare(
    crop: Image.Image,
    models: Mapping[str, FaceAE],
    max_bytes: int,
    classic: Sequence[str] = CLASSIC_FORMATS,
    latent: int | None = None,
    stem: str = "face",
    measure: bool = True,
) -> list[Result]:
    """The crop, then AE and VAE through the real codec, then each classic codec, every file
    at most `max_bytes` bytes.

    AE and VAE: with `latent` None the budget picks the latent size, quantiser and detail
    layer (codec.best_within); otherwise the finest quantiser at that latent size that
    fits. Classic codecs run at the highest quality that fits. A codec that cannot fit shows
    its smallest file, flagged extra["over_budget"] with a note of the bytes it needs.
    measure: also the identity distance of every picture to the original (dlib, slow).
    """
    crop = crop.convert("RGB").resize((CROP_SIZE, CROP_SIZE)) if crop.size != (CROP_SIZE, CROP_SIZE) else crop
    crop_t = to_tensor(crop)
    lossless = png_bytes(crop)
    results = [
        Result(
            "Original", crop, len(lossless), data=lossless, file_name=f"{stem}.png", note="lossless PNG", png=lossless
        )
    ]

    def model_result(kind: str) -> Result:
        with torch.inference_mode():
            if latent is None:
                packed, picture = codec.best_within({kind: models[kind]}, crop_t, max_bytes)
            else:
                packed = codec.compress(models[kind], crop_t, latent, max_bytes=max_bytes)
                picture = codec.decompress(packed.data, dict(models))
        label = packed.label
        file_name = f"{stem}_{kind}_{label.replace('latent ', '').replace(' + detail ', 'd')}.fcz"
        res = _scored(kind.upper(), crop_t, to_pil(picture), packed.data, file_name, label)
        res.extra["estimated_bytes"] = packed.estimated_bits / 8
        return _mark_over(res, max_bytes)

    def classic_result(fmt: str) -> Result:
        # A copy each: Pillow's save() keeps its options on the image object, so two threads
        # saving one image swap qualities (measured: "quality 100" files of 495 bytes).
        found = classic_within(crop.copy(), fmt, max_bytes)
        file_name = f"{stem}_q{found.quality}.{CLASSIC_EXT.get(fmt, fmt.lower())}"
        res = _scored(classic_name(fmt), crop_t, found.image, found.data, file_name, f"quality {found.quality}")
        return _mark_over(res, max_bytes)

    jobs = [partial(model_result, kind) for kind in MODEL_KINDS if kind in models]
    jobs += [partial(classic_result, fmt) for fmt in classic]
    # The searches are independent and torch and the image codecs release the GIL: on two
    # cores one visitor waits about half as long.
    threads = torch.get_num_threads()
    results += _codec_pool().map(lambda job: _with_torch_threads(threads, job), jobs)
    if measure:
        measure_identity(results)
    return results
