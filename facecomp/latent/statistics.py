"""Statistics of a trained model's codes, fitted once and shipped inside its weights file.

- latent_mean, latent_std: the codec's per-dimension entropy model.
- latent_gain: how much the decoded image changes (mean squared pixel change) per unit
  change of each dimension; the codec's quantiser steps follow it.
- latent_pcs, latent_pc_std: principal directions of the codes, the explorer's sliders.
- direction_*: named directions (facecomp.latent.attributes), fitted when labels are given.
- latent_chol: with latent_mean, the Gaussian fitted to training codes (the fitted sampler).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..data import CropCache
from ..nets.autoencoder import N_COMPONENTS, FaceAE
from ..weights import CODEC_SHA_FIELD, read_model, save_model
from .attributes import MIN_BALANCED_ACCURACY, LabelDirection, Labelled, fit_directions, load_labels

GAIN_FACES = 32  # faces the decoder gain is averaged over (one decode per dimension each)
EDIT_VECTOR_FACES = 512  # training codes a slider vector's gradient is averaged over


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


def fitted_cholesky(centred: torch.Tensor) -> torch.Tensor:
    """Cholesky factor of the codes' covariance: the fitted sampler draws mean + L @ eps.

    A little jitter on the diagonal keeps it positive definite where dimensions are
    (nearly) unused, as the VAE's collapsed ones are.
    """
    cov = (centred.double().T @ centred.double()) / (len(centred) - 1)
    jitter = 1e-6 * float(cov.diagonal().mean())
    return torch.linalg.cholesky(cov + jitter * torch.eye(len(cov), dtype=cov.dtype)).float()


def fit_latent_stats(model: FaceAE, images: torch.Tensor, gain_faces: int = GAIN_FACES) -> None:
    """Fill the model's code statistics from training images (uint8 NCHW)."""
    model.eval()
    codes = all_codes(model, images)
    mean, std = codes.mean(0), codes.std(0).clamp_min(1e-6)
    centred = codes - mean
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    pc_std = singular[:N_COMPONENTS] / (len(codes) - 1) ** 0.5
    model.latent_mean.copy_(mean)
    model.latent_std.copy_(std)
    model.latent_chol.copy_(fitted_cholesky(centred))
    model.latent_pcs.copy_(vh[:N_COMPONENTS])
    model.latent_pc_std.copy_(pc_std)
    model.latent_gain.copy_(decoder_gain(model, codes[:gain_faces], std))


def fit_named_directions(model: FaceAE, labelled: Labelled, ages: AgeCodes) -> list[LabelDirection]:
    """Fit the attribute and age directions on the model's codes and store them in the model,
    each with the vector its slider moves along (edit_vectors, on training codes)."""
    codes = all_codes(model, labelled.images)
    found = fit_directions(codes, labelled, labelled.val, ages(model))
    train = torch.from_numpy(np.flatnonzero(~labelled.val))
    pick = train[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:EDIT_VECTOR_FACES]]
    set_directions(model, found, edit_vectors(model, found, codes[pick]))
    return found


def edit_vectors(model: FaceAE, found: list[LabelDirection], codes: torch.Tensor, batch: int = 128) -> torch.Tensor:
    """(len(found), max_latent) unit vectors for the sliders: per classifier, the mean over
    `codes` of the gradient of its output read back from the decoding, d/dz [w . code(decode(z))].

    Moving along the classifier's own normal changes the code mostly where the decoder draws
    little (the encoder reads cues from photos that the decoder cannot render), so decoding
    and re-encoding undoes most of the move: a 2-sigma edit mostly fails to flip the label.
    The gradient through decoder and encoder points where a move becomes a change in the
    picture that the classifier reads back.
    """
    weights = torch.stack([d.weight for d in found]).float()
    total = torch.zeros_like(weights)
    for start in range(0, len(codes), batch):
        z = codes[start : start + batch].float().clone().requires_grad_(True)
        with torch.enable_grad():
            read_back = model.code(model.decode(z)) @ weights.T  # (batch, directions)
            for i in range(len(found)):
                (grad,) = torch.autograd.grad(read_back[:, i].sum(), z, retain_graph=i + 1 < len(found))
                total[i] += grad.sum(0)
    return total / total.norm(dim=1, keepdim=True).clamp_min(1e-12)


def set_directions(model: FaceAE, found: list[LabelDirection], vectors: torch.Tensor | None = None) -> None:
    """Replace the model's named directions (their number fixes the buffers' shapes).

    vectors: the sliders' unit vectors (edit_vectors); None moves along each classifier's normal.
    """
    model.cfg = replace(model.cfg, directions=tuple(d.name for d in found))
    chol = model.latent_chol.float()
    weights = torch.stack([d.weight for d in found]) if found else torch.zeros(0, model.cfg.max_latent)
    if vectors is None:
        vectors = weights / weights.norm(dim=1, keepdim=True).clamp_min(1e-12)
    model.direction_weights = weights
    model.direction_offset = torch.tensor([d.bias - d.threshold for d in found])
    model.direction_accuracy = torch.tensor([d.accuracy for d in found])
    model.direction_vectors = vectors.float()
    model.direction_std = (vectors.float() @ chol).norm(dim=1)  # sqrt(v' C v) with C = L L'


class AgeCodes:
    """UTKFace's labelled training and validation crops; their codes for a given model."""

    def __init__(self, data: Path) -> None:
        self.parts = []
        for split in ("train", "val"):
            cache = CropCache(data, split)
            ages = cache.ages()
            keep = [i for i, a in enumerate(ages) if a is not None]
            self.parts.append((cache.load_all()[keep], [ages[i] for i in keep]))

    def __call__(self, model: FaceAE) -> tuple[torch.Tensor, list[int], torch.Tensor, list[int]]:
        (train_images, train_ages), (val_images, val_ages) = self.parts
        return all_codes(model, train_images), train_ages, all_codes(model, val_images), val_ages


def fit_and_save(
    weights_file: Path, data: Path, labels: Path | None = None, limit: int | None = 8000, directions_only: bool = False
) -> dict:
    """Fit the statistics on the training split (and the named directions when `labels`
    holds a `prepare-labels` cache) and rewrite the weights and their card.

    directions_only: refit only the named directions; the codec's statistics stay as they
    are, so existing .fcz files and the detail layer built on them are untouched.
    """
    if directions_only and labels is None:
        raise ValueError("refitting only the named directions needs labels (--labels)")
    model = read_model(weights_file)
    card_file = Path(weights_file).with_suffix(".json")
    card = json.loads(card_file.read_text()) if card_file.exists() else {}
    if directions_only:  # the new file still decodes the .fcz files the old one wrote
        card.setdefault(CODEC_SHA_FIELD, card.get("sha256"))
    else:
        images = CropCache(data, "train").load_all()
        if limit:
            images = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:limit]]
        fit_latent_stats(model, images)
        card["latent_statistics"] = {"faces": len(images)}
        card.pop(CODEC_SHA_FIELD, None)
    if labels is not None:
        labelled = load_labels(labels)
        found = fit_named_directions(model, labelled, AgeCodes(data))
        card["named_directions"] = {
            "labelled_faces": {"celeba_train": int((~labelled.val).sum()), "celeba_val": int(labelled.val.sum())},
            "balanced_accuracy": {d.name: round(d.accuracy, 4) for d in found},
            "min_balanced_accuracy": MIN_BALANCED_ACCURACY,
            "slider_vectors": f"edit_vectors on {EDIT_VECTOR_FACES} training codes",
        }
    return save_model(model, Path(weights_file), card)
