"""Where the weights are, and their SHA-256. No torch: the first page checks the files
before torch is imported (first_page); weights.py loads them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

SHIPPED_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def default_weights_dir() -> Path:
    """The shipped weights, unless FACECOMP_WEIGHTS_DIR points elsewhere (tests, retrained runs)."""
    return Path(os.environ.get("FACECOMP_WEIGHTS_DIR") or SHIPPED_WEIGHTS_DIR)


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
