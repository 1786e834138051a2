"""Latent-space exploration without Streamlit: slider directions, slider -> latent,
spherical interpolation, morph GIFs and grids of prior samples."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from .model import FaceAE
from .visual import grid, to_pil, to_tensor, upscale

SLIDER_RANGE = 3.0  # sliders run over +-3 standard deviations


@dataclass(frozen=True)
class Direction:
    """A unit direction in latent space and the spread of training codes along it."""

    name: str
    vector: torch.Tensor  # (max_latent,), unit length
    std: float
    note: str = ""


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
        return [Direction(f"Direction {i + 1}", pcs[i].clone(), float(stds[i])) for i in range(n)]
    size = model.cfg.max_latent
    return [
        Direction(f"Dimension {i + 1}", torch.eye(size)[i], float(model.latent_std[i]), note="unfitted: latent axis")
        for i in range(min(n, size))
    ]


def age_direction(model: FaceAE) -> Direction | None:
    """The fitted 'age' direction, or None when the weights carry none."""
    vec = model.age_direction.float()
    norm = float(vec.norm())
    if norm == 0.0:
        return None
    vec = vec / norm
    # Spread along an arbitrary direction, treating dimensions as independent.
    std = float(torch.sqrt((vec.pow(2) * model.latent_std.float().pow(2)).sum()))
    return Direction("Age (older →)", vec, std, note="learned from UTKFace age labels")


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


@torch.inference_mode()
def decode(model: FaceAE, z: torch.Tensor, latent: int | None = None) -> Image.Image:
    """Decode one code (optionally only its first `latent` numbers) to a 128x128 PIL image."""
    z = z.float().reshape(1, -1)
    if latent is not None:
        z = z[:, :latent]
    return to_pil(model.decode(z))


def prior_code(model: FaceAE, seed: int) -> torch.Tensor:
    """A code drawn from the VAE prior N(0, I), reproducible from its seed."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(model.cfg.max_latent, generator=gen)


@torch.inference_mode()
def morph_frames(
    model: FaceAE, a: torch.Tensor, b: torch.Tensor, n: int = 16, centre: torch.Tensor | None = None
) -> list[Image.Image]:
    """n faces along the spherical path from a to b, decoded in one batch."""
    ts = [i / (n - 1) for i in range(n)] if n > 1 else [0.0]
    z = torch.stack([slerp(a, b, t, centre) for t in ts])
    return [to_pil(x) for x in model.decode(z)]


def gif_bytes(frames: Sequence[Image.Image], frame_ms: int = 90, size: int = 256, bounce: bool = True) -> bytes:
    """An endlessly looping animated GIF (there and back when `bounce`), upscaled crisply."""
    seq = list(frames) + (list(frames[-2:0:-1]) if bounce else [])
    seq = [upscale(f, size) for f in seq]
    buf = io.BytesIO()
    seq[0].save(buf, format="GIF", save_all=True, append_images=seq[1:], duration=frame_ms, loop=0)
    return buf.getvalue()


@torch.inference_mode()
def sample_grid(model: FaceAE, n: int, seed: int, columns: int, size: int = 192) -> Image.Image:
    """n faces decoded from prior samples, tiled in a grid."""
    z = torch.stack([prior_code(model, seed * 1000 + i) for i in range(n)])
    return grid([upscale(to_pil(x), size) for x in model.decode(z)], columns)
