"""The comparison, without Streamlit: built-in photos, face choice, and one
"compare everything" function that the Home and Compare pages both call.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cache, partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .codec.codecs import Codec, Encoded, codecs_for
from .codec.fcz import LoadedModel, Models, decompress
from .faces import FaceBox, centre_crop, crop_face, detect_faces, load_image
from .measure import identity, metrics, realism
from .nets.refiner import Refiner, sharpen
from .result import Result
from .spec import CLASSIC_FORMATS, CROP_SIZE
from .visual import display_png, fit_width, png_bytes, to_pil, to_tensor

COMPARE_WORKERS = 2  # threads one comparison runs its codecs on


def _astronaut() -> bytes:
    # The PNG inside scikit-image's package, read as it is: importing skimage.data and
    # re-encoding the picture would add ~0.15 s to the first page.
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
    session, so its memory does not grow with the number of visitors."""
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


# Wide enough for the pages' photo with its boxes; a 1920-pixel photo halves to it exactly.
PREVIEW_WIDTH = 960


@dataclass(frozen=True)
class KeptPhoto:
    """What the app keeps of a photo: a preview to draw the face boxes on, and every crop a
    visitor can pick, cut once. The photo itself (up to 40 megapixels, 120 MB decoded) is let
    go: kept whole in the app's cache, every large upload would hold its decoded pixels."""

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


def _scored(codec: Codec, crop_t: torch.Tensor, found: Encoded, stem: str) -> Result:
    image = to_pil(found.picture)
    out = to_tensor(image)
    res = Result(
        name=codec.name,
        image=image,
        n_bytes=len(found.data),
        psnr=metrics.psnr(crop_t, out),
        ssim=metrics.ssim(crop_t, out),
        data=found.data,
        file_name=f"{stem}_{found.suffix}",
        note=found.label,
        png=display_png(image),
    )
    if "estimated_bytes" in found.details:
        res.extra["estimated_bytes"] = found.details["estimated_bytes"]
    return res


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
    new thread a malloc arena in turn: threads made for each comparison would spread its memory
    peaks over every arena of the app server, each keeping its own high-water mark. One pool per
    caller keeps a comparison's concurrency without new threads."""
    if not hasattr(_codec_pools, "pool"):
        _codec_pools.pool = ThreadPoolExecutor(COMPARE_WORKERS, "codec", initializer=background_thread, initargs=(1,))
    return _codec_pools.pool


def _with_torch_threads(threads: int, job: Callable[[], Result]) -> Result:
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)  # the caller's setting, per thread
    return job()


def compare(
    crop: Image.Image,
    models: Mapping[str, LoadedModel],
    max_bytes: int,
    classic: Sequence[str] = CLASSIC_FORMATS,
    latent: int | None = None,
    stem: str = "face",
    measure: bool = True,
) -> list[Result]:
    """The crop, then AE and VAE through the real codec, then each classic codec, every file
    at most `max_bytes` bytes.

    AE and VAE: with `latent` None the budget picks the latent size, quantiser and detail
    layer (codec.budget.best_within); otherwise the finest quantiser at that latent size that
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

    def result(codec: Codec) -> Result:
        return _mark_over(_scored(codec, crop_t, codec.within(crop_t, max_bytes), stem), max_bytes)

    jobs = [partial(result, codec) for codec in codecs_for(models, classic, latent)]
    # The searches are independent and torch and the image codecs release the GIL: on two
    # cores one visitor waits about half as long.
    threads = torch.get_num_threads()
    results += _codec_pool().map(lambda job: _with_torch_threads(threads, job), jobs)
    if measure:
        measure_identity(results)
    return results


def with_sharp_decodings(
    crop: Image.Image,
    results: Sequence[Result],
    models: Models,
    refiner: Refiner,
    real_detail_share: float | None = None,
) -> list[Result]:
    """`results` (a comparison of `crop`) with each .fcz file decoded by the sharp decoding instead:
    the same bytes, a new picture with its PSNR, SSIM and identity against the crop, the MSE
    decoding's numbers in its note and, given real faces' mean fine-detail share
    (weights/realism.json), extra["detail_energy"]: the picture's fine detail over real faces'."""
    crop_t = to_tensor(crop)
    files = [i for i, r in enumerate(results) if r.data is not None and (r.file_name or "").endswith(".fcz")]
    pictures = sharpen(refiner, torch.stack([decompress(results[i].data, models) for i in files])) if files else []
    out = list(results)
    for i, picture in zip(files, pictures, strict=True):
        res, image = results[i], to_pil(picture)
        mse = f"MSE decoding: {res.psnr:.2f} dB" + (f", {res.identity_text}" if res.identity is not None else "")
        out[i] = replace(
            res,
            name=f"{res.name} sharp",
            image=image,
            psnr=metrics.psnr(crop_t, to_tensor(image)),
            ssim=metrics.ssim(crop_t, to_tensor(image)),
            note=f"{res.note} · sharp decoding · {mse}",
            identity=None,
            extra=res.extra | {"decoding": "sharp"},
            png=display_png(image),
        )
        if real_detail_share:
            out[i].extra["detail_energy"] = float(realism.detail_share(picture.unsqueeze(0))[0]) / real_detail_share
    if any(r.identity is not None for r in results):  # measured like the comparison it replaces
        measure_identity([out[0], *(out[i] for i in files)])
    return out


def side_by_side(mse: Sequence[Result], sharp: Sequence[Result]) -> list[Result]:
    """The first result (the original), then each picture of `mse` followed by its sharp decoding
    in `sharp` where it differs (with_sharp_decodings of the same comparison)."""
    shown = [mse[0]]
    for plain, refined in zip(mse[1:], sharp[1:], strict=True):
        shown += [plain] if refined is plain else [plain, refined]
    return shown
