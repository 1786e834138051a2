"""The first page, ready before the first visitor: Home's live example, and the warm-up that
app.py runs in a thread as the server starts (and the Docker build runs once)."""

from __future__ import annotations

import gc
import logging
import threading

import streamlit as st

from .. import comparison
from ..weight_files import default_weights_dir, weights_files
from ..weights import WeightsError
from . import cache, first_page
from .server import inference_threads

HOME_EXAMPLE = next(iter(comparison.BUILTIN_PHOTOS))
HOME_BUDGET = 256  # bytes a face: the budget picks latent size, quantiser and detail layer
WARM_UP_THREAD = "warm-up"


@st.cache_data(max_entries=1, show_spinner=False)
def _home_example(key: str) -> first_page.Example:
    """Computed once per weights and kept on disk for the next start (first_page)."""
    models, cards = cache.loaded_models(key)
    crop_png = cache.kept_photo(comparison.builtin_photo_bytes(HOME_EXAMPLE)).crop_png(0)
    results = cache.comparison_results(models, key, crop_png, HOME_BUDGET, classic=(), identity=False)
    example = first_page.Example(HOME_EXAMPLE, HOME_BUDGET, crop_png, results, cards)
    folder = default_weights_dir()
    first_page.save(folder, weights_files(folder), example)
    return example


def home_example() -> first_page.Example:
    """Home's live example: the first built-in photo's face (a centred crop if none is found),
    then AE and VAE at HOME_BUDGET bytes. No identity: it adds time to the first page. Weights
    that cannot be loaded end the page with one message."""
    return _home_example(cache.models_or_stop().key)


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
        key = cache.weights_key()
        cache.loaded_models(key)  # the other pages need them; Home may not (first_page)
        if first_page.read(default_weights_dir()) is None:
            _home_example(key)
        cache.loaded_refiner(key)  # the explorer draws with it by default
    except WeightsError:
        pass  # the first page will say what is wrong
    # What exists now (torch, Streamlit, the models) lives as long as the server: frozen, the
    # garbage collector never scans it again. A full collection over it holds the GIL for over
    # 0.1 s, and comes only after a quarter as many new objects again, so each rerun's cyclic
    # garbage (Streamlit's ScriptRunner) would stay for hundreds of uploads. The collection
    # after the freeze counts only what is left, so later full collections come sooner.
    gc.freeze()
    gc.collect()
