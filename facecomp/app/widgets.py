"""The pages' shared widgets: where a face comes from (a built-in photo, an upload, the camera or
a seed) and which face of a photo to use."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from .. import comparison
from ..faces import ImageLoadError
from ..visual import draw_boxes
from .cache import kept_photo

UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "avif", "heic", "heif", "jxl", "gif", "bmp", "tif", "tiff"]
SOURCES = ("Built-in photo", "Upload", "Camera")
RANDOM = "Random face"


@dataclass
class Source:
    """Where the face comes from: photo bytes, or a seed for the prior."""

    label: str
    data: bytes | None = None
    seed: int | None = None
    fcz: bool = False  # data is a .fcz file, not a photo


def photo_source(
    key: str,
    allow_random: bool = False,
    default: int = 0,
    seed: int = 7,
    allow_fcz: bool = False,
    where: tuple[DeltaGenerator, DeltaGenerator] | None = None,
) -> Source | None:
    """Radio over built-in / upload / camera (/ random); None until the user supplies a photo.

    allow_fcz: the upload also takes a .fcz file made on Compare (its code is used as it is).
    where: two containers (e.g. columns) for the radio and the widget it chooses; default, one below the other.
    """
    first, second = where or (st, st)
    options = list(SOURCES) + ([RANDOM] if allow_random else [])
    choice = first.radio("Face from", options, index=default, horizontal=True, key=f"{key}_source")
    if choice == "Built-in photo":
        name = second.selectbox("Built-in photo", list(comparison.BUILTIN_PHOTOS), key=f"{key}_builtin")
        return Source(name, data=comparison.builtin_photo_bytes(name))
    if choice == "Upload":
        # Rendered only when chosen: the camera likewise asks for permission only on demand.
        label = (
            "Photo (JPEG, PNG, HEIC, WebP, JPEG XL, …) or a .fcz file"
            if allow_fcz
            else "Photo (JPEG, PNG, HEIC, WebP, JPEG XL, …)"
        )
        types = UPLOAD_TYPES + (["fcz"] if allow_fcz else [])
        up = second.file_uploader(label, type=types, key=f"{key}_upload")
        if up is None:
            return None
        return Source(up.name, data=up.getvalue(), fcz=up.name.lower().endswith(".fcz"))
    if choice == "Camera":
        shot = second.camera_input("Take a photo", key=f"{key}_camera")
        return None if shot is None else Source("camera", data=shot.getvalue())
    seed = int(second.number_input("Seed", 0, 1_000_000, seed, key=f"{key}_seed"))
    return Source(f"random face (VAE prior), seed {seed}", seed=seed)


def pick_crop(
    data: bytes,
    key: str,
    show_photo: bool | None = True,
    photo_width: int = 900,
    photo_box: DeltaGenerator | None = None,
) -> bytes | None:
    """Detect faces, let the user choose one, and return its 128x128 crop as PNG bytes.

    Unreadable or oversized files end in one st.error and None; no face offers a centred crop.
    show_photo None: show the photo with its boxes only when there is a choice to make.
    photo_box: where the photo goes (e.g. an expander); default, below the face picker.
    """
    try:
        photo = kept_photo(data)
    except ImageLoadError as err:
        st.error(f"That file could not be used as a photo: {err}")
        return None
    face: int | None = 0
    if len(photo.boxes) > 1:
        face = st.radio(
            f"{len(photo.boxes)} faces found; pick one",
            range(len(photo.boxes)),
            format_func=lambda i: f"Face {i + 1}" + (" (largest)" if i == 0 else ""),
            horizontal=True,
            key=f"{key}_face",
        )
    elif not photo.boxes:
        st.warning("No face found in this photo.")
        if not st.checkbox("Use a centred crop instead", key=f"{key}_centre"):
            return None
        face = None
    if show_photo or (show_photo is None and len(photo.boxes) != 1):
        shown = draw_boxes(photo.preview, photo.boxes, face, photo_width, source_width=photo.width)
        (photo_box or st).image(shown, width="stretch")
    return photo.crop_png(face)


def waiting_text(ahead: int, working: str) -> str:
    """What a visitor waiting for a heavy job reads: their place in the line, or `working` once it runs."""
    if ahead == 0:
        return working
    if ahead == 1:
        return "1 comparison ahead of yours: yours starts after it."
    return f"{ahead} comparisons ahead of yours: yours starts after them."


@contextmanager
def waiting_line(working: str = "Compressing and measuring identity…") -> Iterator[Callable[[int], None]]:
    """A line on the page for a heavy job's on_wait (server.wait): shown only while the job
    waits or runs past the first poll, then removed."""
    box = st.empty()
    try:
        yield lambda ahead: box.info(waiting_text(ahead, working), icon=":material/hourglass_top:")
    finally:
        box.empty()
