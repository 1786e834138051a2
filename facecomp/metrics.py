"""Image quality metrics on (3, H, W) tensors in [0, 1]; SSIM from scikit-image."""

from __future__ import annotations

import math

import numpy as np
import torch
from skimage.metrics import structural_similarity


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).pow(2).mean())


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / max(mse(a, b), 1e-12))


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """SSIM as Wang et al. define it (Gaussian window, sigma 1.5), averaged over RGB."""
    x = a.detach().float().permute(1, 2, 0).cpu().numpy()
    y = b.detach().float().permute(1, 2, 0).cpu().numpy()
    return float(
        structural_similarity(
            x, y, data_range=1.0, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    )


def summary(values: list[float] | np.ndarray) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "median": float(np.median(arr)), "std": float(arr.std())}


def histogram(values: list[float] | np.ndarray, bins: int = 30) -> dict[str, list[float]]:
    counts, edges = np.histogram(np.asarray(values, dtype=np.float64), bins=bins)
    return {"edges": [round(float(e), 6) for e in edges], "counts": counts.tolist()}
