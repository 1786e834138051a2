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


def fake_evaluation() -> dict:
    """A dict of the shape `python -m facecomp evaluate` writes, with made-up numbers."""
    return {"faces": 17, "records": fake_records(), "rate_distortion": {"fcz": [], "classic": fake_sweeps()}}


def fake_sweeps() -> list[dict]:
    return [
        {"format": fmt, "quality": q, "bytes": base + 20 * q, "psnr": 22 + q / 10, "ssim": 0.6 + q / 300}
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
                    "codec": {"psnr": summary(psnr - 0.3), "ssim": summary(0.49 + 0.05 * i)},
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
