"""Identity: does a decoded face still show the same person? dlib's face-recognition ResNet.

dlib's published rule: two 128-d descriptors closer than 0.6 (Euclidean) are the same
person. Every 128x128 crop is measured the same way, whatever its quality: upscaled to
256x256, dlib's 5-point landmarks found inside the fixed box (20, 20, 236, 236) and the
ResNet descriptor of the aligned chip. A detector is not used because it would miss the
blurriest reconstructions, which are exactly the ones a metric has to score.

The model files ship inside the `face-recognition-models` package; its __init__ imports
pkg_resources (gone from new setuptools), so the files are located with find_spec instead.
Nothing is downloaded.

dlib holds Python's GIL while it computes (~0.1 s a face; measured here, another thread
ran at 5% of its speed meanwhile). In the app's server that froze every session, so the
app measures through `DescriptorWorker`, a child process of its own (`python -m
facecomp.identity`), which imports neither torch nor anything else heavy.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import struct
import subprocess
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch is imported lazily: the worker process must stay small
    import torch

SAME_PERSON = 0.6  # dlib's published threshold on descriptor distance
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
        dlib.face_recognition_model_v1(_model_file("dlib_face_recognition_resnet_model_v1.dat")),
    )


def _as_uint8(images: torch.Tensor | list[Image.Image]) -> list[np.ndarray]:
    """(N, 3, H, W) floats in [0, 1], or PIL images -> HxWx3 uint8 arrays at the measuring size."""
    if not isinstance(images, list | tuple):  # a tensor
        import torch

        arrays = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        pils = [Image.fromarray(a, "RGB") for a in arrays]
    else:
        pils = [img.convert("RGB") for img in images]
    return [np.ascontiguousarray(p.resize((MEASURE_SIZE, MEASURE_SIZE), Image.Resampling.BICUBIC)) for p in pils]


def _descriptors_of(arrays: list[np.ndarray]) -> np.ndarray:
    dlib, landmarks, resnet = _dlib_models()
    box = dlib.rectangle(*MEASURE_BOX)
    shapes = []
    for arr in arrays:
        found = dlib.full_object_detections()
        found.append(landmarks(arr, box))
        shapes.append(found)
    return np.stack(
        [np.asarray(per_image[0], dtype=np.float64) for per_image in resnet.compute_face_descriptor(arrays, shapes)]
    )


def descriptors(images: torch.Tensor | list[Image.Image], workers: int | None = None, chunk: int = 64) -> np.ndarray:
    """(N, 128) dlib face descriptors of 128x128 crops.

    dlib's network runs on one core here (its wheel has no BLAS), about 0.1-0.2 s a face,
    so large sets are split over `workers` processes (default: every core).
    """
    arrays = _as_uint8(images)
    if not arrays:
        return np.zeros((0, 128))
    chunks = [arrays[i : i + chunk] for i in range(0, len(arrays), chunk)]
    workers = min(workers or os.cpu_count() or 1, len(chunks))
    if workers <= 1:
        return np.concatenate([_descriptors_of(c) for c in chunks])
    with ProcessPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(_descriptors_of, chunks)))


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


# ---- dlib in a process of its own, for the app -------------------------------------------

_FRAME = struct.Struct("<Q")  # each message: its length, then a pickle (only ever to our own child)


def _send(stream: BinaryIO, obj: object) -> None:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_FRAME.pack(len(payload)) + payload)
    stream.flush()


def _receive(stream: BinaryIO) -> object | None:
    header = stream.read(_FRAME.size)
    if len(header) < _FRAME.size:
        return None  # the other side is gone
    return pickle.loads(stream.read(_FRAME.unpack(header)[0]))


def _serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """The worker's loop: lists of uint8 arrays in, ("ok", descriptors) or ("error", type, text) out.

    It runs at a lower priority (nice 10): a visitor's slider move in the server must not
    wait behind another visitor's identity check."""
    if hasattr(os, "nice"):
        os.nice(10)
    while (arrays := _receive(requests)) is not None:
        try:
            _send(replies, ("ok", _descriptors_of(arrays)))
        except Exception as err:  # noqa: BLE001 - reported to the parent, which raises it there
            _send(replies, ("error", type(err).__name__, str(err)))


class DescriptorWorker:
    """descriptors() in one long-lived child process, started on first use and restarted if
    it died; one request at a time (dlib uses one core). Raises ImportError without dlib."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None

    def __call__(self, images: torch.Tensor | list[Image.Image]) -> np.ndarray:
        arrays = _as_uint8(images)
        if not arrays:
            return np.zeros((0, 128))
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "facecomp.identity"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    cwd=Path(__file__).resolve().parent.parent,  # where `facecomp` is importable
                )
            try:
                _send(self._proc.stdin, arrays)
                reply = _receive(self._proc.stdout)
            except (BrokenPipeError, OSError):
                reply = None
            if reply is None:
                self._proc.kill()  # the next call starts a new one
        if reply is None:
            raise RuntimeError("the identity worker process ended unexpectedly")
        if reply[0] == "ok":
            return reply[1]
        _, kind, text = reply
        raise (ImportError if kind in ("ImportError", "ModuleNotFoundError") else RuntimeError)(text)

    def close(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.stdin.close()  # the worker's loop ends at end of input
                self._proc.wait(timeout=10)
            self._proc = None


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
