"""Streamlit glue shared by the pages: cached models and per-image work, the photo
picker and the comparison row. With page (the frame and the face cards, without torch), the
only facecomp modules that import Streamlit; the computations it caches live in demo,
explore, visual and charts.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import itertools
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import streamlit as st
import torch
from streamlit.delta_generator import DeltaGenerator

from . import demo, explore, first_page, page
from .classic import CLASSIC_FORMATS
from .faces import ImageLoadError, load_image
from .latent_space import load_latent_space_report
from .model import FaceAE
from .result import Result
from .visual import display_png, draw_boxes, enlarge, error_map, png_bytes
from .weight_files import file_stamp
from .weights import WeightsError, default_weights_dir, load_models, weights_files

UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "avif", "heic", "heif", "jxl", "gif", "bmp", "tif", "tiff"]
SOURCES = ("Built-in photo", "Upload", "Camera")
RANDOM = "Random face"


INFERENCE_THREADS = 1
T = TypeVar("T")
# ---- the server's CPU and memory ------------------------------------------------------

M_ARENA_MAX = -8  # glibc's mallopt option


def _glibc() -> ctypes.CDLL | None:
    """glibc, whose allocator is tuned below; None elsewhere (musl, macOS, Windows): nothing to tune."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()

# At most two glibc malloc arenas for the server. By default each thread that allocates may
# get its own (8 per core), and memory freed in one is seldom returned: after 20 users at once
# the server stayed 29% larger, with two arenas 8%, at the same speed (measured with
# scripts/load_test.py). Set when this module is imported, after Streamlit's threads and the
# warm-up thread have made theirs: malloc_info showed seven arenas in the server. The limit
# keeps later threads from adding more; demo's long-lived codec threads keep comparisons from
# spreading their peaks over all of them.
if _LIBC is not None:
    _LIBC.mallopt(M_ARENA_MAX, 2)


class HeavyPool:
    """Worker threads for heavy jobs: quick ones (a photo's face detection, ~0.1 s) first, then
    the rest in the order they arrive.

    An upload needs a detection and then a comparison (~1 CPU-second). Taken strictly in order,
    its detection waited behind every comparison queued before it, and its comparison then behind
    those queued meanwhile: two waits per upload when many visitors upload at once.
    """

    QUICK, LONG = 0, 1

    def __init__(self, workers: int, initializer: Callable[[], None]) -> None:
        self._jobs: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()  # FIFO within a priority; never compares two jobs
        for i in range(workers):
            threading.Thread(target=self._serve, args=(initializer,), name=f"heavy_{i}", daemon=True).start()

    def submit(self, job: Callable[[], T], priority: int) -> Future:
        future: Future = Future()
        self._jobs.put((priority, next(self._order), job, future))
        return future

    def _serve(self, initializer: Callable[[], None]) -> None:
        initializer()
        while True:
            _, _, job, future = self._jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except BaseException as err:  # handed to the waiting script thread, which raises it
                    future.set_exception(err)


# Work that takes a core for a second or more (a Compare run, sample grids, a morph GIF) and a
# photo's detection run on these worker threads at a lower priority (nice 10): however many
# visitors upload at once, a slider move (in its own script thread) competes with at most this
# many jobs for the CPU, and goes first.
HEAVY_SLOTS = max(1, os.cpu_count() or 1)
_heavy_pool = HeavyPool(HEAVY_SLOTS, functools.partial(demo.background_thread, INFERENCE_THREADS))


def _heavy(work: Callable[..., T], *args: object, quick: bool = False, **kwargs: object) -> T:
    """work(*args, **kwargs) on a heavy-work thread (quick: ahead of the long jobs waiting);
    then the memory it freed goes back to the system. A batched decode's activations take
    ~25 MB each, and glibc keeps freed blocks that size for reuse (its mmap threshold grows as
    they are freed)."""

    def job() -> T:
        try:
            return work(*args, **kwargs)
        finally:
            if _LIBC is not None:
                _LIBC.malloc_trim(0)

    return _heavy_pool.submit(job, HeavyPool.QUICK if quick else HeavyPool.LONG).result()


def inference_threads() -> None:
    """One torch thread for this script thread (the setting is per thread, so fragments call it too).

    Batch-1 inference gains little from a second thread, and on a 2-core laptop two OpenMP
    threads stall each other whenever anything else (the browser, a training run) is busy:
    measured here, one decode took 8 ms with one thread and 700 ms with two under load.
    """
    if torch.get_num_threads() != INFERENCE_THREADS:
        torch.set_num_threads(INFERENCE_THREADS)


def page_setup(title: str, sidebar: str = "auto") -> None:
    """page.page_setup, and one torch thread for the page's script thread."""
    inference_threads()
    page.page_setup(title, sidebar)


# ---- models -------------------------------------------------------------------------


@st.cache_resource(show_spinner="Loading the models…")
def _load(key: str) -> tuple[dict[str, FaceAE], dict[str, dict]]:
    return load_models(Path(key.split("|", 1)[0]))


def weights_key() -> str:
    """Cache key for everything computed with the current weights: their folder (tests switch
    folders) and the files' stamps (retrained weights or detail layers replace the old ones)."""
    folder = default_weights_dir()
    return "|".join([str(folder), *(str(file_stamp(path)) for path in weights_files(folder))])


class Loaded(NamedTuple):
    models: dict[str, FaceAE]
    key: str  # weights_key() of these models: the cache key of everything computed with them


def models_or_stop() -> Loaded:
    """Both models and the weights key they were loaded under, read once for the page; a
    missing or altered weights file ends the page with one message."""
    key = weights_key()
    try:
        return Loaded(_load(key)[0], key)
    except WeightsError as err:
        st.error(f"The model weights could not be loaded. {err}")
        st.stop()
        raise  # st.stop() raises; this keeps type checkers quiet


# ---- cached per-image work (hashable arguments: bytes, ints, strings) ---------------


# A photo's preview and crops: at most ~3 MB, whatever the photo's size (demo.KeptPhoto).
@st.cache_data(max_entries=16, show_spinner=False)
def _photo(data: bytes) -> demo.KeptPhoto:
    return _heavy(demo.keep_photo, data, quick=True)


# A comparison is ~0.55 MB once pickled (pictures and their PNGs): 16 of them, the recent budgets and
# latent sizes of a few visitors.
@st.cache_data(max_entries=16, show_spinner="Compressing and measuring identity…")
def compare(
    crop_png: bytes,
    max_bytes: int,
    key: str,
    latent: int | None = None,
    classic: tuple[str, ...] = CLASSIC_FORMATS,
    identity: bool = True,
) -> list[Result]:
    """demo.compare on a crop given as PNG bytes: every file at most max_bytes (latent None: automatic).

    identity False skips the identity check (its models take ~0.2 s to load on a cold start).
    """
    models, _ = _load(key)
    return _heavy(demo.compare, load_image(crop_png), models, max_bytes, classic, latent=latent, measure=identity)


@st.cache_data(max_entries=64, show_spinner=False)
def code_of(crop_png: bytes, key: str) -> np.ndarray:
    """The VAE's full code of a crop."""
    models, _ = _load(key)
    return explore.encode(models["vae"], load_image(crop_png)).numpy()


@st.cache_data(max_entries=64, show_spinner=False)
def decoded_png(code: bytes, key: str) -> bytes:
    """The VAE's picture of a code (float32 bytes) as PNG: every face the explorer draws (start,
    edited, the morph's three). Cached, so a rerun that keeps a face (a move of another
    fragment's widget, a slider moved back) does not decode it again."""
    models, _ = _load(key)
    z = torch.from_numpy(np.frombuffer(code, dtype=np.float32).copy())
    return display_png(explore.decode(models["vae"], z))


@st.cache_data(max_entries=16, show_spinner=False)
def heat(original_png: bytes, recon_png: bytes) -> bytes:
    return display_png(error_map(load_image(original_png), load_image(recon_png)))


@st.cache_data(max_entries=16, show_spinner=False)
def fcz_code(data: bytes, key: str) -> np.ndarray:
    """The VAE's full code of a .fcz file (raises codec.CodecError for a foreign or damaged file)."""
    models, _ = _load(key)
    return explore.code_from_fcz(data, models).numpy()


@st.cache_data(max_entries=32, show_spinner="Drawing samples…")
def samples(kind: str, source: str, temperature: float, seed: int, n: int, columns: int, key: str) -> bytes:
    models, _ = _load(key)
    grid = _heavy(explore.sample_grid, models[kind], n, seed, columns, source, temperature)
    return png_bytes(enlarge(grid, 2))  # made once, sent to every visitor: the smaller file


@st.cache_data(show_spinner=False)
def latent_space_report(key: str) -> dict:
    """weights/latent_space.json (measured edits and sample quality), {} when absent."""
    return load_latent_space_report(default_weights_dir())


@st.cache_data(max_entries=16, show_spinner="Making the GIF…")
def morph_gif(a: bytes, b: bytes, frames: int, key: str) -> bytes:
    """The morph as an animated GIF; codes passed as float32 bytes so they hash."""
    models, _ = _load(key)
    za, zb = (torch.from_numpy(np.frombuffer(x, dtype=np.float32).copy()) for x in (a, b))
    return _heavy(lambda: explore.gif_bytes(explore.morph_frames(models["vae"], za, zb, frames)))


# ---- widgets ------------------------------------------------------------------------


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
        name = second.selectbox("Built-in photo", list(demo.BUILTIN_PHOTOS), key=f"{key}_builtin")
        return Source(name, data=demo.builtin_photo_bytes(name))
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
        photo = _photo(data)
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


def result_card(res: Result, original_png: bytes, heatmap: bool, key: str) -> None:
    """page.result_card, showing the error heat map against the original when heatmap is set."""
    page.result_card(res, key, heat(original_png, res.png) if heatmap and res.name != "Original" else None)


# ---- the first page, ready before the first visitor ---------------------------------

HOME_EXAMPLE = next(iter(demo.BUILTIN_PHOTOS))
HOME_BUDGET = 256  # bytes a face: the budget picks latent size, quantiser and detail layer
WARM_UP_THREAD = "warm-up"


@st.cache_data(max_entries=1, show_spinner=False)
def _home_example(key: str) -> first_page.Example:
    """Computed once per weights and kept on disk for the next start (first_page)."""
    _, cards = _load(key)
    crop_png = _photo(demo.builtin_photo_bytes(HOME_EXAMPLE)).crop_png(0)
    results = compare(crop_png, HOME_BUDGET, key, classic=(), identity=False)
    example = first_page.Example(HOME_EXAMPLE, HOME_BUDGET, crop_png, results, cards)
    folder = default_weights_dir()
    first_page.save(folder, weights_files(folder), example)
    return example


def home_example() -> first_page.Example:
    """Home's live example: the first built-in photo's face (a centred crop if none is found),
    then AE and VAE at HOME_BUDGET bytes. No identity: it adds time to the first page. Weights
    that cannot be loaded end the page with one message."""
    return _home_example(models_or_stop().key)


class _NoWarmUpWarning(logging.Filter):
    """Streamlit warns when a cached function runs outside a script run; the warm-up does so on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != WARM_UP_THREAD


def warm_up() -> None:
    """Load the models and, unless it is kept on disk (first_page), compute Home's live example
    into the caches, so that the first page need not wait for them. app.py runs this in a
    thread as the server starts: it overlaps the server's own start and the browser loading
    Streamlit's front end. A first page that asks meanwhile waits for the same computation
    (Streamlit computes a cached value once)."""
    threading.current_thread().name = WARM_UP_THREAD
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(_NoWarmUpWarning())
    inference_threads()
    try:
        key = weights_key()
        _load(key)  # the other pages need them; Home may not (first_page)
        if first_page.read(default_weights_dir()) is None:
            _home_example(key)
    except WeightsError:
        pass  # the first page will say what is wrong
    # What exists now (torch, Streamlit, the models) lives as long as the server: frozen, the
    # garbage collector never scans it again. A full collection of it took 120-150 ms holding
    # the GIL, and came so seldom (after a quarter as many new objects again) that each rerun's
    # cyclic garbage (Streamlit's ScriptRunner) stayed for hundreds of uploads. The collection
    # after the freeze counts only what is left, so later full collections come sooner.
    gc.freeze()
    gc.collect()
