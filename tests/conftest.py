"""Shared fixtures: real public-domain face photos shipped by installed packages, tiny models.

Two tiers: `python -m pytest -m "not slow"` is the quick one (unit logic of every module, about a
minute); `python -m pytest` (what .ci/run runs) is everything, the `slow` tests included.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import cbook
from PIL import Image
from skimage import data as skdata

from facecomp.codec.entropy import DEFAULT_Q, QSTEPS
from facecomp.latent.statistics import fit_latent_stats
from facecomp.nets.autoencoder import ModelConfig, build_model
from facecomp.weights import save_model

TINY_CHANNELS = (8, 8, 16, 16, 16)


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Home's example is kept in a throwaway folder, never the user's cache (first_page)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FACECOMP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    return Image.fromarray(skdata.astronaut())


@pytest.fixture(scope="session")
def grace_hopper() -> Image.Image:
    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        return Image.open(fh).convert("RGB")


def generated_faces(n: int, seed: int = 0) -> torch.Tensor:
    """Smooth random 128x128 images (N, 3, 128, 128) in [0, 1]: blobs on a gradient."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:128, 0:128] / 127.0
    images = []
    for _ in range(n):
        colour = rng.uniform(0.2, 0.8, size=3)
        cx, cy, r = rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.2, 0.35)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r**2))
        img = colour[:, None, None] * blob + (0.3 * yy)[None] * rng.uniform(0.5, 1.0)
        images.append(np.clip(img, 0, 1))
    return torch.tensor(np.stack(images), dtype=torch.float32)


def make_tiny_weights(folder: Path, seed: int = 0) -> Path:
    """Untrained AE and VAE with fitted latent statistics and cards, like the shipped ones."""
    torch.manual_seed(seed)
    images = (generated_faces(16, seed) * 255).round().to(torch.uint8)
    for kind in ("ae", "vae"):
        model = build_model(ModelConfig(kind=kind, channels=TINY_CHANNELS)).eval()
        with pytest.MonkeyPatch.context() as mp:
            # The gain is replaced below: skip measuring it (1,026 decodes, most of this function's
            # seconds). The files come out byte for byte the same.
            mp.setattr(
                sys.modules[fit_latent_stats.__module__], "decoder_gain", lambda _m, _c, std: torch.ones_like(std)
            )
            fit_latent_stats(model, images, gain_faces=2)
        # An untrained decoder barely reacts to its code, which would quantise every
        # dimension to zero; pretend it is sensitive so files carry real symbols.
        steps_wanted = model.latent_std / 20
        model.latent_gain.copy_((QSTEPS[DEFAULT_Q] * 12**0.5 / steps_wanted) ** 2)
        save_model(model, folder / f"{kind}.safetensors", card={"model": kind, "validation_psnr": {}})
    return folder


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained full-size weights with cards and an evaluation JSON, for the app's tests."""
    from .appdata import make_weights_dir

    return make_weights_dir(tmp_path_factory.mktemp("app_weights"))


@pytest.fixture
def use_weights(weights_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The app reads its weights from `weights_dir` during the test."""
    monkeypatch.setenv("FACECOMP_WEIGHTS_DIR", str(weights_dir))
    return weights_dir
