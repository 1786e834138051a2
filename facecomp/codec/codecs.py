"""One interface for every codec Compare, `evaluate` and `bench` measure: a name, the best file
within a byte budget, and decoding. FaceComp's .fcz (one per model) and Pillow's formats (JPEG,
WebP, AVIF, HEIC, JPEG XL) implement it once each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from ..faces import load_image
from ..spec import CLASSIC_FORMATS, MODEL_KINDS, codec_name
from ..visual import to_pil, to_tensor
from . import budget, fcz
from .classic import CLASSIC_EXT, classic_within
from .fcz import LoadedModel


@dataclass(frozen=True)
class Encoded:
    """A codec's file for one face within a budget, and the picture it decodes to."""

    codec: str  # Codec.key
    data: bytes
    picture: torch.Tensor  # (3, 128, 128) in [0, 1]
    max_bytes: int
    label: str  # how it was made, in words: "latent 128 + detail 12", "quality 40"
    suffix: str  # the file name's ending: "ae_128d12.fcz", "q40.jpg"
    details: dict = field(default_factory=dict)  # what only this codec knows (the .fcz's latent, layer, estimate)

    @property
    def fits(self) -> bool:
        return len(self.data) <= self.max_bytes


class Codec(Protocol):
    key: str  # its name in the evaluation's JSON: "ae", "vae", "WEBP", ...
    name: str  # what a person reads: "AE", "VAE", "WebP", ...

    def within(self, image: torch.Tensor, max_bytes: int) -> Encoded:
        """The best file of at most max_bytes for a (3, 128, 128) crop in [0, 1]; when nothing
        fits, the smallest file this codec can make (Encoded.fits is then False)."""
        ...

    def decode(self, data: bytes) -> torch.Tensor:
        """A file's (3, 128, 128) picture in [0, 1]."""
        ...


class FczCodec:
    """One FaceComp model's .fcz files: with `latent` None the budget picks latent size,
    quantiser and detail layer (budget.best_within), else the finest quantiser at that size."""

    def __init__(self, model: LoadedModel, latent: int | None = None) -> None:
        self.model, self.latent = model, latent
        self.key, self.name = model.kind, codec_name(model.kind)
        self._models = {model.kind: model}

    def within(self, image: torch.Tensor, max_bytes: int) -> Encoded:
        with torch.inference_mode():
            if self.latent is None:
                packed, picture = budget.best_within(self._models, image, max_bytes)
            else:
                packed = fcz.compress(self.model, image, self.latent, max_bytes=max_bytes)
                picture = fcz.decompress(packed.data, self._models)
        suffix = f"{self.key}_" + packed.label.replace("latent ", "").replace(" + detail ", "d") + ".fcz"
        details = {"latent": packed.latent, "detail_quality": packed.detail_quality}
        details["estimated_bytes"] = packed.estimated_bits / 8
        return Encoded(self.key, packed.data, picture, max_bytes, packed.label, suffix, details)

    def decode(self, data: bytes) -> torch.Tensor:
        return fcz.decompress(data, self._models)


class PillowCodec:
    """A classic format at the highest quality whose file fits (classic.classic_within)."""

    def __init__(self, fmt: str) -> None:
        self.key, self.name = fmt, codec_name(fmt)

    def within(self, image: torch.Tensor, max_bytes: int) -> Encoded:
        # A fresh picture each call: Pillow's save() keeps its options on the image object, so
        # two threads saving one image can swap qualities.
        found = classic_within(to_pil(image), self.key, max_bytes)
        suffix = f"q{found.quality}.{CLASSIC_EXT.get(self.key, self.key.lower())}"
        label, details = f"quality {found.quality}", {"quality": found.quality}
        return Encoded(self.key, found.data, to_tensor(found.image), max_bytes, label, suffix, details)

    def decode(self, data: bytes) -> torch.Tensor:
        return to_tensor(load_image(data))


def codecs_for(
    models: Mapping[str, LoadedModel], formats: Sequence[str] = CLASSIC_FORMATS, latent: int | None = None
) -> list[Codec]:
    """The codecs a comparison shows, in its order: each model given (AE, then VAE), then each format."""
    return [FczCodec(models[kind], latent) for kind in MODEL_KINDS if kind in models] + [
        PillowCodec(fmt) for fmt in formats
    ]
