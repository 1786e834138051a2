"""Files and faces: compress photos to .fcz, decode them, sample new faces."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..nets.autoencoder import SAMPLE_SOURCES
from ..spec import MODEL_KINDS, bits_per_pixel

if TYPE_CHECKING:
    from PIL import Image

    from ..nets.refiner import Refiner


def _as_crop(path: Path) -> Image.Image:
    """A photo's canonical face crop (a centred crop, with a warning, when no face is found)."""
    from ..faces import crop_or_centre, load_image
    from ..spec import CROP_SIZE

    img = load_image(path)
    if img.size == (CROP_SIZE, CROP_SIZE):
        return img
    crop, box = crop_or_centre(img)
    if box is None:
        print(f"warning: {path}: no face found, using a centred crop", file=sys.stderr)
    return crop


def cmd_compress(args: argparse.Namespace) -> int:
    from ..codec.budget import compress_within
    from ..codec.fcz import compress
    from ..faces import ImageLoadError
    from ..visual import to_tensor
    from ..weights import WeightsError, load_models

    kinds = [args.model] if args.model else (MODEL_KINDS if args.max_bytes else ["ae"])
    try:
        models, _ = load_models(args.weights, kinds)
    except WeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    model = models[kinds[0]]
    if args.max_bytes is not None and args.max_bytes < 1:
        print("error: --max-bytes must be positive", file=sys.stderr)
        return 2
    if args.max_bytes is None and args.latent not in model.network.cfg.ladder:
        print(f"error: --latent must be one of {', '.join(map(str, model.network.cfg.ladder))}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    status = 0
    for path in args.inputs:
        try:
            crop = _as_crop(path)
        except ImageLoadError as err:
            print(f"error: {path}: {err}", file=sys.stderr)
            status = 2
            continue
        if args.max_bytes is None:
            result = compress(model, to_tensor(crop), args.latent)
        else:
            result = compress_within(models, to_tensor(crop), args.max_bytes)
        target = args.out / f"{path.stem}.fcz"
        target.write_bytes(result.data)
        made = f"{result.kind.upper()} {result.label}"
        print(f"{target}: {len(result.data)} bytes, {result.bits_per_pixel:.4f} bpp ({made})")
        if args.max_bytes is not None and len(result.data) > args.max_bytes:
            print(f"warning: {path}: no file fits {args.max_bytes} bytes; wrote the smallest", file=sys.stderr)
            status = 2
    return status


def _sharp_refiner(args: argparse.Namespace) -> Refiner | None:
    """The sharp decoding's refiner when --sharp asks for it (None otherwise); WeightsError when the
    weights folder has none."""
    if not args.sharp:
        return None
    from ..weights import WeightsError, load_refiner

    refiner = load_refiner(args.weights)
    if refiner is None:
        raise WeightsError("no sharp decoding in the weights folder (python -m facecomp train-sharp)")
    return refiner


def cmd_decompress(args: argparse.Namespace) -> int:
    from ..codec.fcz import decompress, decompress_sharp
    from ..codec.format import MAX_FILE_BYTES, CodecError
    from ..visual import to_pil
    from ..weights import WeightsError, load_models

    try:
        models, _ = load_models(args.weights)
        refiner = _sharp_refiner(args)
    except WeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    status = 0
    for path in args.inputs:
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise CodecError(
                    f"file is {path.stat().st_size:,} bytes; a FaceComp file is at most {MAX_FILE_BYTES:,}"
                )
            data = path.read_bytes()
            image = decompress_sharp(data, models, refiner) if refiner is not None else decompress(data, models)
        except (CodecError, OSError) as err:
            print(f"error: {path}: {err}", file=sys.stderr)
            status = 2
            continue
        target = args.out / f"{path.stem}.png"
        to_pil(image).save(target)
        print(f"{target}: from {len(data)} bytes, {bits_per_pixel(len(data)):.4f} bpp")
    return status


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from ..visual import to_pil
    from ..weights import WeightsError, load_model

    try:
        model, _ = load_model(args.model, args.weights)
        refiner = _sharp_refiner(args)
    except WeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    faces = model.network.sample(args.n, args.source, args.temperature, torch.Generator().manual_seed(args.seed))
    if refiner is not None:
        from ..nets.refiner import sharpen

        faces = sharpen(refiner, faces)
    args.out.mkdir(parents=True, exist_ok=True)
    for i, face in enumerate(faces):
        to_pil(face).save(args.out / f"{args.model}_{args.source}_seed{args.seed}_{i:04d}.png")
    print(f"wrote {len(faces)} faces to {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the parser."""
    p = sub.add_parser("compress", help="compress photos or crops to .fcz files")
    p.add_argument("inputs", nargs="+", type=Path)
    p.add_argument("--model", choices=MODEL_KINDS, help="default: ae, or with --max-bytes the best of both")
    p.add_argument("--latent", type=int, default=256, help="global code size (ignored with --max-bytes)")
    p.add_argument(
        "--max-bytes", type=int, help="the best model, latent size, quantiser and detail layer whose file fits"
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--weights", type=Path, default=None)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("decompress", help="decode .fcz files to PNG")
    p.add_argument("inputs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument("--sharp", action="store_true", help="decode for realism (the sharp decoding), not for PSNR")
    p.set_defaults(func=cmd_decompress)

    p = sub.add_parser("sample", help="decode random codes to new faces (PNG)")
    p.add_argument("--model", choices=MODEL_KINDS, default="vae")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--from",
        dest="source",
        choices=SAMPLE_SOURCES,
        default="prior",
        help="prior: N(0, I); fitted: the Gaussian fitted to training codes (shipped in the weights)",
    )
    p.add_argument("--temperature", type=float, default=1.0, help="scales the spread of the codes")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    p.add_argument("--sharp", action="store_true", help="decode for realism (the sharp decoding), not for PSNR")
    p.set_defaults(func=cmd_sample)
