"""Latent-space exploration without Streamlit: slider directions (named and principal),
slider -> latent, spherical interpolation, morph GIFs and grids of sampled faces."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..codec.fcz import Models, decode_code, decompress
from ..codec.pictures import preview_decode
from ..nets.autoencoder import FaceAE
from ..nets.refiner import Refiner, sharpen
from ..visual import to_pil, to_tensor, upscale
from .attributes import slider_placement

SLIDER_RANGE = 3.0  # sliders run over +-3 standard deviations
# How the pages name the two samplers (FaceAE.sample_codes).
SAMPLE_SOURCE_WORDS = {
    "prior": "codes drawn from the prior N(0, I)",
    "fitted": "codes drawn from a Gaussian fitted to real faces' codes",
}


@dataclass(frozen=True)
class Direction:
    """A unit direction in latent space and the spread of training codes along it."""

    name: str
    vector: torch.Tensor  # (max_latent,), unit length
    std: float
    note: str = ""
    placement: str = "shown"  # attributes.slider_placement, for named directions


def _fitted(model: FaceAE) -> bool:
    return bool(model.latent_pcs.abs().sum() > 0)


def directions(model: FaceAE, n: int = 8) -> list[Direction]:
    """The first n principal directions of the training codes.

    Before the statistics are fitted the buffers are zero; the nested latent orders its
    dimensions by importance, so the first n axes are then a sensible stand-in.
    """
    if _fitted(model):
        pcs, stds = model.latent_pcs.float(), model.latent_pc_std.float()
        n = min(n, len(pcs))
        return [Direction(f"Main direction {i + 1}", pcs[i].clone(), float(stds[i])) for i in range(n)]
    size = model.cfg.max_latent
    return [
        Direction(f"Dimension {i + 1}", torch.eye(size)[i], float(model.latent_std[i]), note="unfitted: latent axis")
        for i in range(min(n, size))
    ]


def named_directions(model: FaceAE, edits: dict[str, dict] | None = None) -> list[Direction]:
    """The fitted attribute directions that pass the accuracy bar: the explorer's named sliders.

    `edits` is the `edits` section of weights/latent_space.json: how often each slider's
    edit flips its attribute and keeps the person, shown in the slider's help.
    """
    found = []
    for j, name in enumerate(model.cfg.directions):
        accuracy = float(model.direction_accuracy[j])
        row = (edits or {}).get(name)
        placement = slider_placement(accuracy, row)
        if placement == "not shown":
            continue
        note = f"held-out balanced accuracy {accuracy:.0%}"
        if row:
            note += (
                f"; a 2σ move flips it in {row['flip_rate']:.0%} of faces, "
                f"a 1σ move keeps the person in {row['identity_kept']:.0%}"
            )
        found.append(Direction(name, model.direction_vector(j), float(model.direction_std[j]), note, placement))
    return found


def editor_directions(
    model: FaceAE, edits: dict[str, dict] | None = None, n_main: int = 8
) -> tuple[list[Direction], list[Direction]]:
    """The explorer's sliders: (shown, under "more").

    Shown: the named directions that attributes.slider_placement shows (their measured edit
    does what it says; all of them when nothing was measured). Under "more": the other named
    directions, then the main (principal) directions, which are shown instead when no
    named direction qualifies.
    """
    named = named_directions(model, edits)
    good = [d for d in named if d.placement == "shown"]
    weak = [d for d in named if d.placement != "shown"]
    main = directions(model, n_main)
    return (good, weak + main) if good else (main, weak)


def move(base: torch.Tensor, dirs: Sequence[Direction], sigmas: Sequence[float]) -> torch.Tensor:
    """base + sum_i sigmas[i] * std_i * direction_i (slider positions in standard deviations)."""
    z = base.detach().float().clone()
    for d, s in zip(dirs, sigmas, strict=True):
        if s:
            z += float(s) * d.std * d.vector
    return z


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, centre: torch.Tensor | None = None) -> torch.Tensor:
    """Spherical interpolation from a (t=0) to b (t=1) about `centre` (default the origin).

    Gaussian codes live near a sphere shell; a straight line between two of them cuts
    through the low-norm middle, where the decoder saw no training faces.
    """
    c = torch.zeros_like(a) if centre is None else centre.float()
    u, v = a.float() - c, b.float() - c
    nu, nv = u.norm(), v.norm()
    if nu < 1e-8 or nv < 1e-8:
        return c + (1 - t) * u + t * v
    cos = float(torch.clamp((u @ v) / (nu * nv), -1.0, 1.0))
    omega = math.acos(cos)
    if omega < 1e-4:  # nearly parallel: the linear path is the same path
        return c + (1 - t) * u + t * v
    s = math.sin(omega)
    return c + (math.sin((1 - t) * omega) / s) * u + (math.sin(t * omega) / s) * v


@torch.inference_mode()
def encode(model: FaceAE, crop: Image.Image) -> torch.Tensor:
    """The full code (max_latent,) of a 128x128 crop (the VAE's posterior mean)."""
    return model.code(to_tensor(crop).unsqueeze(0)).squeeze(0).float()


def pictures(model: FaceAE, z: torch.Tensor, refiner: Refiner | None = None) -> torch.Tensor:
    """(N, 3, 128, 128) pictures of (N, latent) codes, as the explorer shows them: the MSE decoding
    (codec.pictures.preview_decode: at most 3 8-bit levels from the float32 decoder, in half the
    time), or with a refiner, the sharp decoding of the same codes."""
    mse = preview_decode(model, z.float())
    return mse if refiner is None else sharpen(refiner, mse)


@torch.inference_mode()
def decode(model: FaceAE, z: torch.Tensor, refiner: Refiner | None = None) -> Image.Image:
    """One code as a 128x128 PIL image to show (see pictures)."""
    return to_pil(pictures(model, z.reshape(1, -1), refiner)[0])


def code_from_fcz(data: bytes, models: Models) -> torch.Tensor:
    """The VAE code of a .fcz file: its own code when the VAE made it, else the VAE's code
    of the picture the AE decodes from it."""
    kind, code = decode_code(data, models)
    if kind == "vae":
        return torch.from_numpy(code).float()
    picture = decompress(data, models)
    return models["vae"].network.code(picture.unsqueeze(0)).squeeze(0).float().detach()


def random_code(model: FaceAE, seed: int, source: str = "fitted", temperature: float = 1.0) -> torch.Tensor:
    """One sampled code (see FaceAE.sample_codes), reproducible from its seed."""
    gen = torch.Generator().manual_seed(int(seed))
    return model.sample_codes(1, source, temperature, gen)[0]


@torch.inference_mode()
def morph_frames(
    model: FaceAE,
    a: torch.Tensor,
    b: torch.Tensor,
    n: int = 16,
    centre: torch.Tensor | None = None,
    refiner: Refiner | None = None,
) -> list[Image.Image]:
    """n faces along the spherical path from a to b, decoded in one batch (see pictures)."""
    ts = [i / (n - 1) for i in range(n)] if n > 1 else [0.0]
    z = torch.stack([slerp(a, b, t, centre) for t in ts])
    return [to_pil(x) for x in pictures(model, z, refiner)]


def gif_bytes(frames: Sequence[Image.Image], frame_ms: int = 90, size: int = 256, bounce: bool = True) -> bytes:
    """An endlessly looping animated GIF (there and back when `bounce`), upscaled crisply."""
    seq = list(frames) + (list(frames[-2:0:-1]) if bounce else [])
    seq = [upscale(f, size) for f in seq]
    buf = io.BytesIO()
    seq[0].save(buf, format="GIF", save_all=True, append_images=seq[1:], duration=frame_ms, loop=0)
    return buf.getvalue()


def tile(pictures: torch.Tensor, columns: int, gap: int = 2) -> torch.Tensor:
    """(N, 3, H, W) pictures in rows of `columns`, with white gaps between and around them:
    torchvision's make_grid layout. The app does not import torchvision for it: that import
    costs the server ~160 MB of memory and 1.3 s (it pulls in torch's compiler stack)."""
    n, channels, h, w = pictures.shape
    columns = min(columns, n)
    rows = -(-n // columns)
    grid = pictures.new_ones(channels, gap + rows * (h + gap), gap + columns * (w + gap))
    for i, picture in enumerate(pictures):
        row, col = divmod(i, columns)
        y, x = gap + row * (h + gap), gap + col * (w + gap)
        grid[:, y : y + h, x : x + w] = picture
    return grid


@torch.inference_mode()
def sample_grid(
    model: FaceAE,
    n: int,
    seed: int,
    columns: int,
    source: str = "fitted",
    temperature: float = 1.0,
    refiner: Refiner | None = None,
) -> Image.Image:
    """n faces decoded from sampled codes (see pictures), tiled in a grid (upscale it for display)."""
    codes = model.sample_codes(n, source, temperature, torch.Generator().manual_seed(int(seed)))
    return to_pil(tile(pictures(model, codes, refiner), columns))


def moved_code(code: np.ndarray, dirs: list[Direction], sigmas: list[float]) -> np.ndarray:
    """move() on a code held as a numpy array, as the explorer page holds codes."""
    return move(torch.from_numpy(code), dirs, sigmas).numpy()


def morph_code(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """slerp() from code a (t=0) to code b (t=1), both float32 numpy arrays."""
    return slerp(torch.from_numpy(a).float(), torch.from_numpy(b).float(), t).numpy()
