"""Evaluation: quality per model and latent size, noise robustness, and rate-distortion.

Writes one JSON file that the app's benchmark page plots:
  records           one per (model, latent): MSE/PSNR/SSIM statistics and histograms,
                    the same under Gaussian input noise, the real .fcz bytes next to the
                    entropy model's estimate, and the classic codecs (facecomp.codec.classic) at
                    the same bytes
  rate_distortion   .fcz at several quantisers and classic codecs at several qualities
  budgets           every face's .fcz file held to a byte budget (the finest quantiser that
                    fits it), per model and latent size
  budget_table      every face held to each budget from 32 bytes to 2 KB: per model the best
                    file that fits (codec.budget.best_within: latent size, quantiser, detail
                    layer), per classic codec the highest quality that fits
Identity (facecomp.measure.identity): dlib's descriptor distance of each decoded face to its original,
summarised as mean, median and the share kept as the same person (< 0.6), for the .fcz rows
of `records`, the detail and classic rate-distortion rows and the budget table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..codec.classic import encode_classic
from ..codec.codecs import Codec, FczCodec, PillowCodec
from ..codec.entropy import DEFAULT_Q
from ..codec.fcz import LoadedModel, compress_code, compress_detail, decompress
from ..faces import load_image
from ..spec import CLASSIC_FORMATS, EVALUATED_BUDGETS
from ..visual import to_pil, to_tensor
from .metrics import histogram, mse, psnr, ssim, summary

NOISE_SIGMA = 0.1
RD_QUANTISERS = (0, 4, 8, 12, 16, 24, 32)
RD_LATENTS = (64, 128, 256, 512)
CLASSIC_QUALITIES = (0, 5, 10, 20, 30, 50, 70, 90)
BYTE_BUDGETS = (64, 128, 256)  # the budgets of the per-latent-size rows (`budgets`)
DETAIL_QUALITY_STEP = 4  # rate-distortion points every this many detail qualities
IDENTITY_BATCH = 1024  # pictures per process pool of dlib descriptors


class IdentityQueue:
    """Decoded faces waiting for dlib descriptors, computed in large batches at the end
    (each batch starts one process pool; dlib's models load once per worker)."""

    def __init__(self, originals: torch.Tensor) -> None:
        self.originals = originals
        self.jobs: list[tuple[dict, list[int], torch.Tensor]] = []

    def add(self, row: dict, faces: list[int], pictures: torch.Tensor) -> None:
        """`row["identity"]` will summarise pictures[i] against originals[faces[i]]."""
        self.jobs.append((row, list(faces), (pictures.clamp(0, 1) * 255).round().to(torch.uint8)))

    def run(self) -> None:
        from . import identity

        reference = identity.descriptors(self.originals)
        pictures = torch.cat([p for _, _, p in self.jobs]) if self.jobs else torch.zeros(0, 3, 128, 128)
        found = np.concatenate(
            [
                identity.descriptors(pictures[i : i + IDENTITY_BATCH].float() / 255)
                for i in range(0, len(pictures), IDENTITY_BATCH)
            ]
            or [np.zeros((0, 128))]
        )
        start = 0
        for row, faces, batch in self.jobs:
            dist = identity.distances(found[start : start + len(batch)], reference[faces])
            row["identity"] = identity.summary(dist) if len(dist) else None
            start += len(batch)
        self.jobs = []


def _metrics(recon: torch.Tensor, clean: torch.Tensor) -> dict[str, list[float]]:
    return {
        "mse": [mse(r, c) for r, c in zip(recon, clean)],
        "psnr": [psnr(r, c) for r, c in zip(recon, clean)],
        "ssim": [ssim(r, c) for r, c in zip(recon, clean)],
    }


def _stats(values: dict[str, list[float]]) -> dict:
    return {name: summary(v) for name, v in values.items()}


@torch.inference_mode()
def _codes(model: LoadedModel, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.network.code(images[i : i + 128]) for i in range(0, len(images), 128)])


@torch.inference_mode()
def _decode(model: LoadedModel, codes: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.network.decode(codes[i : i + 128]) for i in range(0, len(codes), 128)])


def _classic_at(faces: torch.Tensor, budgets: list[int]) -> dict:
    """Each classic codec at the highest quality that fits each face's own byte budget."""
    out = {}
    for fmt in CLASSIC_FORMATS:
        codec = PillowCodec(fmt)
        scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "bytes": [], "quality": []}
        for clean, budget in zip(faces, budgets):
            found = codec.within(clean, budget)
            if found.fits:
                scores["psnr"].append(psnr(found.picture, clean))
                scores["ssim"].append(ssim(found.picture, clean))
                scores["bytes"].append(len(found.data))
                scores["quality"].append(found.details["quality"])
        fitted = len(scores["bytes"])
        out[fmt] = {k: (float(np.mean(v)) if v else None) for k, v in scores.items()} | {
            "failed": len(faces) - fitted,
            "fitted": fitted,
        }
    return out


def _fcz(
    model: LoadedModel,
    codes: torch.Tensor,
    images: torch.Tensor,
    latent: int,
    q: int | None,
    max_bytes: int | None = None,
) -> dict:
    """Real .fcz files for every face: sizes, estimate, and the decoded quality."""
    real, estimated, decoded = [], [], []
    models = {model.kind: model}
    for code in codes:
        result = compress_code(model, code[:latent].double().numpy(), q, max_bytes)
        real.append(len(result.data))
        estimated.append(result.estimated_bits / 8)
        decoded.append(decompress(result.data, models))
    decoded = torch.stack(decoded)
    return {"real": real, "estimated": estimated, "metrics": _metrics(decoded, images), "decoded": decoded}


def _budget_rows(codecs: list[Codec], subset: torch.Tensor, queue: IdentityQueue) -> list[dict]:
    """Every face held to each budget by each codec: its best fitting file."""
    rows = []
    for max_bytes in tqdm(EVALUATED_BUDGETS, desc="budget table", unit="budget"):
        for codec in codecs:
            found = [codec.within(x, max_bytes) for x in subset]
            fits = [i for i, f in enumerate(found) if f.fits]
            decoded = torch.stack([found[i].picture for i in fits]) if fits else torch.zeros(0, 3, 128, 128)
            sizes = [len(found[i].data) for i in fits]
            row = _budget_row(codec.key, max_bytes, len(subset), sizes, decoded, subset[fits])
            if isinstance(codec, PillowCodec):
                row["smallest_file"] = float(np.median([len(f.data) for f in found if not f.fits] or [0]))
            else:
                row["detail_files"] = sum(found[i].details["detail_quality"] is not None for i in fits)
                row["latents"] = sorted({found[i].details["latent"] for i in fits})
            queue.add(row, fits, decoded)
            rows.append(row)
    return rows


def _budget_row(
    codec: str, max_bytes: int, faces: int, sizes: list[int], decoded: torch.Tensor, clean: torch.Tensor
) -> dict:
    scores = _metrics(decoded, clean)
    return {
        "codec": codec,
        "max_bytes": max_bytes,
        "faces": faces,
        "fitted": len(sizes),
        "bytes": float(np.mean(sizes)) if sizes else None,
        "psnr": float(np.mean(scores["psnr"])) if sizes else None,
        "ssim": float(np.mean(scores["ssim"])) if sizes else None,
    }


def _detail_curve(model: LoadedModel, subset: torch.Tensor, queue: IdentityQueue) -> list[dict]:
    """The detail layer's rate-distortion points: every face at each DETAIL_QUALITY_STEP-th quality."""
    rows = []
    qualities = range(0, model.detail_codec.layer.cfg.qualities, DETAIL_QUALITY_STEP)
    for quality in tqdm(qualities, desc=f"{model.kind} detail layer", unit="quality"):
        files = [compress_detail(model, x, quality) for x in subset]
        decoded = torch.stack([decompress(f.data, {model.kind: model}) for f in files])
        scores = _metrics(decoded, subset)
        row = {
            "model": model.kind,
            "quality": quality,
            "bytes": float(np.mean([len(f.data) for f in files])),
            "estimated_bytes": float(np.mean([f.estimated_bits / 8 for f in files])),
            "psnr": float(np.mean(scores["psnr"])),
            "ssim": float(np.mean(scores["ssim"])),
        }
        queue.add(row, list(range(len(subset))), decoded)
        rows.append(row)
    return rows


def _size_records(
    model: LoadedModel, images: torch.Tensor, codes: torch.Tensor, noisy: torch.Tensor, pick: torch.Tensor, queue
) -> list:
    """One record per latent size: quality of all faces, under noise, and real .fcz files of the subset."""
    subset, records = images[pick], []
    noisy_codes = _codes(model, noisy)
    for latent in tqdm(model.network.cfg.ladder, desc=f"evaluating {model.kind}", unit="size"):
        clean = _metrics(_decode(model, codes[:, :latent]), images)
        under_noise = _metrics(_decode(model, noisy_codes[:, :latent]), images)
        fcz = _fcz(model, codes[pick], subset, latent, DEFAULT_Q)
        unquantised = [psnr(r, c) for r, c in zip(_decode(model, codes[pick, :latent]), subset)]
        fcz_row = _stats(fcz["metrics"]) | {
            "quantiser": DEFAULT_Q,
            "faces": len(subset),
            "unquantised_psnr": float(np.mean(unquantised)),
        }
        queue.add(fcz_row, list(range(len(subset))), fcz["decoded"])  # fills fcz_row["identity"] at the end
        records.append(
            {
                "model": model.kind,
                "latent": latent,
                **_stats(clean),
                "noisy": _stats(under_noise),
                "hist": {name: histogram(v) for name, v in clean.items()},
                "bytes": {"real": float(np.mean(fcz["real"])), "estimated": float(np.mean(fcz["estimated"]))},
                "codec": fcz_row,
                "classic": _classic_at(subset, fcz["real"]),
            }
        )
    return records


def _quantiser_curve(model: LoadedModel, codes: torch.Tensor, subset: torch.Tensor) -> list[dict]:
    """.fcz base files at several latent sizes and quantisers: the rate-distortion points."""
    rows = []
    for latent in RD_LATENTS:
        for q in RD_QUANTISERS:
            fcz = _fcz(model, codes, subset, latent, q)
            rows.append(
                {
                    "model": model.kind,
                    "latent": latent,
                    "quantiser": q,
                    "bytes": float(np.mean(fcz["real"])),
                    "estimated_bytes": float(np.mean(fcz["estimated"])),
                    "psnr": float(np.mean(fcz["metrics"]["psnr"])),
                    "ssim": float(np.mean(fcz["metrics"]["ssim"])),
                }
            )
    return rows


def _latent_budgets(model: LoadedModel, codes: torch.Tensor, subset: torch.Tensor) -> list[dict]:
    """Every face's base file held to each of BYTE_BUDGETS, per latent size (the finest quantiser that fits)."""
    rows = []
    for max_bytes in BYTE_BUDGETS:
        for latent in model.network.cfg.ladder:
            fcz = _fcz(model, codes, subset, latent, None, max_bytes)
            rows.append(
                {
                    "model": model.kind,
                    "latent": latent,
                    "max_bytes": max_bytes,
                    "fitted": sum(n <= max_bytes for n in fcz["real"]),
                    "bytes": float(np.mean(fcz["real"])),
                    "largest_file": max(fcz["real"]),
                    "psnr": float(np.mean(fcz["metrics"]["psnr"])),
                    "ssim": float(np.mean(fcz["metrics"]["ssim"])),
                }
            )
    return rows


def _classic_sweep(subset: torch.Tensor, queue: IdentityQueue) -> list[dict]:
    """Each classic format at each of CLASSIC_QUALITIES on every face of the subset."""
    crops, rows = [to_pil(x) for x in subset], []
    for fmt in CLASSIC_FORMATS:
        for quality in CLASSIC_QUALITIES:
            sizes, psnrs, ssims, pictures = [], [], [], []
            for crop, clean in zip(crops, subset):
                data = encode_classic(crop, fmt, quality)
                decoded = to_tensor(load_image(data))
                sizes.append(len(data))
                psnrs.append(psnr(decoded, clean))
                ssims.append(ssim(decoded, clean))
                pictures.append(decoded)
            row = {
                "format": fmt,
                "quality": quality,
                "bytes": float(np.mean(sizes)),
                "median_bytes": float(np.median(sizes)),
                "psnr": float(np.mean(psnrs)),
                "ssim": float(np.mean(ssims)),
            }
            queue.add(row, list(range(len(subset))), torch.stack(pictures))
            rows.append(row)
    return rows


def evaluate(
    images: torch.Tensor,
    models: dict[str, LoadedModel],
    codec_faces: int = 200,
    seed: int = 0,
    classic_sweep: bool = True,
) -> dict:
    """Everything the benchmark page shows, for float (N, 3, 128, 128) crops in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    noisy = (images + NOISE_SIGMA * torch.randn(images.shape, generator=gen)).clamp(0, 1)
    # Faces spread evenly over the split: its order follows the source sets.
    pick = torch.linspace(0, len(images) - 1, codec_faces).round().long().unique()
    subset = images[pick]
    records, rd_fcz, rd_detail, budgets = [], [], [], []
    queue = IdentityQueue(subset)
    for model in models.values():
        codes = _codes(model, images)
        records += _size_records(model, images, codes, noisy, pick, queue)
        rd_fcz += _quantiser_curve(model, codes[pick], subset)
        budgets += _latent_budgets(model, codes[pick], subset)
        if model.detail_codec is not None:
            rd_detail += _detail_curve(model, subset, queue)
    # Each model alone (its own best file), then each classic format: the budget table's rows.
    codecs = [FczCodec(model) for model in models.values()] + [PillowCodec(fmt) for fmt in CLASSIC_FORMATS]
    budget_table = _budget_rows(codecs, subset, queue)
    rd_classic = _classic_sweep(subset, queue) if classic_sweep else []
    queue.run()
    return {
        "faces": len(images),
        "codec_faces": len(subset),
        "noise_sigma": NOISE_SIGMA,
        "records": records,
        "rate_distortion": {"fcz": rd_fcz, "detail": rd_detail, "classic": rd_classic},
        "budgets": budgets,
        "budget_table": budget_table,
    }


def load_eval_images(source: Path, limit: int | None = None) -> torch.Tensor:
    """A folder of 128x128 crops, or a `prepare` cache (its validation split)."""
    source = Path(source)
    if (source / "split.json").exists():
        from ..data import CropCache

        images = CropCache(source, "val").load_all().float() / 255
    else:
        from ..data import load_crop_dir

        images = load_crop_dir(source)[1]
    return images[:limit] if limit else images


def merge_into(old: dict, new: dict, kinds: list[str]) -> dict:
    """`new` (measured for `kinds` only) with every other model's rows and the classic sweep kept from `old`."""

    def keep(rows: list[dict]) -> list[dict]:
        return [r for r in rows if r["model"] not in kinds]

    merged = dict(new)
    merged["weights"] = old.get("weights", {}) | new.get("weights", {})
    merged["records"] = keep(old["records"]) + new["records"]
    merged["budgets"] = keep(old.get("budgets", [])) + new["budgets"]
    merged["rate_distortion"] = {
        "fcz": keep(old["rate_distortion"]["fcz"]) + new["rate_distortion"]["fcz"],
        "detail": keep(old["rate_distortion"].get("detail", [])) + new["rate_distortion"]["detail"],
        "classic": old["rate_distortion"]["classic"],
    }
    # The budget table's classic rows are measured again with the model's: keep only other models' rows.
    measured = {r["codec"] for r in new["budget_table"]}
    kept = [r for r in old.get("budget_table", []) if r["codec"] not in measured]
    merged["budget_table"] = kept + new["budget_table"]
    return merged
