"""What the first page shows, ready without torch: Home's live example kept on disk, and the
loaded weights' cards as a table.

The example (a built-in photo's face through AE and VAE at a few hundred bytes) needs torch's
import, both models and two codec searches: most of a cold start's seconds on 2 cores. It is
computed once (warm_up.home_example) and written to the user's cache folder with the SHA-256 of
every weights file and card it came from, and a digest of facecomp's source and torch's
version. A later start reads it back when every file still has its SHA-256, so Home draws
while torch is still being imported. Plain Python and Pillow: nothing here imports torch.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from ..result import Result
from ..weight_files import default_weights_dir, file_stamp, sha256_file

CACHE_DIR_ENV = "FACECOMP_CACHE_DIR"
FORMAT = 1
_BYTES_FIELDS = ("data", "png")
log = logging.getLogger(__name__)
_home_drawn = threading.Event()
_verifying = threading.Lock()


@dataclass
class Example:
    """Home's live example: which photo, the budget, the face's crop, its results, and the
    cards of the weights that made them."""

    photo: str
    budget: int
    crop_png: bytes
    results: list[Result]
    cards: dict[str, dict]


def cache_dir() -> Path:
    """$FACECOMP_CACHE_DIR, else $XDG_CACHE_HOME/facecomp, else ~/.cache/facecomp."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facecomp"


def _entry_path(weights_dir: Path) -> Path:
    folder = hashlib.sha256(str(Path(weights_dir).resolve()).encode()).hexdigest()[:16]
    return cache_dir() / f"home-{folder}.json"


@functools.cache
def _code_version() -> str:
    """facecomp's source and torch's version: a change to either may change the example's bytes."""
    digest = hashlib.sha256(importlib.metadata.version("torch").encode())
    package = Path(__file__).resolve().parents[1]  # facecomp/, with its subpackages (this one among them)
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def _digests(files: Iterable[Path]) -> dict[str, str | None]:
    """SHA-256 by file name; None for a file that does not exist (a detail layer added later
    must not be missed)."""
    return {path.name: sha256_file(path) if path.exists() else None for path in files}


@functools.lru_cache(maxsize=8)
def _still_verified(weights_dir: Path, stamps: tuple, expected: tuple) -> bool:
    """Every file has the SHA-256 it was saved with. Remembered by the files' sizes and
    modification times (in `stamps`), so a visit to Home does not hash 60 MB again."""
    return _digests(weights_dir / name for name, _ in expected) == dict(expected)


def _result_to_json(res: Result) -> dict:
    values = {f.name: getattr(res, f.name) for f in fields(res) if f.name != "image"}  # the PNG is the picture
    return {k: base64.b64encode(v).decode() if k in _BYTES_FIELDS and v is not None else v for k, v in values.items()}


def _result_from_json(values: dict) -> Result:
    return Result(
        image=None,
        **{k: base64.b64decode(v) if k in _BYTES_FIELDS and v is not None else v for k, v in values.items()},
    )


def save(weights_dir: Path, files: Iterable[Path], example: Example) -> None:
    """Keep the example for the next start, with the SHA-256 of `files` (the weights and cards
    it came from). Where the cache folder is not writable, nothing is kept."""
    entry = {
        "format": FORMAT,
        "code": _code_version(),
        "files": _digests(files),
        "photo": example.photo,
        "budget": example.budget,
        "crop_png": base64.b64encode(example.crop_png).decode(),
        "results": [_result_to_json(r) for r in example.results],
        "cards": example.cards,
    }
    path = _entry_path(weights_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{path.name}.{os.getpid()}.part")
        part.write_text(json.dumps(entry))
        part.replace(path)  # atomic: a start that reads meanwhile sees the old entry or the new
    except OSError as err:
        log.info("Home's example is not kept on disk: %s", err)


def read(weights_dir: Path) -> Example | None:
    """The example kept for these weights, or None when there is none, it is unreadable, or any
    file, facecomp's source or torch's version has changed since."""
    weights_dir = Path(weights_dir)
    try:
        entry = json.loads(_entry_path(weights_dir).read_text())
        if entry["format"] != FORMAT or entry["code"] != _code_version():
            return None
        expected = tuple(sorted(entry["files"].items()))
        stamps = tuple(file_stamp(weights_dir / name) for name, _ in expected)
        with _verifying:  # the warm-up and Home's first run ask at once: hash the files once
            if not _still_verified(weights_dir, stamps, expected):
                return None
        results = [_result_from_json(r) for r in entry["results"]]
        return Example(entry["photo"], entry["budget"], base64.b64decode(entry["crop_png"]), results, entry["cards"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def home_drawn() -> None:
    """Home calls this once drawn; see wait_for_home."""
    _home_drawn.set()


def wait_for_home(timeout: float = 10.0) -> None:
    """Wait until Home has been drawn (at most `timeout` s) when it can be drawn from disk.

    app.py's warm-up calls this before importing torch: that import holds Python's lock for
    ~2 s, and the server then sends the browser its front end and the first page slowly.
    Returns at once when nothing is kept: Home then needs the models itself.
    """
    if read(default_weights_dir()) is not None:
        _home_drawn.wait(timeout)


def card_rows(cards: Mapping[str, dict]) -> list[dict]:
    """One row per model card for the Home page's table of loaded weights."""
    rows = []
    for kind, card in cards.items():
        val = card.get("validation_psnr") or {}
        row = {
            "model": kind.upper(),
            "latent sizes": ", ".join(str(k) for k in card.get("latent_sizes", [])),
            # A fine-tuned model's totals include the run it started from.
            "epochs": card.get("total_epochs", card.get("epochs")),
            "training minutes": card.get("total_training_minutes", card.get("training_minutes")),
            "hardware": card.get("hardware"),
        }
        for size in sorted(val, key=int):
            row[f"val PSNR @{size}"] = None if val[size] is None else round(float(val[size]), 2)
        row["SHA-256"] = str(card.get("sha256", ""))[:12]
        rows.append(row)
    return rows


def markdown_table(rows: Sequence[Mapping[str, object]]) -> str:
    """Rows with the same keys as a Markdown table (a small table needs no dataframe, whose
    pandas and Arrow imports would hold up the first page by ~0.3 s); None shows as a dash."""
    if not rows:
        return ""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = ["–" if row[k] is None else str(row[k]).replace("|", "\\|") for k in header]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
