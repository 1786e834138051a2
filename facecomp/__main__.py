"""Command line: python -m facecomp {prepare,crop,train,evaluate,compress,decompress}."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_prepare(args: argparse.Namespace) -> int:
    from .data import prepare

    prepare(args.sources, args.out, workers=args.workers)
    return 0


def cmd_crop(args: argparse.Namespace) -> int:
    from .data import find_photos
    from .faces import ImageLoadError, crop_or_centre, load_image

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


def cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train

    cfg = TrainConfig(
        model=args.model,
        data=str(args.data),
        out=str(args.out),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        kl_weight=args.kl_weight,
        log_mse=args.log_mse,
        l1=args.l1,
        l2=args.l2,
        noise_sigma=args.noise_sigma,
        init_from=str(args.init_from) if args.init_from else None,
        max_minutes=args.max_minutes,
        seed=args.seed,
        limit=args.limit,
    )
    train(cfg)
    return 0


def cmd_fit_latents(args: argparse.Namespace) -> int:
    from .latents import fit_and_save

    card = fit_and_save(args.weights_file, args.data)
    print(f"updated {args.weights_file} (SHA-256 {card['sha256'][:12]}...)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_cli

    return evaluate_cli(args)


def cmd_compress(args: argparse.Namespace) -> int:
    from .codec import compress_cli

    return compress_cli(args)


def cmd_decompress(args: argparse.Namespace) -> int:
    from .codec import decompress_cli

    return decompress_cli(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facecomp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="crop a tree of photos into a training cache")
    p.add_argument("sources", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("crop", help="write the canonical 128x128 crop of each photo")
    p.add_argument("inputs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_crop)

    p = sub.add_parser("train", help="train the AE or VAE on a prepared cache")
    p.add_argument("--model", choices=["ae", "vae"], required=True)
    p.add_argument("--data", type=Path, required=True, help="folder written by `prepare`")
    p.add_argument("--out", type=Path, default=Path("runs"))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--kl-weight", type=float, default=None, help="VAE KL weight (default: the shipped one)")
    p.add_argument(
        "--log-mse", action="store_true", help="minimise the mean log MSE per image (the mean PSNR), not the MSE"
    )
    p.add_argument("--l1", type=float, default=0.0, help="L1 weight penalty")
    p.add_argument("--l2", type=float, default=0.0, help="L2 weight penalty")
    p.add_argument("--noise-sigma", type=float, default=0.0, help="denoising: Gaussian input noise sigma")
    p.add_argument("--init-from", type=Path, default=None, help="start from these weights (the VAE from the AE)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this many minutes")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training crops")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("fit-latents", help="refit the codec/explorer statistics stored in a weights file")
    p.add_argument("weights_file", type=Path)
    p.add_argument("--data", type=Path, required=True, help="folder written by `prepare`")
    p.set_defaults(func=cmd_fit_latents)

    p = sub.add_parser("evaluate", help="PSNR/SSIM/MSE and rate-distortion on a folder of crops")
    p.add_argument("data", type=Path, help="a folder of 128x128 crops, or a `prepare` cache (its validation split)")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument("--limit", type=int, default=None, help="use only the first N faces")
    p.add_argument("--codec-faces", type=int, default=200, help="faces coded to .fcz, JPEG, WebP and AVIF")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("compress", help="compress photos or crops to .fcz files")
    p.add_argument("inputs", nargs="+", type=Path)
    p.add_argument("--model", choices=["ae", "vae"], default="ae")
    p.add_argument("--latent", type=int, default=256)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--weights", type=Path, default=None)
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("decompress", help="decode .fcz files to PNG")
    p.add_argument("inputs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--weights", type=Path, default=None)
    p.set_defaults(func=cmd_decompress)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
