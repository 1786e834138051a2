"""One picture of a comparison and what it cost, with the sizes and thresholds that describe
it. Plain Python and Pillow: the first page shows results kept on disk without importing
torch, OpenCV or dlib (see first_page)."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from .spec import SAME_PERSON, bits_per_pixel


@dataclass
class Result:
    """One picture in the comparison row and what it cost."""

    name: str
    image: Image.Image | None
    n_bytes: int | None = None
    psnr: float | None = None
    ssim: float | None = None
    data: bytes | None = None  # the encoded file (.fcz, .jpg, ...)
    file_name: str | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)  # over_budget, needed_bytes, estimated_bytes, decoding, detail_energy
    identity: float | None = None  # dlib descriptor distance to the original; None: not measured
    png: bytes | None = None  # the picture as PNG, encoded once: shown, downloaded and heat-mapped from it

    @property
    def bpp(self) -> float | None:
        return None if self.n_bytes is None else bits_per_pixel(self.n_bytes)

    @property
    def over_budget(self) -> bool:
        """The file is larger than the budget: even the smallest one this codec can make."""
        return bool(self.extra.get("over_budget"))

    @property
    def same_person(self) -> bool | None:
        return None if self.identity is None else self.identity < SAME_PERSON

    @property
    def identity_text(self) -> str:
        """'same person (0.41)', 'another person? (0.67)', or '' when not measured."""
        if self.identity is None:
            return ""
        return f"{'same person' if self.same_person else 'another person?'} ({self.identity:.2f})"

    @property
    def png_name(self) -> str:
        """A PNG file name for the decoded picture."""
        sharp = "_sharp" if self.extra.get("decoding") == "sharp" else ""
        return f"{(self.file_name or self.name).rsplit('.', 1)[0]}{sharp}.png"
