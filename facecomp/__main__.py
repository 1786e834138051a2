"""Command line: python -m facecomp COMMAND (prepare, crop, train, sample, evaluate, compress, ...)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .model import MODEL_KINDS, SAMPLE_SOURCES

if TYPE_CHECKING:
    from PIL import Image


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
    from .train_detail import DetailTrainConfig, train_detail

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


def cmd_export_detail(args: argparse.Namespace) -> int:
    from .weights import export_detail

    for checkpoint in args.checkpoints:
        card = export_detail(checkpoint, args.weights)
        print(f"{card['weights_file']}: SHA-256 {card['sha256'][:12]}...")
    return 0


def cmd_prepare_labels(args: argparse.Namespace) -> int:
    from .attributes import prepare_labels

    prepare_labels(args.faces, args.out, workers=args.workers)
    return 0


def cmd_fit_latents(args: argparse.Namespace) -> int:
    from .latents import fit_and_save

    try:
        card = fit_and_save(args.weights_file, args.data, args.labels, directions_only=args.directions_only)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"updated {args.weights_file} (SHA-256 {card['sha256'][:12]}...)")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from .visual import to_pil
    from .weights import WeightsError, load_model

    try:
        model, _ = load_model(args.model, args.weights)
    except WeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    faces = model.sample(args.n, args.source, args.temperature, torch.Generator().manual_seed(args.seed))
    args.out.mkdir(parents=True, exist_ok=True)
    for i, face in enumerate(faces):
        to_pil(face).save(args.out / f"{args.model}_{args.source}_seed{args.seed}_{i:04d}.png")
    print(f"wrote {len(faces)} faces to {args.out}")
    return 0


def cmd_latent_space(args: argparse.Namespace) -> int:
    import json

    from .latent_space import edits_report, latent_space_report

    if args.edits_only:  # the slider edits measured again, the rest of an existing report kept
        if args.labels is None:
            print("error: --edits-only measures the named sliders' edits and needs --labels", file=sys.stderr)
            return 2
        report = json.loads(args.json.read_text()) if args.json.exists() else {}
        report["edits"] = edits_report(args.labels, args.weights)
    else:
        report = latent_space_report(args.data, args.labels, args.weights, args.sweep)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    import torch

    from .bench import run_benchmarks

    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_benchmarks(args.weights, args.repeats, args.app_moves)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json
    import time

    import torch

    from .evaluate import evaluate, load_eval_images, merge_into, print_budget_table, print_table
    from .weights import WeightsError, load_models, measured_weights

    try:
        models, _ = load_models(args.weights, args.models)
        measured = {kind: measured_weights(kind, args.weights) for kind in models}  # as loaded, before the long run
    except WeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    update = args.update and args.json.exists()
    images = load_eval_images(args.data, args.limit)
    started = time.time()
    torch.set_grad_enabled(False)
    result = evaluate(images, models, codec_faces=min(args.codec_faces, len(images)), classic_sweep=not update)
    result["seconds"] = round(time.time() - started, 1)
    result["weights"] = measured
    if update:  # a retrained model replaces its own rows only
        result = merge_into(json.loads(args.json.read_text()), result, list(models))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print_table(result)
    print_budget_table(result)
    print(f"wrote {args.json}")
    return 0


def _as_crop(path: Path) -> Image.Image:
    """A photo's canonical face crop (a centred crop, with a warning, when no face is found)."""
    from .faces import CROP_SIZE, crop_or_centre, load_image

    img = load_image(path)
    if img.size == (CROP_SIZE, CROP_SIZE):
        return img
    crop, box = crop_or_centre(img)
    if box is None:
        print(f"warning: {path}: no face found, using a centred crop", file=sys.stderr)
    return crop


def cmd_compress(args: argparse.Namespace) -> int:
    from .codec import compress, compress_within
    from .faces import ImageLoadError
    from .visual import to_tensor
    from .weights import WeightsError, load_models

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
    if args.max_bytes is None and args.latent not in model.cfg.ladder:
        print(f"error: --latent must be one of {', '.join(map(str, model.cfg.ladder))}", file=sys.stderr)
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


def cmd_decompress(args: argparse.Namespace) -> int:
    from .codec import MAX_FILE_BYTES, CodecError, decompress
    from .visual import to_pil
    from .weights import WeightsError, load_models

    try:
        models, _ = load_models(args.weights)
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
            image = decompress(data, models)
        except (CodecError, OSError) as err:
            print(f"error: {path}: {err}", file=sys.stderr)
            status = 2
            continue
        target = args.out / f"{path.stem}.png"
        to_pil(image).save(target)
        print(f"{target}: from {len(data)} bytes, {8 * len(data) / (128 * 128):.4f} bpp")
    return status


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

    p = sub.add_parser("prepare-labels", help="crop CelebA's photos with attributes (for named directions)")
    p.add_argument("faces", type=Path, help="the faces folder holding celeba_attributes.txt")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_prepare_labels)

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

    p = sub.add_parser("train-detail", help="train detail layers on the frozen base models (facecomp.detail)")
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
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("latent-space", help="FD-dlib of sampled faces, identity kept, named-slider edits (JSON)")
    p.add_argument("data", type=Path, help="a `prepare` cache (its validation split)")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--labels", type=Path, default=None, help="a `prepare-labels` cache: also score the edits")
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    p.add_argument("--sweep", type=Path, nargs="*", default=None, help="more VAE weights files to score (a sweep)")
    p.add_argument(
        "--edits-only", action="store_true", help="measure only the named sliders' edits, into the existing --json"
    )
    p.set_defaults(func=cmd_latent_space)

    p = sub.add_parser("bench", help="latency, throughput and memory on this machine (JSON)")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    p.add_argument("--repeats", type=int, default=50, help="timed calls per measurement")
    p.add_argument("--app-moves", type=int, default=20, help="timed reruns per page through AppTest")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("evaluate", help="PSNR/SSIM/MSE and rate-distortion on a folder of crops")
    p.add_argument("data", type=Path, help="a folder of 128x128 crops, or a `prepare` cache (its validation split)")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument("--limit", type=int, default=None, help="use only the first N faces")
    p.add_argument("--codec-faces", type=int, default=200, help="faces coded to .fcz and the classic codecs")
    p.add_argument("--models", nargs="+", choices=MODEL_KINDS, default=list(MODEL_KINDS), help="models to evaluate")
    p.add_argument(
        "--update", action="store_true", help="replace only these models' rows in an existing --json (after a retrain)"
    )
    p.set_defaults(func=cmd_evaluate)

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
    p.set_defaults(func=cmd_decompress)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
