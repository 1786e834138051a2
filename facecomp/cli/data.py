"""Preparing data: the training cache, canonical crops, CelebA's labelled crops."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_prepare(args: argparse.Namespace) -> int:
    from ..data import prepare

    prepare(args.sources, args.out, workers=args.workers)
    return 0


def cmd_crop(args: argparse.Namespace) -> int:
    from ..data import find_photos
    from ..faces import ImageLoadError, crop_or_centre, load_image

    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in find_photos(args.inputs):
        try:
            crop, box = crop_or_centre(load_image(path))
        except ImageLoadError as err:
            print(f"{path}: {err}", file=sys.stderr)
            failed += 1
            continue
        if box is None:
            print(f"warning: {path}: no face found, using a centred crop", file=sys.stderr)
        crop.save(args.out / f"{path.stem}.png")
    return 2 if failed else 0


def cmd_prepare_labels(args: argparse.Namespace) -> int:
    from ..latent.attributes import prepare_labels

    prepare_labels(args.faces, args.out, workers=args.workers)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the parser."""
    p = sub.add_parser("prepare", help="crop a tree of photos into a training cache")
    p.add_argument("sources", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("crop", help="write the canonical 128x128 crop of each photo")
    p.add_argument("inputs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_crop)

    p = sub.add_parser("prepare-labels", help="crop CelebA's photos with attributes (for named directions)")
    p.add_argument("faces", type=Path, help="the faces folder holding celeba_attributes.txt")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_prepare_labels)
