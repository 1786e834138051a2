"""Where the weights are (the folder and every file in it), and their SHA-256. No torch: the first page checks the files
before torch is imported (first_page); weights.py loads them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .spec import MODEL_KINDS

SHIPPED_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def default_weights_dir() -> Path:
    """The shipped weights, unless FACECOMP_WEIGHTS_DIR points elsewhere (tests, retrained runs)."""
    return Path(os.environ.get("FACECOMP_WEIGHTS_DIR") or SHIPPED_WEIGHTS_DIR)


def weights_path(kind: str, weights_dir: Path | None = None) -> Path:
    return Path(weights_dir or default_weights_dir()) / f"{kind}.safetensors"


def card_path(kind: str, weights_dir: Path | None = None) -> Path:
    return Path(weights_dir or default_weights_dir()) / f"{kind}.json"


def detail_path(kind: str, weights_dir: Path | None = None) -> Path:
    return Path(weights_dir or default_weights_dir()) / f"detail-{kind}.safetensors"


def sharp_path(weights_dir: Path | None = None) -> Path:
    return Path(weights_dir or default_weights_dir()) / "sharp.safetensors"


def weights_files(weights_dir: Path | None = None) -> list[Path]:
    """Every file the models are loaded from: each kind's weights and detail layer, and the sharp
    decoding's refiner, each with its card."""
    files = [p for kind in MODEL_KINDS for p in (weights_path(kind, weights_dir), detail_path(kind, weights_dir))]
    files.append(sharp_path(weights_dir))
    return [q for p in files for q in (p, p.with_suffix(".json"))]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_stamp(path: Path) -> tuple[int, int] | None:
    """A file's size and modification time, None when it does not exist: what tells a replaced
    weights file without hashing it."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns
