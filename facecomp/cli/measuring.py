"""Measurements: the evaluation, the latent-space report, the benchmark, the generated results page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..spec import CLASSIC_FORMATS, MODEL_KINDS, codec_name


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json
    import time

    import torch

    from ..measure.evaluate import evaluate, load_eval_images, merge_into
    from ..weights import WeightsError, load_models, measured_weights

    try:
        models, _ = load_models(args.weights, args.models)
        measured = {kind: measured_weights(kind, args.weights) for kind in models}  # as loaded, before the long run
    except WeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    update = args.update and args.json.exists()
    images = load_eval_images(args.data, args.limit)
    started = time.time()
    with torch.no_grad():
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


def cmd_latent_space(args: argparse.Namespace) -> int:
    import json

    from ..measure.latent_report import edits_report, latent_space_report

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

    from ..measure.bench import run_benchmarks

    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_benchmarks(args.weights, args.repeats)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from ..measure import results_doc

    root = results_doc.REPO_ROOT
    try:
        changed = results_doc.stale_docs(root) if args.check else results_doc.write_docs(root)
    except (OSError, ValueError) as err:  # ValueError: a JSON file that is not JSON, README without its markers
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in changed:
        if args.check:
            print(f"{path.relative_to(root)}: differs from weights/*.json; run python -m facecomp results")
        else:
            print(f"wrote {path.relative_to(root)}")
    if not changed:
        print("docs/results.md and README.md's results table are up to date")
    return 1 if args.check and changed else 0


def cmd_realism(args: argparse.Namespace) -> int:
    import json

    from ..measure.realism_report import realism_report
    from ..weight_files import sha256_file, sharp_path
    from ..weights import WeightsError, load_models, load_refiner, measured_weights

    try:
        models, _ = load_models(args.weights)
        refiner = load_refiner(args.weights)
        measured = {kind: measured_weights(kind, args.weights) for kind in models}  # as loaded, before the long run
        measured["sharp_sha256"] = sha256_file(sharp_path(args.weights)) if refiner is not None else None
    except WeightsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.labels is not None and refiner is None:
        print("error: --labels measures the sliders' sharp edits, and there is no sharp decoding", file=sys.stderr)
        return 2
    report = realism_report(
        models, refiner, args.data, args.pictures, tuple(args.seeds), only=tuple(args.only), weights_dir=args.weights
    )
    report["weights"] = measured
    if args.labels is not None:
        from ..latent.attributes import load_labels
        from ..measure.latent_report import edit_report

        vae, ae = models["vae"].network, models["ae"].network
        report["sharp_edits"] = edit_report(vae, load_labels(args.labels), checker=ae, refiner=refiner)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    for row in report["rows"]:
        told, detail = row["classifier_accuracy"], row["detail_energy"]
        print(f"{row['set']:32} {row['decoding']:6} told apart {told:.0%}, fine detail {detail:.2f} of real faces'")
    print(f"wrote {args.json}")
    return 0


def print_table(result: dict) -> None:
    """The evaluation per model and latent size, as `evaluate` prints it."""
    print(f"{result['faces']} faces (codec and classic codecs on {result['codec_faces']} spread over them)")
    print(
        f"{'model':5} {'latent':>6} {'PSNR':>7} {'SSIM':>6} {'noisy':>7} {'bytes':>6} {'est.':>6} {'fcz PSNR':>8}"
        + "".join(f" {codec_name(fmt):>11}" for fmt in CLASSIC_FORMATS)
    )
    for r in result["records"]:
        classic = []
        for fmt in CLASSIC_FORMATS:
            c = r["classic"].get(fmt)  # rows kept by --update from an older run may lack a format
            if c is None:
                classic.append(f"{'n/a':>11}")
            elif c["psnr"] is None:
                classic.append(f"  -- ({c['failed']:>3})")
            else:
                classic.append(f"{c['psnr']:5.2f} ({c['failed']:>3})")
        print(
            f"{r['model']:5} {r['latent']:>6} {r['psnr']['mean']:7.2f} {r['ssim']['mean']:6.3f} "
            f"{r['noisy']['psnr']['mean']:7.2f} {r['bytes']['real']:6.1f} {r['bytes']['estimated']:6.1f} "
            f"{r['codec']['psnr']['mean']:8.2f} " + " ".join(classic)
        )
    print("classic columns: mean PSNR of the faces that fit the .fcz size (number that could not fit)")
    for max_bytes, best in best_within_budgets(result).items():
        print(
            f"every file at most {max_bytes} bytes: {best['model'].upper()} latent {best['latent']}, "
            f"{best['psnr']:.2f} dB, {best['bytes']:.1f} bytes on average, largest {best['largest_file']}"
        )


def print_budget_table(result: dict) -> None:
    """PSNR (dB) / identity kept (%) / faces that fit, per codec and budget."""
    rows = result.get("budget_table", [])
    codecs = list(dict.fromkeys(r["codec"] for r in rows))
    print(f"{'budget':>7} " + " ".join(f"{codec_name(c):>17}" for c in codecs))
    for max_bytes in sorted({r["max_bytes"] for r in rows}):
        cells = []
        for c in codecs:
            row = next(r for r in rows if r["codec"] == c and r["max_bytes"] == max_bytes)
            if not row["fitted"]:
                cells.append(f"{'--':>17}")
                continue
            kept = row["identity"]["kept"] * 100 if row.get("identity") else float("nan")
            cells.append(f"{row['psnr']:5.2f} {kept:4.0f}% {row['fitted']:>3}/{row['faces']:<3}")
        print(f"{max_bytes:>7} " + " ".join(cells))
    print("cells: mean PSNR and identity kept over the faces whose file fits / faces")


def best_within_budgets(result: dict) -> dict[int, dict]:
    """For each byte budget, the model and latent size with the best PSNR when every file fits."""
    best: dict[int, dict] = {}
    for row in result.get("budgets", []):
        if row["fitted"] == result["codec_faces"] and row["psnr"] > best.get(row["max_bytes"], {}).get("psnr", -1):
            best[row["max_bytes"]] = row
    return dict(sorted(best.items()))


def register(sub: argparse._SubParsersAction) -> None:
    """Add this group's commands to the parser."""
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
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("realism", help="realism of every kind of picture, MSE and sharp decodings (JSON)")
    p.add_argument("data", type=Path, help="a `prepare` cache (its validation split)")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    p.add_argument("--pictures", type=int, default=1000, help="pictures per set, against as many real faces")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="classifier seeds (mean and spread)")
    p.add_argument("--only", nargs="*", default=[], help="measure only these sets (names as in the JSON)")
    p.add_argument("--labels", type=Path, default=None, help="a `prepare-labels` cache: also the sliders' sharp edits")
    p.set_defaults(func=cmd_realism)

    p = sub.add_parser("results", help="write docs/results.md and README's results table from weights/*.json")
    p.add_argument("--check", action="store_true", help="only name the files that differ; exit status 1 if any")
    p.set_defaults(func=cmd_results)
