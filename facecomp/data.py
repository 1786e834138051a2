"""The training cache: canonical crops of a photo tree, and a fixed train/validation split.

`prepare` writes, into one folder:
  crops.npy    uint8 array (N, 128, 128, 3), memory-mapped when training
  index.json   one record per crop: source path, data set, face box, age where known
  split.json   indices of the train and validation crops, and the rule that made them
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .faces import ImageLoadError, canonical_crop, load_image, source_side
from .spec import CROP_SIZE

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
# Crops cut from fewer source pixels would be mostly upsampling blur; CelebA's
# 89x109 thumbnails fall below this and are skipped.
MIN_SOURCE_SIDE = 64
VAL_PERCENT = 8
_UTK_AGE = re.compile(r"^(\d+)_\d+_\d+_")


def find_photos(sources: list[Path]) -> list[Path]:
    photos: list[Path] = []
    for src in sources:
        if src.is_file():
            photos.append(src)
        else:
            photos.extend(p for p in src.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    return sorted(photos)


def identity_key(path: Path) -> str:
    """Photos that share a key land on the same side of the split.

    LFW keeps one folder per person, so validation holds people never trained on;
    in the other sets each photo is its own key.
    """
    return path.parent.name if "lfw" in path.parts else path.name


def is_validation(path: Path) -> bool:
    digest = hashlib.sha256(identity_key(path).encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < VAL_PERCENT


def _crop_one(path: Path) -> tuple[np.ndarray | None, dict]:
    record = {"path": str(path), "set": path.parts[-2] if "lfw" not in path.parts else "lfw"}
    try:
        img = load_image(path)
        crop, box = canonical_crop(img)
    except ImageLoadError as err:
        return None, record | {"skipped": f"unreadable: {err}"}
    except LookupError:
        return None, record | {"skipped": "no face found"}
    if source_side(box) < MIN_SOURCE_SIDE:
        return None, record | {"skipped": f"face smaller than {MIN_SOURCE_SIDE} px"}
    match = _UTK_AGE.match(path.name)
    record |= {"box": asdict(box), "age": int(match.group(1)) if match else None}
    return np.asarray(crop), record


def prepare(sources: list[Path], out: Path, workers: int = 2) -> dict:
    """Crop every photo under `sources` into the cache at `out`; reused if up to date."""
    photos = find_photos(sources)
    out.mkdir(parents=True, exist_ok=True)
    index_file = out / "index.json"
    listing = hashlib.sha256("\n".join(map(str, photos)).encode()).hexdigest()
    if index_file.exists() and (out / "crops.npy").exists():
        if json.loads(index_file.read_text()).get("listing_sha256") == listing:
            print(f"{out} is up to date ({len(photos)} photos); nothing to do")
            return json.loads((out / "split.json").read_text())

    crops: list[np.ndarray] = []
    kept: list[dict] = []
    skipped: Counter[str] = Counter()
    with ProcessPoolExecutor(workers) as pool:
        results = pool.map(_crop_one, photos, chunksize=64)
        for crop, record in tqdm(results, total=len(photos), desc="cropping", unit="photo"):
            if crop is None:
                skipped[record["skipped"].split(":")[0]] += 1
                continue
            crops.append(crop)
            kept.append(record)

    arr = np.stack(crops) if crops else np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8)
    np.save(out / "crops.npy", arr)
    val = [i for i, r in enumerate(kept) if is_validation(Path(r["path"]))]
    val_set = set(val)
    split = {
        "rule": f"sha256(identity) % 100 < {VAL_PERCENT} is validation; identity = LFW person, else file name",
        "train": [i for i in range(len(kept)) if i not in val_set],
        "val": val,
    }
    (out / "split.json").write_text(json.dumps(split))
    index_file.write_text(json.dumps({"listing_sha256": listing, "skipped": dict(skipped), "crops": kept}))
    print(f"kept {len(kept)} of {len(photos)} photos ({len(split['train'])} train, {len(val)} validation)")
    for reason, count in skipped.most_common():
        print(f"  skipped {count}: {reason}")
    return split


class CropCache:
    """The prepared crops of one split, as float tensors in [0, 1] on demand."""

    def __init__(self, root: Path, split: str) -> None:
        self.root = Path(root)
        self.crops = np.load(self.root / "crops.npy", mmap_mode="r")
        self.indices = np.asarray(json.loads((self.root / "split.json").read_text())[split], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def ages(self) -> list[int | None]:
        """Age labels (UTKFace file names) of the split's crops, in load_all order."""
        records = json.loads((self.root / "index.json").read_text())["crops"]
        return [records[i].get("age") for i in np.sort(self.indices)]

    def load_all(self) -> torch.Tensor:
        """The whole split as uint8 NCHW (small enough to keep in memory: 50 KB a face)."""
        return torch.from_numpy(np.ascontiguousarray(self.crops[np.sort(self.indices)])).permute(0, 3, 1, 2)


def load_crop_dir(folder: Path) -> tuple[list[str], torch.Tensor]:
    """Names and float [0, 1] NCHW tensor of every 128x128 image in a folder of crops."""
    names, images = [], []
    for path in find_photos([Path(folder)]):
        img = load_image(path)
        if img.size != (CROP_SIZE, CROP_SIZE):
            raise ValueError(f"{path} is {img.width}x{img.height}; run `python -m facecomp crop` first")
        names.append(path.stem)
        images.append(torch.from_numpy(np.asarray(img).copy()))
    if not images:
        raise ValueError(f"no images found in {folder}")
    return names, torch.stack(images).permute(0, 3, 1, 2).float() / 255
