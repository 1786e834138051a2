"""Hostile uploads through the library, Compare and the explorer: a typed error or a result, never a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facecomp import comparison
from facecomp.codec import fcz
from facecomp.codec import format as fcz_format
from facecomp.faces import ImageLoadError
from facecomp.visual import to_tensor
from facecomp.weights import load_model

from .appdata import astronaut_png
from .conftest import make_tiny_weights
from .hostile import corpus
from .test_app import open_page, upload

CORPUS = corpus()
READABLE = {"one_pixel.png", "sixteen_bit.png", "cmyk.jpg", "palette_transparent.png", "animated.gif"}
READABLE |= {"animated.webp", "exif_rotated.jpg", "grey.png", "no_face.png", "eight_faces.jpg"}


@pytest.fixture(scope="module")
def models(tiny_weights: Path) -> dict:
    return {kind: load_model(kind, tiny_weights)[0] for kind in ("ae", "vae")}


@pytest.fixture(scope="module")
def foreign_fcz(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A valid .fcz file made by other weights than the ones the app has loaded."""
    other = make_tiny_weights(tmp_path_factory.mktemp("other_weights"), seed=1)
    vae, _ = load_model("vae", other)
    crop = comparison.choose_crop(comparison.open_photo(astronaut_png()), 0)
    return fcz.compress(vae, to_tensor(crop), 64).data


@pytest.mark.parametrize("name, data, mime", CORPUS, ids=[c[0] for c in CORPUS])
def test_library_gives_a_typed_error_or_a_result(name: str, data: bytes, mime: str, models: dict) -> None:
    try:
        photo = comparison.open_photo(data)
    except ImageLoadError as err:
        assert name not in READABLE, err
        assert "0x" not in str(err)  # a sentence for people, not an object's repr
        return
    assert name in READABLE
    crop = comparison.choose_crop(photo, 0 if photo.boxes else None)
    assert crop.size == (128, 128) and crop.mode == "RGB"
    x = to_tensor(crop)
    for model in models.values():
        decoded = fcz.decompress(fcz.compress(model, x, 64).data, models)
        assert decoded.shape == x.shape and torch.isfinite(decoded).all()


def test_library_reads_hostile_files_faithfully() -> None:
    photos = {name: data for name, data, _ in CORPUS}
    grey = np.asarray(comparison.open_photo(photos["grey.png"]).image, dtype=float)
    sixteen = np.asarray(comparison.open_photo(photos["sixteen_bit.png"]).image, dtype=float)
    assert np.abs(sixteen - grey).max() <= 1  # 16 bits scaled to 8, not clipped to white
    rotated = comparison.open_photo(photos["exif_rotated.jpg"])
    assert rotated.image.size == (512, 512) and rotated.boxes  # upright again: the face is found
    assert len(comparison.open_photo(photos["eight_faces.jpg"]).boxes) >= 2


def test_foreign_fcz_is_one_clear_error(foreign_fcz: bytes, models: dict) -> None:
    with pytest.raises(fcz_format.CodecError, match="other weights"):
        fcz.decompress(foreign_fcz, models)


def outcome(at) -> str:
    """What the user sees after an upload: one error, a no-face warning, or pictures."""
    assert not at.exception, [e.value for e in at.exception]
    if at.error:
        assert len(at.error) == 1, [e.value for e in at.error]
        return "error"
    if any("No face found" in w.value for w in at.warning):
        return "no face"
    assert at.image, "neither a message nor a picture"
    return "result"


@pytest.mark.slow
def test_compare_survives_the_corpus_and_serves_the_next_upload(use_weights: Path) -> None:
    at = open_page("pages/1_Compare.py")
    seen = {}
    for name, data, mime in CORPUS:
        seen[name] = outcome(upload(at, "compare", name, data, mime))
    assert {n for n, o in seen.items() if o == "error"} == {c[0] for c in CORPUS} - READABLE
    assert seen["no_face.png"] == "no face" and seen["exif_rotated.jpg"] == "result"
    assert outcome(upload(at, "compare", "astronaut.png", astronaut_png())) == "result"
    assert len(at.image) == 9  # the photo, Original, AE, VAE and five classic codecs


@pytest.mark.slow
def test_explorer_survives_the_corpus_and_a_foreign_fcz(use_weights: Path, foreign_fcz: bytes) -> None:
    at = open_page("pages/2_Latent_explorer.py")
    for name, data, mime in [*CORPUS, ("other.fcz", foreign_fcz, "application/octet-stream")]:
        result = outcome(upload(at, "explore", name, data, mime))
        if name == "other.fcz":
            assert result == "error" and "other weights" in at.error[0].value
    assert outcome(upload(at, "explore", "astronaut.png", astronaut_png())) == "result"
