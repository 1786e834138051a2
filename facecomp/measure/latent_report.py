"""How good is a latent space? Sample quality (FD-dlib), identity kept, and edits that do what they say.

FD-dlib is the FID recipe with a face-recognition network instead of ImageNet's Inception
(whose weights cannot be had offline): the Fréchet distance between Gaussians fitted to
dlib descriptors of decoded samples and of real validation faces. Lower is more face-like;
two halves of the real faces give its floor at that sample size.

`python -m facecomp latent-space` writes the JSON that docs/results.md's tables, the Benchmarks page
and the explorer's choice of default sliders are drawn from.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..data import CropCache
from ..latent.attributes import Labelled, load_labels
from ..latent.statistics import all_codes
from ..nets.autoencoder import FaceAE
from ..nets.refiner import Refiner, sharpen
from ..spec import LATENT_LADDER
from ..weights import load_models, read_model
from . import identity

FD_FACES = 2000  # real faces and decoded samples per FD-dlib, for the shipped models
SWEEP_FD_FACES = 1000  # the same for each run of a sweep
IDENTITY_FACES = 500  # validation faces whose reconstructions are checked for identity
IDENTITY_LATENT = 256
EDIT_FACES = 100  # held-out labelled faces per named direction
EDIT_SIGMAS = 2.0  # the move that should flip the attribute
IDENTITY_SIGMAS = 1.0  # the move after which the person should still be the same
# The latent-space issue's bar for an edit that does what it says on held-out faces.
TARGET_FLIP = 0.70
TARGET_IDENTITY = 0.80


@torch.inference_mode()
def decode_all(model: FaceAE, codes: torch.Tensor, batch: int = 200) -> torch.Tensor:
    return torch.cat([model.decode(codes[i : i + batch]) for i in range(0, len(codes), batch)])


@torch.inference_mode()
def sample_descriptors(
    model: FaceAE, source: str, n: int = FD_FACES, temperature: float = 1.0, seed: int = 0
) -> np.ndarray:
    codes = model.sample_codes(n, source, temperature, torch.Generator().manual_seed(seed))
    return identity.descriptors(decode_all(model, codes))


def validation_faces(data: Path, n: int) -> torch.Tensor:
    """n validation faces (uint8 NCHW), spread over the split by a fixed permutation."""
    images = CropCache(data, "val").load_all()
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:n]
    return images[pick]


@torch.inference_mode()
def identity_kept(model: FaceAE, faces: torch.Tensor, real_desc: np.ndarray, latent: int) -> dict[str, float]:
    """Descriptor distance between validation faces (uint8 NCHW) and their reconstructions at `latent`."""
    codes = all_codes(model, faces)
    recon = decode_all(model, codes[:, :latent])
    return identity.summary(identity.distances(real_desc, identity.descriptors(recon)))


def model_report(model: FaceAE, card: dict, real: tuple[torch.Tensor, np.ndarray], n_fd: int = FD_FACES) -> dict:
    """PSNR per latent size (from the card), identity kept, FD-dlib of both samplers on n_fd faces."""
    faces, desc = real
    fd = {
        src: identity.frechet_distance(sample_descriptors(model, src, n_fd), desc[:n_fd]) for src in ("prior", "fitted")
    }
    return {
        "fd_faces": n_fd,
        "kl_weight": card.get("kl_weight"),
        "validation_psnr": card.get("validation_psnr"),
        f"identity_{IDENTITY_LATENT}": identity_kept(
            model, faces[:IDENTITY_FACES], desc[:IDENTITY_FACES], IDENTITY_LATENT
        ),
        "fd_dlib": {**fd, "prior_over_fitted": fd["prior"] / fd["fitted"]},
    }


@torch.inference_mode()
def edit_report(
    model: FaceAE,
    labelled: Labelled,
    n_faces: int = EDIT_FACES,
    seed: int = 0,
    checker: FaceAE | None = None,
    refiner: Refiner | None = None,
) -> dict[str, dict]:
    """Per named direction, on held-out labelled faces (decoded by the model first; with a
    refiner, every picture is the sharp decoding of its code):

    - flip rate: move 2 sigma along the slider towards the other side of the classifier
      (towards 'has it' for faces labelled without it, away for faces labelled with it),
      decode, re-encode, and count how often the same linear classifier now says the
      opposite of the label;
    - the same flip read by `checker` (the other model: its own encoder and classifier,
      which the slider vector was not fitted through), so a move that only fools the
      model's own encoder shows up as a gap between the two rates;
    - identity kept: the share of +-1 sigma moves whose decoding dlib still calls the
      same person as the unmoved decoding.
    """
    val_idx = np.flatnonzero(labelled.val)
    rng = np.random.default_rng(seed)
    pick = torch.from_numpy(rng.permutation(val_idx)[:n_faces])
    codes = all_codes(model, labelled.images[pick])

    def show(z: torch.Tensor) -> torch.Tensor:
        mse = decode_all(model, z)
        return mse if refiner is None else sharpen(refiner, mse)

    base_desc = identity.descriptors(show(codes))
    checked = {} if checker is None else {name: j for j, name in enumerate(checker.cfg.directions)}
    report = {}
    for j, name in enumerate(model.cfg.directions):
        weights, offset = model.direction_weights[j].float(), float(model.direction_offset[j])
        unit, sigma = model.direction_vector(j), float(model.direction_std[j])
        row = {"balanced_accuracy": float(model.direction_accuracy[j]), "sigma": sigma}
        predicted = codes @ weights + offset > 0
        if name in labelled.names:  # the label says which side a face is on
            before = torch.from_numpy(labelled.labels[pick.numpy(), labelled.names.index(name)].astype(bool))
        else:  # age, a regression: the side of the median age it was scored against
            before = predicted
        towards = torch.where(before, -1.0, 1.0)  # remove it where present, add it where absent
        moved = codes + (EDIT_SIGMAS * sigma * towards)[:, None] * unit
        edited = (show(moved) * 255).round().to(torch.uint8)
        # Rates in float64: 70 of 100 in float32 is 0.69999..., under the 0.70 bar.
        row["flip_rate"] = float(((all_codes(model, edited) @ weights + offset > 0) != before).double().mean())
        if name in checked:
            k = checked[name]
            logits = all_codes(checker, edited) @ checker.direction_weights[k].float()
            says_it = logits + float(checker.direction_offset[k]) > 0
            row["flip_rate_other_model"] = float((says_it != before).double().mean())
        kept = []
        for sign in (1.0, -1.0):
            moved = codes + sign * IDENTITY_SIGMAS * sigma * unit
            kept.append(identity.distances(base_desc, identity.descriptors(show(moved))))
        row["identity_kept"] = float((np.concatenate(kept) < identity.SAME_PERSON).mean())
        row["faces"] = len(pick)
        row["meets_edit_targets"] = bool(row["flip_rate"] >= TARGET_FLIP and row["identity_kept"] >= TARGET_IDENTITY)
        report[name] = row
    return report


REPORT_FILE = "latent_space.json"


def load_latent_space_report(weights_dir: Path) -> dict:
    """The committed report beside the weights, or {} when there is none."""
    path = Path(weights_dir) / REPORT_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def latent_space_report(
    data: Path, labels: Path | None, weights_dir: Path | None = None, sweep: list[Path] | None = None
) -> dict:
    """Everything docs/results.md and the app show about the latent spaces, as one JSON-able dict."""
    faces = validation_faces(data, FD_FACES)
    desc = identity.descriptors(faces.float() / 255)
    half = FD_FACES // 2
    result: dict = {
        "fd_faces": FD_FACES,
        "identity_faces": IDENTITY_FACES,
        "real_halves_fd": identity.frechet_distance(desc[:half], desc[half:]),
        "ladder": list(LATENT_LADDER),
        "models": {},
    }
    models, cards = load_models(weights_dir)
    for kind, model in models.items():
        result["models"][kind] = model_report(model.network, cards[kind], (faces, desc))
        print(kind, json.dumps(result["models"][kind]["fd_dlib"]), flush=True)
    if sweep:
        result["sweep_fd_faces"] = SWEEP_FD_FACES
        result["sweep"] = []
        for path in sweep:
            card = json.loads(Path(path).with_suffix(".json").read_text())
            row = model_report(read_model(Path(path)), card, (faces, desc), SWEEP_FD_FACES)
            result["sweep"].append({"weights": str(path), "epochs": card.get("epochs"), **row})
            print(path, row["kl_weight"], json.dumps(row["fd_dlib"]), flush=True)
    if labels is not None:
        result["edits"] = edits_report(labels, weights_dir)
    return result


def edits_report(labels: Path, weights_dir: Path | None = None) -> dict[str, dict]:
    """The explorer's (VAE's) named-slider edits, cross-checked by the AE's classifiers."""
    models, _ = load_models(weights_dir)
    return edit_report(models["vae"].network, load_labels(labels), checker=models["ae"].network)
