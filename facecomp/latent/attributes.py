"""Named latent directions: CelebA's descriptive attributes and UTKFace's age.

`prepare_labels` crops every CelebA photo that has published attributes into a cache of
its own (`data/labels`). Most of them are CelebA's 89x109 thumbnails, which the training
cache skips as too small to learn sharp faces from; for learning which way "Smiling"
points in latent space a softer crop is enough. UTKFace's ages come from the training
cache (its file names).

A direction is a linear classifier on full codes (logistic regression, classes weighted
equally), or for age a ridge regression; the slider moves along its edit vector
(statistics.edit_vectors), the way the classifier's output grows when read back from the
decoded picture. It is scored on held-out labelled faces (the same identity rule as the
training split), and the explorer offers only directions that predict their label with at
least MIN_BALANCED_ACCURACY.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data import is_validation
from ..faces import ImageLoadError, canonical_crop, load_image

ATTRIBUTES_FILE = "celeba_attributes.txt"
MIN_BALANCED_ACCURACY = 0.85
AGE = "Age"
# CelebA's descriptive attributes (not the annotators' judgements such as 'Attractive'),
# with the name the slider shows; No_Beard is flipped so that the slider adds a beard.
DESCRIPTIVE = {
    "Smiling": "Smiling",
    "Eyeglasses": "Eyeglasses",
    "Male": "Male",
    "Young": "Young",
    "Blond_Hair": "Blond hair",
    "Black_Hair": "Black hair",
    "Brown_Hair": "Brown hair",
    "Gray_Hair": "Grey hair",
    "No_Beard": "Beard",
    "Mustache": "Moustache",
    "Goatee": "Goatee",
    "Bangs": "Bangs",
    "Bald": "Bald",
    "Mouth_Slightly_Open": "Mouth open",
    "Wearing_Hat": "Hat",
    "Heavy_Makeup": "Heavy make-up",
    "Wearing_Lipstick": "Lipstick",
    "Pale_Skin": "Pale skin",
    "Wavy_Hair": "Wavy hair",
    "Rosy_Cheeks": "Rosy cheeks",
}
INVERTED = {"No_Beard"}


def slider_placement(accuracy: float, edit: dict | None) -> str:
    """Where the explorer puts a fitted direction: "not shown" below the accuracy bar; "shown"
    when its measured edit does what it says (`meets_edit_targets` in latent_space.json's
    `edits`, or nothing measured); else "under more"."""
    if accuracy < MIN_BALANCED_ACCURACY:
        return "not shown"
    return "shown" if (edit or {}).get("meets_edit_targets", True) else "under more"


@dataclass
class Labelled:
    """Crops with labels: uint8 NCHW images, one column per label (1, 0, or -1 unknown)."""

    images: torch.Tensor
    labels: np.ndarray  # (N, L) int8
    names: list[str]  # label names (slider names)
    val: np.ndarray  # (N,) bool: held out


def read_attributes(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """CelebA's attribute file: header of names, then `folder/file.jpg` and +-1 per attribute."""
    lines = path.read_text().splitlines()
    header = lines[0].split()[1:]
    rows = {}
    for line in lines[1:]:
        parts = line.split()
        if parts:
            rows[parts[0]] = np.array([int(v) for v in parts[1:]], dtype=np.int8)
    return header, rows


def _crop(path: Path) -> np.ndarray | None:
    try:
        crop, _ = canonical_crop(load_image(path))
    except (ImageLoadError, LookupError):
        return None
    return np.asarray(crop)


def prepare_labels(faces_root: Path, out: Path, workers: int = 2) -> dict:
    """Crop the CelebA photos with attributes into `out` (crops.npy, labels.npy, index.json)."""
    header, rows = read_attributes(faces_root / ATTRIBUTES_FILE)
    columns = [header.index(name) for name in DESCRIPTIVE]
    files = sorted(rows)
    with ProcessPoolExecutor(workers) as pool:
        crops = list(tqdm(pool.map(_crop, [faces_root / f for f in files], chunksize=64), total=len(files)))
    kept = [i for i, c in enumerate(crops) if c is not None]
    labels = np.stack([rows[files[i]][columns] for i in kept])
    for j, name in enumerate(DESCRIPTIVE):
        if name in INVERTED:
            labels[:, j] = -labels[:, j]
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "crops.npy", np.stack([crops[i] for i in kept]))
    np.save(out / "labels.npy", (labels > 0).astype(np.int8))
    index = {
        "files": [files[i] for i in kept],
        "attributes": list(DESCRIPTIVE),
        "skipped_no_face": len(files) - len(kept),
    }
    (out / "index.json").write_text(json.dumps(index))
    print(f"kept {len(kept)} of {len(files)} labelled photos ({index['skipped_no_face']} without a detected face)")
    return index


def load_labels(labels_dir: Path) -> Labelled:
    index = json.loads((labels_dir / "index.json").read_text())
    images = torch.from_numpy(np.load(labels_dir / "crops.npy")).permute(0, 3, 1, 2)
    val = np.array([is_validation(Path(f)) for f in index["files"]])
    names = [DESCRIPTIVE[a] for a in index["attributes"]]
    return Labelled(images, np.load(labels_dir / "labels.npy"), names, val)


def balanced_accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean of the true-positive and true-negative rates (chance is 0.5 however rare the label)."""
    predicted, truth = np.asarray(predicted, bool), np.asarray(truth, bool)
    if truth.all() or not truth.any():
        return float("nan")
    return float((predicted[truth].mean() + (~predicted[~truth]).mean()) / 2)


def logistic_direction(codes: torch.Tensor, labels: torch.Tensor, l2: float = 1e-2) -> tuple[torch.Tensor, float]:
    """(w, b) of an L2-regularised logistic regression, both classes weighted equally."""
    x = codes.double()
    y = labels.double()
    pos = float(y.mean())
    weight = torch.where(y > 0, 0.5 / pos, 0.5 / (1 - pos))
    scale = x.std(0).clamp_min(1e-6)  # fit on standardised codes: one l2 for every model
    xs = x / scale
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = xs @ w + b
        loss = (weight * torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")).mean()
        loss = loss + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return (w.detach() / scale).float(), float(b.detach())


def ridge_direction(codes: torch.Tensor, target: torch.Tensor, ridge: float = 1e-2) -> tuple[torch.Tensor, float]:
    """(w, b) of a ridge regression of `target` on codes."""
    z = codes.double()
    mean = z.mean(0)
    zc = z - mean
    y = target.double()
    lam = ridge * zc.pow(2).sum(0).mean()
    w = torch.linalg.solve(zc.T @ zc + lam * torch.eye(z.shape[1], dtype=torch.float64), zc.T @ (y - y.mean()))
    return w.float(), float(y.mean() - mean @ w)


@dataclass
class LabelDirection:
    """A fitted named direction: unit vector, the classifier that defines it, held-out accuracy."""

    name: str
    weight: torch.Tensor  # classifier weights on codes (unnormalised)
    bias: float
    accuracy: float  # balanced accuracy on held-out labelled faces
    threshold: float = 0.0  # logits above it mean "has the attribute" (age: above the median age)


def fit_directions(
    codes: torch.Tensor, labelled: Labelled, val_codes_mask: np.ndarray, age_codes: tuple, min_positive: int = 40
) -> list[LabelDirection]:
    """Fit a direction per label on training codes and score it on held-out ones.

    `age_codes` is (train codes, train ages, val codes, val ages) from UTKFace.
    """
    found = []
    train, val = ~val_codes_mask, val_codes_mask
    for j, name in enumerate(labelled.names):
        y = torch.from_numpy(labelled.labels[:, j].astype(np.int64))
        if y[train].sum() < min_positive or (1 - y[train]).sum() < min_positive:
            continue
        w, b = logistic_direction(codes[train], y[train])
        acc = balanced_accuracy((codes[val].float() @ w + b > 0).numpy(), y[val].numpy())
        found.append(LabelDirection(name, w, b, acc))
    train_codes, train_ages, val_codes, val_ages = age_codes
    if len(train_ages) >= 50:
        w, b = ridge_direction(train_codes, torch.tensor(train_ages, dtype=torch.float32))
        median = float(np.median(train_ages))
        predicted = (val_codes.float() @ w + b).numpy()
        acc = balanced_accuracy(predicted > median, np.asarray(val_ages) > median)
        found.append(LabelDirection(AGE, w, b, acc, threshold=median))
    return found
