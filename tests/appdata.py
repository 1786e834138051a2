"""Shared test data for the app tests: throwaway weights, a small evaluation JSON, real photos."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from facecomp.comparison import builtin_photo_bytes
from facecomp.latent.attributes import LabelDirection
from facecomp.latent.statistics import set_directions
from facecomp.nets.autoencoder import FaceAE, ModelConfig, build_model
from facecomp.spec import CROP_SIZE, LATENT_LADDER, MODEL_KINDS
from facecomp.weights import measured_weights, save_model

ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = "Astronaut (scikit-image)"


def summary(mean: float) -> dict:
    return {"mean": mean, "median": mean, "std": 0.1 * abs(mean)}


def fake_evaluation() -> dict:
    """A dict of the shape `python -m facecomp evaluate` writes, with made-up numbers."""
    return {
        "faces": 17,
        "codec_faces": 5,
        "records": fake_records(),
        "rate_distortion": {"fcz": [], "detail": fake_detail_curve(), "classic": fake_sweeps()},
        "budgets": fake_budgets(),
        "budget_table": fake_budget_table(),
    }


def identity(kept: float) -> dict:
    return {"mean_distance": 0.7 - kept / 4, "median_distance": 0.7 - kept / 4, "kept": kept}


def fake_budget_table(faces: int = 5) -> list[dict]:
    """Every codec held to each budget: AE and VAE always fit; JPEG never does; at 512 bytes WebP
    has the best PSNR but only 2 of 5 files fit, so the AE is the budget's best."""
    rows = []
    for max_bytes in (32, 64, 128, 256, 512, 1024, 2048):
        step = max_bytes.bit_length()  # 6 at 32 bytes, 12 at 2048
        for codec, psnr, fitted in (
            ("ae", 15.0 + step, faces),
            ("vae", 14.5 + step, faces),
            ("JPEG", None, 0),
            ("WEBP", 16.0 + step, 2 if max_bytes == 512 else faces if max_bytes > 512 else 0),
        ):
            row = {
                "codec": codec,
                "max_bytes": max_bytes,
                "faces": faces,
                "fitted": fitted,
                "bytes": max_bytes - 2.0 if fitted else None,
                "psnr": psnr if fitted else None,
                "ssim": 0.05 * step if fitted else None,
                "identity": identity(min(1.0, step / 10)) if fitted else None,
            }
            if codec in ("ae", "vae"):
                row |= {"detail_files": faces if max_bytes >= 128 else 0, "latents": [128]}
            else:
                row["smallest_file"] = 0.0 if fitted else 980.0 if codec == "JPEG" else 360.0
            rows.append(row)
    return rows


def fake_detail_curve() -> list[dict]:
    return [
        {
            "model": model,
            "quality": q,
            "bytes": 120.0 + 40 * q,
            "estimated_bytes": 118.0 + 40 * q,
            "psnr": 24.0 + q / 4,
            "ssim": 0.68 + q / 200,
            "identity": identity(min(1.0, 0.6 + q / 40)),
        }
        for model in ("ae", "vae")
        for q in (0, 8, 16, 24, 32, 40)
    ]


def fake_budgets() -> list[dict]:
    """Per budget: the AE at 128 fits every face and is best; the AE at 256 is better but one file does not fit."""
    rows = []
    for max_bytes in (64, 128):
        for latent, psnr, fitted in ((64, 23.0, 5), (128, 24.0, 5), (256, 25.0, 4)):
            rows.append(
                {
                    "model": "ae",
                    "latent": latent,
                    "max_bytes": max_bytes,
                    "fitted": fitted,
                    "bytes": max_bytes - 3.0,
                    "largest_file": max_bytes,
                    "psnr": psnr + max_bytes / 64,
                    "ssim": 0.7,
                }
            )
    return rows


def fake_sweeps() -> list[dict]:
    return [
        {
            "format": fmt,
            "quality": q,
            "bytes": base + 20 * q,
            "median_bytes": base + 20 * q,
            "psnr": 22 + q / 10,
            "ssim": 0.6 + q / 300,
            "identity": identity(min(1.0, 0.5 + q / 100)),
        }
        for fmt, base in (("JPEG", 980), ("WEBP", 360), ("AVIF", 510))
        for q in (0, 10, 50, 90)
    ]


def fake_records() -> list[dict]:
    records = []
    for model, offset in (("ae", 1.0), ("vae", 0.0)):
        for i, k in enumerate(LATENT_LADDER):
            psnr = 20.0 + offset + 1.2 * i
            records.append(
                {
                    "model": model,
                    "latent": k,
                    "psnr": summary(psnr),
                    "ssim": summary(0.5 + 0.05 * i),
                    "mse": summary(10 ** (-psnr / 10)),
                    "noisy": {"psnr": summary(psnr - 1), "ssim": summary(0.45 + 0.05 * i), "mse": summary(0.01)},
                    "bytes": {"real": 30.0 + 0.5 * k, "estimated": 29.0 + 0.5 * k},
                    "codec": {
                        "psnr": summary(psnr - 0.3),
                        "ssim": summary(0.49 + 0.05 * i),
                        "identity": identity(min(1.0, 0.4 + 0.1 * i)),
                    },
                    "hist": {
                        "psnr": {"edges": [psnr - 2, psnr - 1, psnr, psnr + 1], "counts": [3, 10, 4]},
                        "ssim": {"edges": [0.4, 0.5, 0.6, 0.7], "counts": [2, 9, 6]},
                        "mse": {"edges": [0.001, 0.002, 0.003, 0.004], "counts": [5, 8, 4]},
                    },
                    "classic": {
                        "JPEG": {"psnr": None, "ssim": None, "bytes": None, "failed": 17},
                        "WEBP": {"psnr": 18.0 + i, "ssim": 0.4 + 0.05 * i, "bytes": 28.0 + 0.5 * k, "failed": 3},
                        "AVIF": {"psnr": 19.0 + i, "ssim": 0.45 + 0.05 * i, "bytes": 29.0 + 0.5 * k, "failed": 1},
                    },
                }
            )
    return records


def old_evaluation() -> dict:
    """An evaluation from before the budget table, the detail layer's curve and identity."""
    evaluation = fake_evaluation()
    del evaluation["budget_table"], evaluation["rate_distortion"]["detail"]
    for row in evaluation["rate_distortion"]["classic"]:
        del row["identity"]
    for record in evaluation["records"]:
        del record["codec"]["identity"]
    return evaluation


def make_weights_dir(directory: Path, evaluation: bool | dict = True) -> Path:
    """Untrained weights and, unless `evaluation` is False, an evaluation JSON (`fake_evaluation()`
    of these weights when it is True, else the dict given)."""
    write_untrained_weights(directory)
    write_test_refiner(directory)
    if evaluation:
        data = evaluation
        if evaluation is True:
            data = fake_evaluation() | {"weights": {kind: measured_weights(kind, directory) for kind in MODEL_KINDS}}
        (directory / "evaluation.json").write_text(json.dumps(data))
    return directory


def write_test_refiner(directory: Path) -> Path:
    """A sharp decoding whose last layer is random, not zero, so its pictures differ from the MSE
    decoding's, and a realism report giving real faces' fine-detail share."""
    from facecomp.nets.refiner import Refiner
    from facecomp.weight_files import sharp_path
    from facecomp.weights import save_refiner

    refiner = Refiner()
    torch.nn.init.normal_(refiner.head[-1].weight, std=0.05, generator=torch.Generator().manual_seed(0))
    save_refiner(refiner, sharp_path(directory), {"what": "a test refiner"})
    rows = [
        {"set": "real faces", "decoding": "none", "classifier_accuracy": 0.51, "detail_energy": 0.97},
        *(
            {"set": "vae prior samples", "decoding": decoding, "classifier_accuracy": told, "detail_energy": detail}
            for decoding, told, detail in (("mse", 0.97, 0.3), ("sharp", 0.7, 0.9))
        ),
    ]
    report = {"pictures": 1000, "seeds": [0], "real_detail_share": 0.05, "rows": rows}
    (directory / "realism.json").write_text(json.dumps(report))
    return sharp_path(directory)


def astronaut_png() -> bytes:
    """A real photo, encoded as PNG bytes (scikit-image ships it)."""
    return builtin_photo_bytes(ASTRONAUT)


def _calibrate_batchnorm(model: FaceAE) -> None:
    """Batch-norm statistics from random inputs (no gradient step): an untrained decoder then
    responds visibly to its code, so tests can see pictures change."""
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None  # a plain average over the batches below
            mod.reset_running_stats()
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model.decode(torch.randn(32, model.cfg.max_latent))
            model.encode(torch.rand(32, 3, CROP_SIZE, CROP_SIZE))
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = 0.1
    model.eval()


# Named directions of the test weights: (name, held-out balanced accuracy).
TEST_DIRECTIONS = (("Smiling", 0.93), ("Age", 0.88), ("Hat", 0.61))


def write_untrained_weights(directory: Path, fitted: bool = True, seed: int = 0) -> Path:
    """Untrained AE and VAE weights with model cards in `directory`, for tests and benchmarks of
    the app's plumbing (they do not depend on the shipped files' quality).

    `fitted` fills the VAE's explorer buffers with random orthonormal principal directions
    and named directions (two that pass the accuracy bar, one that does not), so the
    fitted code paths run too.
    """
    directory = Path(directory)
    for kind in ("ae", "vae"):
        torch.manual_seed(seed)
        model = build_model(ModelConfig(kind=kind))
        _calibrate_batchnorm(model)
        if fitted and kind == "vae":
            n_pcs, size = model.latent_pcs.shape
            q, _ = torch.linalg.qr(torch.randn(size, n_pcs + len(TEST_DIRECTIONS)))
            model.latent_pcs.copy_(q[:, :n_pcs].T)
            # Large spreads: an untrained decoder barely reacts to small moves, and tests must see change.
            model.latent_pc_std.copy_(torch.linspace(8.0, 2.0, n_pcs))
            named = [
                LabelDirection(name, q[:, n_pcs + i], 0.0, accuracy)
                for i, (name, accuracy) in enumerate(TEST_DIRECTIONS)
            ]
            set_directions(model, named)
            model.direction_std.fill_(6.0)
        history = [
            {
                "epoch": e,
                "train": {"reconstruction": 0.05 / e, "kl": 0.01, "total": 0.05 / e + 0.001},
                "val_psnr": {str(k): 12.0 + e + k / 256 for k in LATENT_LADDER},
                "minutes": 0.5 * e,
            }
            for e in (1, 2, 3)
        ]
        card = {
            "model": kind,
            "latent_sizes": list(LATENT_LADDER),
            "kl_weight": 0.001 if kind == "vae" else 0.0,
            "training_data": "none: untrained weights for tests",
            "epochs": 3,
            "training_minutes": 1.5,
            "hardware": "none",
            "validation_psnr": history[-1]["val_psnr"],
            "history": history,
        }
        save_model(model, directory / f"{kind}.safetensors", card=card)
    return directory
