"""Identity: does a decoded face still show the same person? dlib's face-recognition ResNet.

dlib's published rule: two 128-d descriptors closer than 0.6 (Euclidean) are the same
person. Every 128x128 crop is measured the same way, whatever its quality: upscaled to
256x256, dlib's 5-point landmarks found inside the fixed box (20, 20, 236, 236), the face
chip aligned on them (dlib's get_face_chips, 150x150) and the ResNet's descriptor of the
chip. A detector is not used because it would miss the blurriest reconstructions, which
are exactly the ones a metric has to score.

The landmarks and chips come from dlib itself (~1 ms a face). The ResNet runs in torch
(`dlib_resnet`, dlib's weights read from its model file): dlib's wheel runs it without BLAS
at ~0.11 s a face, holding Python's GIL, which would freeze every session of the app meanwhile.

The model files ship inside the `face-recognition-models` package; its __init__ imports
pkg_resources (gone from new setuptools), so the files are located with find_spec instead.
Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..nets.dlib_resnet import CHIP_SIZE, DlibFaceNet
from ..spec import SAME_PERSON

MEASURE_SIZE = 256
MEASURE_BOX = (20, 20, 236, 236)


def _model_file(name: str) -> str:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise ImportError("install face-recognition-models (dlib's model files) to measure identity")
    return str(Path(spec.origin).parent / "models" / name)


@cache
def _dlib_models():
    import dlib  # the prebuilt `dlib-bin` wheel

    return (
        dlib,
        dlib.shape_predictor(_model_file("shape_predictor_5_face_landmarks.dat")),
        DlibFaceNet(_model_file("dlib_face_recognition_resnet_model_v1.dat")),
    )


def _as_uint8(images: torch.Tensor | list[Image.Image]) -> list[np.ndarray]:
    """(N, 3, H, W) floats in [0, 1], or PIL images -> HxWx3 uint8 arrays at the measuring size."""
    if not isinstance(images, list | tuple):  # a tensor
        arrays = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        pils = [Image.fromarray(a, "RGB") for a in arrays]
    else:
        pils = [img.convert("RGB") for img in images]
    return [np.ascontiguousarray(p.resize((MEASURE_SIZE, MEASURE_SIZE), Image.Resampling.BICUBIC)) for p in pils]


def _descriptors_of(arrays: list[np.ndarray]) -> np.ndarray:
    dlib, landmarks, resnet = _dlib_models()
    box = dlib.rectangle(*MEASURE_BOX)
    chips = []
    for arr in arrays:
        found = dlib.full_object_detections()
        found.append(landmarks(arr, box))
        chips.append(dlib.get_face_chips(arr, found, size=CHIP_SIZE, padding=0.25)[0])
    return resnet(np.stack(chips)).double().numpy()


def descriptors(images: torch.Tensor | list[Image.Image], chunk: int = 64) -> np.ndarray:
    """(N, 128) dlib face descriptors of 128x128 crops (~7 ms a face on one core), `chunk` at a time."""
    arrays = _as_uint8(images)
    if not arrays:
        return np.zeros((0, 128))
    return np.concatenate([_descriptors_of(arrays[i : i + chunk]) for i in range(0, len(arrays), chunk)])


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Descriptor distance of each pair (row i of a with row i of b)."""
    return np.linalg.norm(np.asarray(a) - np.asarray(b), axis=1)


def summary(dist: np.ndarray) -> dict[str, float]:
    """Mean and median distance and the share of faces kept as the same person."""
    dist = np.asarray(dist, dtype=np.float64)
    return {
        "mean_distance": float(dist.mean()),
        "median_distance": float(np.median(dist)),
        "kept": float((dist < SAME_PERSON).mean()),
    }


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of descriptors (the FID formula)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = np.real(linalg.sqrtm(cov_a @ cov_b))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))
