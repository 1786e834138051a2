"""Training and shipping weights: the AE and VAE, the detail layers, the sharp decoding, code statistics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..spec import MODEL_KINDS


def cmd_train(args: argparse.Namespace) -> int:
    from ..training.autoencoder import TrainConfig, train

    cfg = TrainConfig(
        model=args.model,
        data=str(args.data),
        out=str(args.out),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        kl_weight=args.kl_weight,
        kl_warmup_steps=args.kl_warmup_steps,
        log_mse=args.log_mse,
        l1=args.l1,
        l2=args.l2,
        noise_sigma=args.noise_sigma,
        init_from=str(args.init_from) if args.init_from else None,
        rescale_code=args.rescale_code,
        max_minutes=args.max_minutes,
        seed=args.seed,
        limit=args.limit,
    )
    train(cfg)
    return 0


def cmd_train_detail(args: argparse.Namespace) -> int:
    from ..training.detail import DetailTrainConfig, train_detail

    cfg = DetailTrainConfig(
        data=args.data,
        out=args.out,
        bases=tuple("" if b == "standalone" else b for b in args.bases),
        weights=args.weights,
        minutes=args.minutes,
        batch=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        resume=args.resume,
        lower_lambdas=tuple(args.lower_lambdas),
        seed=args.seed,
    )
    for path in train_detail(cfg):
        print(path)
    return 0


def cmd_train_sharp(args: argparse.Namespace) -> int:
    from ..training.sharp import SharpTrainConfig, train_sharp

    cfg = SharpTrainConfig(
        data=str(args.data), out=str(args.out), minutes=args.minutes, batch_size=args.batch_size, seed=args.seed
    )
    print(f"exported {train_sharp(cfg)}")
    return 0


def cmd_export_detail(args: argparse.Namespace) -> int:
    from ..weights import export_detail

    for checkpoint in args.checkpoints:
        card = export_detail(checkpoint, args.weights)
        print(f"{card['weights_file']}: SHA-256 {card['sha256'][:12]}...")
    return 0


def cmd_fit_latents(args: argparse.Namespace) -> int:
    from ..latent.statistics import fit_and_save

    try:
        card = fit_and_save(args.weights_file, args.data, args.labels, directions_only=args.directions_only)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"updated {args.weights_file} (SHA-256 {card['sha256'][:12]}...)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the parser."""
    p = sub.add_parser("train", help="train the AE or VAE on a prepared cache")
    p.add_argument("--model", choices=MODEL_KINDS, required=True)
    p.add_argument("--data", type=Path, required=True, help="folder written by `prepare`")
    p.add_argument("--out", type=Path, default=Path("runs"))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--kl-weight", type=float, default=None, help="VAE KL weight (default: the shipped one)")
    p.add_argument("--kl-warmup-steps", type=int, default=0, help="ramp the KL weight up over this many steps")
    p.add_argument(
        "--log-mse", action="store_true", help="minimise the mean log MSE per image (the mean PSNR), not the MSE"
    )
    p.add_argument("--l1", type=float, default=0.0, help="L1 weight penalty")
    p.add_argument("--l2", type=float, default=0.0, help="L2 weight penalty")
    p.add_argument("--noise-sigma", type=float, default=0.0, help="denoising: Gaussian input noise sigma")
    p.add_argument("--init-from", type=Path, default=None, help="start from these weights (the VAE from the AE)")
    p.add_argument("--rescale-code", action="store_true", help="with --init-from: start the VAE's codes at unit spread")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this many minutes")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training crops")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("train-detail", help="train detail layers on the frozen base models (facecomp.nets.detail)")
    p.add_argument("--data", type=Path, default=Path("data/cache"))
    p.add_argument("--out", type=Path, default=Path("runs/detail"))
    p.add_argument("--bases", nargs="+", default=[*MODEL_KINDS, "standalone"], choices=[*MODEL_KINDS, "standalone"])
    p.add_argument("--weights", type=Path, help="base weights folder (default: the shipped weights)")
    p.add_argument("--minutes", type=float, default=60.0, help="wall-clock budget; the schedule follows it")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup-steps", type=int, default=300)
    p.add_argument("--resume", type=Path, help="folder of detail-<base>.safetensors checkpoints to start from")
    p.add_argument(
        "--lower-lambdas", type=float, nargs="*", default=[], help="with --resume: add and train gains for these"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train_detail)

    p = sub.add_parser(
        "train-sharp", help="train the sharp decoding's refiner (facecomp.nets.refiner); resumes from --out"
    )
    p.add_argument("--data", type=Path, default=Path("data/cache"))
    p.add_argument("--out", type=Path, default=Path("runs/sharp"))
    p.add_argument("--minutes", type=float, default=150.0, help="wall-clock budget of this run")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train_sharp)

    _register_shipping(sub)


def _register_shipping(sub: argparse._SubParsersAction) -> None:
    """The commands that put trained weights and their statistics into the weights folder."""
    p = sub.add_parser("export-detail", help="ship trained detail layers into the weights folder")
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.add_argument("--weights", type=Path, help="weights folder (default: the shipped weights)")
    p.set_defaults(func=cmd_export_detail)

    p = sub.add_parser("fit-latents", help="refit the codec/explorer statistics stored in a weights file")
    p.add_argument("weights_file", type=Path)
    p.add_argument("--data", type=Path, required=True, help="folder written by `prepare`")
    p.add_argument("--labels", type=Path, default=None, help="folder written by `prepare-labels` (named directions)")
    p.add_argument(
        "--directions-only",
        action="store_true",
        help="refit only the named directions (needs --labels); the codec's statistics stay (.fcz files still decode)",
    )
    p.set_defaults(func=cmd_fit_latents)
