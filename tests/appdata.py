"""Shared test data for the app tests: throwaway weights, a small evaluation JSON, real photos."""

from __future__ import annotations

import json
from pathlib import Path

from facecomp.demo import builtin_photo_bytes, write_untrained_weights
from facecomp.model import LATENT_LADDER

ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = "Astronaut (scikit-image)"


def summary(mean: float) -> dict:
    return {"mean": mean, "median": mean, "std": 0.1 * abs(mean)}


def fake_evaluation() -> list[dict]:
    """Records of the shape `python -m facecomp evaluate` writes, with made-up numbers."""
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


def make_weights_dir(directory: Path, evaluation: bool = True) -> Path:
    write_untrained_weights(directory)
    if evaluation:
        (directory / "evaluation.json").write_text(json.dumps(fake_evaluation()))
    return directory


def astronaut_png() -> bytes:
    """A real photo, encoded as PNG bytes (scikit-image ships it)."""
    return builtin_photo_bytes(ASTRONAUT)
