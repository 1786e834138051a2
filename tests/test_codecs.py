"""The one codec interface: FaceComp's files and Pillow's formats answer a budget the same way."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facecomp.codec import fcz
from facecomp.codec.codecs import FczCodec, PillowCodec, codecs_for
from facecomp.comparison import compare
from facecomp.spec import CLASSIC_FORMATS
from facecomp.visual import to_pil
from facecomp.weights import load_models

from .conftest import generated_faces


@pytest.fixture(scope="module")
def models(tiny_weights: Path) -> dict:
    return load_models(tiny_weights)[0]


def test_codecs_come_in_the_comparison_order(models: dict) -> None:
    keys = [c.key for c in codecs_for(models)]
    assert keys == ["ae", "vae", *CLASSIC_FORMATS]
    assert [c.name for c in codecs_for({"vae": models["vae"]}, ("WEBP",))] == ["VAE", "WebP"]


def test_fcz_codec_names_its_file_by_how_it_was_made_and_decodes_it(models: dict) -> None:
    face = generated_faces(1, seed=11)[0]
    codec = FczCodec(models["ae"])
    found = codec.within(face, 64)
    assert found.fits and len(found.data) <= 64
    assert found.suffix == f"ae_{found.details['latent']}.fcz" and found.label == f"latent {found.details['latent']}"
    assert torch.equal(codec.decode(found.data), found.picture)
    assert torch.equal(found.picture, fcz.decompress(found.data, models))
    fixed = FczCodec(models["vae"], latent=32).within(face, 4096)
    assert fixed.details["latent"] == 32 and fixed.suffix == "vae_32.fcz"


def test_pillow_codec_within_a_budget_and_over_it(models: dict) -> None:
    face = generated_faces(1, seed=12)[0]
    codec = PillowCodec("JPEG")
    found = codec.within(face, 2000)
    quality = found.details["quality"]
    assert found.fits and found.suffix == f"q{quality}.jpg" and found.label == f"quality {quality}"
    assert torch.equal(codec.decode(found.data), found.picture)
    tiny = codec.within(face, 10)  # below JPEG's smallest file: that file comes back, flagged
    assert not tiny.fits and tiny.details["quality"] == 0


def test_compare_names_files_as_the_codecs_do(models: dict) -> None:
    face = to_pil(generated_faces(1, seed=13)[0])
    results = compare(face, models, 512, classic=("WEBP",), stem="me", measure=False)
    assert [r.name for r in results] == ["Original", "AE", "VAE", "WebP"]
    assert results[0].file_name == "me.png"
    ae, vae, webp = results[1:]
    assert ae.file_name.startswith("me_ae_") and ae.file_name.endswith(".fcz") and ae.note.startswith("latent ")
    assert vae.file_name.startswith("me_vae_") and webp.file_name == f"me_{webp.note.replace('quality ', 'q')}.webp"
    assert "estimated_bytes" in ae.extra and "estimated_bytes" not in webp.extra
