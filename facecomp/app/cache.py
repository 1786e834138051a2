"""The models and every computation the pages cache: loaded once per weights, computed once per
input. The computations themselves live in comparison, latent.explorer and visual; heavy ones
run on the server's worker threads (server.run_heavy; comparisons through server.SharedResults,
so that a waiting page hears its place in the line).

Streamlit-cached functions take the models as `_models`, which Streamlit does not hash, beside `key`,
the weights key they were loaded under (models_or_stop), which it does: a retrain or another
weights folder is another key, so nothing computed with the old weights is shown again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import streamlit as st
import torch

from .. import comparison
from ..codec.fcz import Models
from ..faces import load_image
from ..latent import explorer
from ..measure.latent_report import load_latent_space_report
from ..measure.realism_report import load_realism_report
from ..nets.refiner import Refiner
from ..result import Result
from ..spec import CLASSIC_FORMATS
from ..visual import display_png, enlarge, error_map, png_bytes
from ..weight_files import default_weights_dir, file_stamp, weights_files
from ..weights import WeightsError, load_models, load_refiner
from .server import SharedResults, run_heavy

log = logging.getLogger(__name__)

# ---- models -------------------------------------------------------------------------


@st.cache_resource(show_spinner="Loading the models…")
def loaded_models(key: str) -> tuple[Models, dict[str, dict]]:
    """Both models and their cards, from the weights folder that `key` names (weights_key)."""
    return load_models(Path(key.split("|", 1)[0]))


@st.cache_resource(show_spinner="Loading the sharp decoding…")
def loaded_refiner(key: str) -> Refiner | None:
    """The sharp decoding's refiner from the weights folder that `key` names; None when it is not
    shipped or cannot be loaded (the pages then offer the MSE decoding only, as without it)."""
    try:
        return load_refiner(Path(key.split("|", 1)[0]))
    except WeightsError as err:
        log.warning("The sharp decoding is off: %s", err)
        return None


def refiner_if(key: str, sharp: bool) -> Refiner | None:
    """The refiner when the page asks for the sharp decoding (and one is shipped), else None."""
    return loaded_refiner(key) if sharp else None


def weights_key() -> str:
    """Cache key for everything computed with the current weights: their folder (tests switch
    folders) and the files' stamps (retrained weights or detail layers replace the old ones)."""
    folder = default_weights_dir()
    return "|".join([str(folder), *(str(file_stamp(path)) for path in weights_files(folder))])


class Loaded(NamedTuple):
    models: Models
    key: str  # weights_key() of these models: the cache key of everything computed with them


def models_or_stop() -> Loaded:
    """Both models and the weights key they were loaded under, read once for the page; a
    missing or altered weights file ends the page with one message."""
    key = weights_key()
    try:
        return Loaded(loaded_models(key)[0], key)
    except WeightsError as err:
        st.error(f"The model weights could not be loaded. {err}")
        st.stop()
        raise  # st.stop() raises; this keeps type checkers quiet


# ---- per-image work (hashed arguments: bytes, ints, strings) --------------------------


# A photo's preview and crops: at most ~3 MB, whatever the photo's size (comparison.KeptPhoto).
@st.cache_data(max_entries=16, show_spinner=False)
def kept_photo(data: bytes) -> comparison.KeptPhoto:
    """A photo's faces, preview and crops (raises faces.ImageLoadError for a file that is no photo)."""
    return run_heavy(comparison.keep_photo, data, quick=True)


# A comparison is ~0.55 MB (pictures and their PNGs): 16 of them, the recent budgets and latent
# sizes of a few visitors. Not st.cache_data: a waiting page hears its place in the line
# (on_wait), and sessions that ask for one comparison at once share one computation.
_comparisons = SharedResults(max_entries=16)


def comparison_results(
    models: Models,
    key: str,
    crop_png: bytes,
    max_bytes: int,
    latent: int | None = None,
    classic: tuple[str, ...] = CLASSIC_FORMATS,
    identity: bool = True,
    on_wait: Callable[[int], None] | None = None,
) -> list[Result]:
    """comparison.compare on a crop given as PNG bytes: every file at most max_bytes (latent None:
    automatic). on_wait(jobs ahead) is called while it waits (server.wait).

    identity False skips the identity check (its models take ~0.2 s to load on a cold start).
    """
    job = (key, hashlib.sha256(crop_png).digest(), max_bytes, latent, tuple(classic), identity)

    def work() -> list[Result]:
        return comparison.compare(load_image(crop_png), models, max_bytes, classic, latent=latent, measure=identity)

    return _comparisons.get(job, work, on_wait)


@st.cache_data(max_entries=16, show_spinner="Decoding the same files for realism…")
def sharp_results(
    _models: Models,
    key: str,
    crop_png: bytes,
    max_bytes: int,
    latent: int | None = None,
    classic: tuple[str, ...] = CLASSIC_FORMATS,
) -> list[Result]:
    """comparison_results with its AE and VAE files decoded by the sharp decoding
    (comparison.with_sharp_decodings), computed only when a visitor asks."""
    results = comparison_results(_models, key, crop_png, max_bytes, latent, classic)
    share = realism_report(key).get("real_detail_share")
    refiner = loaded_refiner(key)
    return run_heavy(comparison.with_sharp_decodings, load_image(crop_png), results, _models, refiner, share)


@st.cache_data(show_spinner=False)
def realism_report(key: str) -> dict:
    """weights/realism.json (how real every kind of picture looks), {} when absent."""
    return load_realism_report(default_weights_dir())


@st.cache_data(max_entries=64, show_spinner=False)
def code_of(_models: Models, key: str, crop_png: bytes) -> np.ndarray:
    """The VAE's full code of a crop."""
    return explorer.encode(_models["vae"].network, load_image(crop_png)).numpy()


@st.cache_data(max_entries=64, show_spinner=False)
def decoded_png(_models: Models, key: str, code: bytes, sharp: bool = False) -> bytes:
    """The VAE's picture of a code (float32 bytes) as PNG, sharp or MSE decoding: every face the
    explorer draws (start, edited, the morph's three). Cached, so a rerun that keeps a face (a
    move of another fragment's widget, a slider moved back) does not decode it again."""
    z = torch.from_numpy(np.frombuffer(code, dtype=np.float32).copy())
    return display_png(explorer.decode(_models["vae"].network, z, refiner_if(key, sharp)))


@st.cache_data(max_entries=16, show_spinner=False)
def heat_map_png(original_png: bytes, recon_png: bytes) -> bytes:
    """Where a picture differs from the original, as PNG (visual.error_map)."""
    return display_png(error_map(load_image(original_png), load_image(recon_png)))


@st.cache_data(max_entries=16, show_spinner=False)
def fcz_code(_models: Models, key: str, data: bytes) -> np.ndarray:
    """The VAE's full code of a .fcz file (raises codec.format.CodecError for a foreign or damaged file)."""
    return explorer.code_from_fcz(data, _models).numpy()


@st.cache_data(max_entries=32, show_spinner="Drawing samples…")
def sample_grid_png(
    _models: Models,
    key: str,
    kind: str,
    source: str,
    temperature: float,
    seed: int,
    n: int,
    columns: int,
    sharp: bool = False,
) -> bytes:
    """n samples of one model as a grid of `columns` (explorer.sample_grid), enlarged twice, as PNG."""
    refiner = refiner_if(key, sharp)
    grid = run_heavy(explorer.sample_grid, _models[kind].network, n, seed, columns, source, temperature, refiner)
    return png_bytes(enlarge(grid, 2))  # made once, sent to every visitor: the smaller file


@st.cache_data(show_spinner=False)
def latent_space_report(key: str) -> dict:
    """weights/latent_space.json (measured edits and sample quality), {} when absent."""
    return load_latent_space_report(default_weights_dir())


@st.cache_data(max_entries=16, show_spinner="Making the GIF…")
def morph_gif(_models: Models, key: str, a: bytes, b: bytes, frames: int, sharp: bool = False) -> bytes:
    """The morph as an animated GIF, sharp or MSE decoding; codes passed as float32 bytes so they hash."""
    za, zb = (torch.from_numpy(np.frombuffer(x, dtype=np.float32).copy()) for x in (a, b))
    refiner = refiner_if(key, sharp)
    return run_heavy(
        lambda: explorer.gif_bytes(explorer.morph_frames(_models["vae"].network, za, zb, frames, refiner=refiner))
    )
