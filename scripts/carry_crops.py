"""Carry training crops to a machine that cannot read ../shared (a lent GPU).

    python scripts/carry_crops.py pack data/cache .carry/crops-0.npz --part 0 --parts 2
    python scripts/carry_crops.py unpack '.carry/crops-*.npz' /tmp/cache

pack stores a share of the training split as WebP at quality 95 (43.6 dB, 5 KB a crop)
in an ignored folder; unpack writes a cache (crops.npy, split.json) that
facecomp.training.detail reads. The crops never enter git.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image


def pack(cache: Path, out: Path, part: int, parts: int, limit: int | None) -> None:
    crops = np.load(cache / "crops.npy", mmap_mode="r")
    train = sorted(json.loads((cache / "split.json").read_text())["train"])[part::parts][:limit]
    blobs = []
    for i in train:
        buf = io.BytesIO()
        Image.fromarray(np.asarray(crops[i])).save(buf, format="WEBP", quality=95)
        blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, data=np.concatenate(blobs), lengths=np.array([len(b) for b in blobs]))
    print(f"{out}: {len(blobs)} crops, {out.stat().st_size / 1e6:.1f} MB")


def unpack(pattern: str, out: Path) -> None:
    crops = []
    for path in sorted(glob.glob(pattern)):
        bundle = np.load(path)
        ends = np.cumsum(bundle["lengths"])
        for start, end in zip(ends - bundle["lengths"], ends, strict=True):
            crops.append(np.asarray(Image.open(io.BytesIO(bundle["data"][start:end].tobytes())).convert("RGB")))
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "crops.npy", np.stack(crops))
    (out / "split.json").write_text(json.dumps({"rule": "carried", "train": list(range(len(crops))), "val": []}))
    print(f"{out}: {len(crops)} crops")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("cache", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--part", type=int, default=0)
    p.add_argument("--parts", type=int, default=1)
    p.add_argument("--limit", type=int)
    u = sub.add_parser("unpack")
    u.add_argument("pattern")
    u.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.cmd == "pack":
        pack(args.cache, args.out, args.part, args.parts, args.limit)
    else:
        unpack(args.pattern, args.out)
