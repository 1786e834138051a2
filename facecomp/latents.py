"""Statistics of a trained model's codes, fitted once and shipped inside its weights file.

- latent_mean, latent_std: the codec's per-dimension entropy model.
- latent_gain: how much the decoded image changes (mean squared pixel change) per unit
  change of each dimension; the codec's quantiser steps follow it.
- latent_pcs, latent_pc_std: principal directions of the codes, the explorer's sliders.
- age_direction: the ridge-regression direction of age over UTKFace's labelled codes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .data import CropCache
from .model import N_COMPONENTS, FaceAE
from .weights import read_model, save_model

GAIN_FACES = 32  # faces the decoder gain is averaged over (one decode per dimension each)


@torch.inference_mode()
def all_codes(model: FaceAE, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Full codes (N, max_latent) of uint8 NCHW images (the VAE's posterior means)."""
    out = []
    for start in range(0, len(images), batch):
        x = images[start : start + batch].float() / 255
        out.append(model.code(x).float())
    return torch.cat(out)


@torch.inference_mode()
def decoder_gain(model: FaceAE, codes: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel change per unit change of each latent dimension (finite differences)."""
    base = model.decode(codes)
    gain = torch.empty(codes.shape[1])
    for i in range(codes.shape[1]):
        eps = 0.1 * float(std[i].clamp_min(1e-3))
        moved = codes.clone()
        moved[:, i] += eps
        gain[i] = (model.decode(moved) - base).pow(2).mean() / eps**2
    return gain.clamp_min(1e-10)


def age_direction(codes: torch.Tensor, ages: list[int | None]) -> torch.Tensor:
    """Unit direction along which codes predict age (ridge regression), zero if no labels."""
    labelled = [i for i, age in enumerate(ages) if age is not None]
    if len(labelled) < 50:
        return torch.zeros(codes.shape[1])
    z = codes[labelled].double()
    z = z - z.mean(0)
    y = torch.tensor([float(ages[i]) for i in labelled], dtype=torch.float64)
    y = y - y.mean()
    ridge = 1e-2 * z.pow(2).sum(0).mean()
    w = torch.linalg.solve(z.T @ z + ridge * torch.eye(z.shape[1], dtype=torch.float64), z.T @ y)
    return (w / w.norm()).float()


def fit_latent_stats(model: FaceAE, images: torch.Tensor, ages: list[int | None], gain_faces: int = GAIN_FACES) -> None:
    """Fill the model's latent buffers from training images (uint8 NCHW)."""
    model.eval()
    codes = all_codes(model, images)
    mean, std = codes.mean(0), codes.std(0).clamp_min(1e-6)
    centred = codes - mean
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    pc_std = singular[:N_COMPONENTS] / (len(codes) - 1) ** 0.5
    model.latent_mean.copy_(mean)
    model.latent_std.copy_(std)
    model.latent_pcs.copy_(vh[:N_COMPONENTS])
    model.latent_pc_std.copy_(pc_std)
    model.age_direction.copy_(age_direction(codes, ages))
    model.latent_gain.copy_(decoder_gain(model, codes[:gain_faces], std))


def fit_and_save(weights_file: Path, data: Path, limit: int | None = 8000) -> dict:
    """Fit the statistics on the training split and rewrite the weights and their card."""
    model = read_model(weights_file)
    cache = CropCache(data, "train")
    images, ages = cache.load_all(), cache.ages()
    if limit:
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:limit]
        images, ages = images[pick], [ages[i] for i in pick.tolist()]
    fit_latent_stats(model, images, ages)
    card_file = Path(weights_file).with_suffix(".json")
    card = json.loads(card_file.read_text()) if card_file.exists() else {}
    card["latent_statistics"] = {"faces": len(images), "labelled_ages": sum(a is not None for a in ages)}
    return save_model(model, Path(weights_file), card)
