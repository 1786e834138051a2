"""Evaluation: quality per model and latent size, noise robustness, and rate-distortion.

Writes one JSON file that the app's benchmark page plots:
  records           one per (model, latent): MSE/PSNR/SSIM statistics and histograms,
                    the same under Gaussian input noise, the real .fcz bytes next to the
                    entropy model's estimate, and the classic codecs (facecomp.classic) at
                    the same bytes
  rate_distortion   .fcz at several quantisers and classic codecs at several qualities
  budgets           every face's .fcz file held to a byte budget (the finest quantiser that
                    fits it), per model and latent size
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .classic import CLASSIC_FORMATS, classic_name, classic_within, encode_classic
from .codec import DEFAULT_Q, compress_code, decompress
from .faces import load_image
from .metrics import histogram, mse, psnr, ssim, summary
from .model import FaceAE
from .visual import to_pil, to_tensor

NOISE_SIGMA = 0.1
RD_QUANTISERS = (0, 4, 8, 12, 16, 24, 32)
RD_LATENTS = (64, 128, 256, 512)
CLASSIC_QUALITIES = (0, 5, 10, 20, 30, 50, 70, 90)
BYTE_BUDGETS = (64, 128, 256)


def _metrics(recon: torch.Tensor, clean: torch.Tensor) -> dict[str, list[float]]:
    return {
        "mse": [mse(r, c) for r, c in zip(recon, clean)],
        "psnr": [psnr(r, c) for r, c in zip(recon, clean)],
        "ssim": [ssim(r, c) for r, c in zip(recon, clean)],
    }


def _stats(values: dict[str, list[float]]) -> dict:
    return {name: summary(v) for name, v in values.items()}


@torch.inference_mode()
def _codes(model: FaceAE, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.code(images[i : i + 128]) for i in range(0, len(images), 128)])


@torch.inference_mode()
def _decode(model: FaceAE, codes: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.decode(codes[i : i + 128]) for i in range(0, len(codes), 128)])


def _classic_at(crops: list, budgets: list[int]) -> dict:
    """Each classic codec at the highest quality that fits each face's own byte budget."""
    out = {}
    for fmt in CLASSIC_FORMATS:
        scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "bytes": [], "quality": []}
        failed = 0
        for crop, budget in zip(crops, budgets):
            found = classic_within(crop, fmt, budget)
            if not found.fits:
                failed += 1
                continue
            clean, decoded = to_tensor(crop), to_tensor(found.image)
            scores["psnr"].append(psnr(decoded, clean))
            scores["ssim"].append(ssim(decoded, clean))
            scores["bytes"].append(len(found.data))
            scores["quality"].append(found.quality)
        out[fmt] = {k: (float(np.mean(v)) if v else None) for k, v in scores.items()} | {
            "failed": failed,
            "fitted": len(crops) - failed,
        }
    return out


def _fcz(
    model: FaceAE, codes: torch.Tensor, images: torch.Tensor, latent: int, q: int | None, max_bytes: int | None = None
) -> dict:
    """Real .fcz files for every face: sizes, estimate, and the decoded quality."""
    real, estimated, decoded = [], [], []
    models = {model.cfg.kind: model}
    for code in codes:
        result = compress_code(model, code[:latent].double().numpy(), q, max_bytes)
        real.append(len(result.data))
        estimated.append(result.estimated_bits / 8)
        decoded.append(decompress(result.data, models))
    return {"real": real, "estimated": estimated, "metrics": _metrics(torch.stack(decoded), images)}


def evaluate(
    images: torch.Tensor, models: dict[str, FaceAE], codec_faces: int = 200, seed: int = 0, classic_sweep: bool = True
) -> dict:
    """Everything the benchmark page shows, for float (N, 3, 128, 128) crops in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    noisy = (images + NOISE_SIGMA * torch.randn(images.shape, generator=gen)).clamp(0, 1)
    # Faces spread evenly over the split: its order follows the source sets.
    pick = torch.linspace(0, len(images) - 1, codec_faces).round().long().unique()
    subset = images[pick]
    crops = [to_pil(x) for x in subset]
    records = []
    rd_fcz = []
    budgets = []
    for kind, model in models.items():
        codes, noisy_codes = _codes(model, images), _codes(model, noisy)
        for latent in tqdm(model.cfg.ladder, desc=f"evaluating {kind}", unit="size"):
            clean = _metrics(_decode(model, codes[:, :latent]), images)
            under_noise = _metrics(_decode(model, noisy_codes[:, :latent]), images)
            fcz = _fcz(model, codes[pick], subset, latent, DEFAULT_Q)
            unquantised = [psnr(r, c) for r, c in zip(_decode(model, codes[pick, :latent]), subset)]
            records.append(
                {
                    "model": kind,
                    "latent": latent,
                    **_stats(clean),
                    "noisy": _stats(under_noise),
                    "hist": {name: histogram(v) for name, v in clean.items()},
                    "bytes": {"real": float(np.mean(fcz["real"])), "estimated": float(np.mean(fcz["estimated"]))},
                    "codec": _stats(fcz["metrics"])
                    | {"quantiser": DEFAULT_Q, "faces": len(subset), "unquantised_psnr": float(np.mean(unquantised))},
                    "classic": _classic_at(crops, fcz["real"]),
                }
            )
        for latent in RD_LATENTS:
            for q in RD_QUANTISERS:
                fcz = _fcz(model, codes[pick], subset, latent, q)
                rd_fcz.append(
                    {
                        "model": kind,
                        "latent": latent,
                        "quantiser": q,
                        "bytes": float(np.mean(fcz["real"])),
                        "estimated_bytes": float(np.mean(fcz["estimated"])),
                        "psnr": float(np.mean(fcz["metrics"]["psnr"])),
                        "ssim": float(np.mean(fcz["metrics"]["ssim"])),
                    }
                )
        for max_bytes in BYTE_BUDGETS:
            for latent in model.cfg.ladder:
                fcz = _fcz(model, codes[pick], subset, latent, None, max_bytes)
                budgets.append(
                    {
                        "model": kind,
                        "latent": latent,
                        "max_bytes": max_bytes,
                        "fitted": sum(n <= max_bytes for n in fcz["real"]),
                        "bytes": float(np.mean(fcz["real"])),
                        "largest_file": max(fcz["real"]),
                        "psnr": float(np.mean(fcz["metrics"]["psnr"])),
                        "ssim": float(np.mean(fcz["metrics"]["ssim"])),
                    }
                )
    rd_classic = []
    for fmt in CLASSIC_FORMATS if classic_sweep else ():
        for quality in CLASSIC_QUALITIES:
            sizes, psnrs, ssims = [], [], []
            for crop, clean in zip(crops, subset):
                data = encode_classic(crop, fmt, quality)
                decoded = to_tensor(load_image(data))
                sizes.append(len(data))
                psnrs.append(psnr(decoded, clean))
                ssims.append(ssim(decoded, clean))
            rd_classic.append(
                {
                    "format": fmt,
                    "quality": quality,
                    "bytes": float(np.mean(sizes)),
                    "median_bytes": float(np.median(sizes)),
                    "psnr": float(np.mean(psnrs)),
                    "ssim": float(np.mean(ssims)),
                }
            )
    return {
        "faces": len(images),
        "codec_faces": len(subset),
        "noise_sigma": NOISE_SIGMA,
        "records": records,
        "rate_distortion": {"fcz": rd_fcz, "classic": rd_classic},
        "budgets": budgets,
    }


def load_eval_images(source: Path, limit: int | None = None) -> torch.Tensor:
    """A folder of 128x128 crops, or a `prepare` cache (its validation split)."""
    source = Path(source)
    if (source / "split.json").exists():
        from .data import CropCache

        images = CropCache(source, "val").load_all().float() / 255
    else:
        from .data import load_crop_dir

        images = load_crop_dir(source)[1]
    return images[:limit] if limit else images


def print_table(result: dict) -> None:
    print(f"{result['faces']} faces (codec and classic codecs on {result['codec_faces']} spread over them)")
    print(
        f"{'model':5} {'latent':>6} {'PSNR':>7} {'SSIM':>6} {'noisy':>7} {'bytes':>6} {'est.':>6} {'fcz PSNR':>8}"
        + "".join(f" {classic_name(fmt):>11}" for fmt in CLASSIC_FORMATS)
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


def best_within_budgets(result: dict) -> dict[int, dict]:
    """For each byte budget, the model and latent size with the best PSNR when every file fits."""
    best: dict[int, dict] = {}
    for row in result.get("budgets", []):
        if row["fitted"] == result["codec_faces"] and row["psnr"] > best.get(row["max_bytes"], {}).get("psnr", -1):
            best[row["max_bytes"]] = row
    return dict(sorted(best.items()))


def merge_into(old: dict, new: dict, kinds: list[str]) -> dict:
    """`new` (measured for `kinds` only) with every other model's rows and the classic sweep kept from `old`."""

    def keep(rows: list[dict]) -> list[dict]:
        return [r for r in rows if r["model"] not in kinds]

    merged = dict(new)
    merged["records"] = keep(old["records"]) + new["records"]
    merged["budgets"] = keep(old.get("budgets", [])) + new["budgets"]
    merged["rate_distortion"] = {
        "fcz": keep(old["rate_distortion"]["fcz"]) + new["rate_distortion"]["fcz"],
        "classic": old["rate_distortion"]["classic"],
    }
    return merged
