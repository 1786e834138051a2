"""One benchmark command: `python -m facecomp bench --json FILE`.

Everything is timed on this machine in one run, so ratios between its numbers (the
.fcz codec against the classic codecs on the same crop) compare like with like. Run it
on an idle machine: a training run or a test suite beside it slows every number.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from ..codec import fcz
from ..codec.classic import encode_classic
from ..codec.codecs import codecs_for
from ..codec.fcz import LoadedModel
from ..faces import canonical_crop, load_image
from ..spec import CLASSIC_FORMATS, LATENT_LADDER, MODEL_KINDS
from ..visual import to_tensor
from ..weights import load_models

BATCHES = (1, 64)
WITHIN_BUDGETS = (256, 1024)  # byte budgets at which every codec's `within` is timed


def summary(times_ms: list[float]) -> dict[str, float]:
    """Median and 95th percentile of timings in milliseconds."""
    times = sorted(times_ms)
    return {
        "median_ms": round(statistics.median(times), 3),
        "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 3),
        "n": len(times),
    }


def timed(fn: Callable[[], object], repeats: int, warmup: int = 3) -> dict[str, float]:
    """Timing summary of `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return summary(times)


def machine() -> dict[str, object]:
    from ..training.common import cpu_name

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def benchmark_crop() -> Image.Image:
    """scikit-image's astronaut, cropped the canonical way (a real face no one trained on)."""
    from skimage import data

    return canonical_crop(Image.fromarray(data.astronaut()))[0]


@torch.inference_mode()
def model_latency(models: dict[str, LoadedModel], x: torch.Tensor, repeats: int) -> dict:
    """Encode and decode per model, latent size and batch size."""
    out: dict = {}
    for kind, loaded in models.items():
        model = loaded.network
        for batch in BATCHES:
            xb = x.expand(batch, -1, -1, -1).contiguous()
            n = max(3, repeats // batch)
            out[f"{kind}_encode_b{batch}"] = timed(lambda m=model, xb=xb: m.code(xb), n)
            code = model.code(xb)
            for latent in LATENT_LADDER:
                z = code[:, :latent]
                out[f"{kind}_decode_{latent}_b{batch}"] = timed(lambda m=model, z=z: m.decode(z), n)
    return out


def codec_latency(models: dict[str, LoadedModel], crop: Image.Image, repeats: int) -> dict:
    """compress + decompress of one face per model and level, and the classic codecs on the same crop."""
    x = to_tensor(crop)
    out: dict = {}
    for kind, model in models.items():
        for latent in LATENT_LADDER:
            packed = fcz.compress(model, x, latent)
            round_trip = lambda m=model, latent=latent: fcz.decompress(fcz.compress(m, x, latent).data, models)  # noqa: E731
            stats = timed(round_trip, repeats)
            out[f"{kind}_{latent}"] = {**stats, "bytes": len(packed.data)}
    for max_bytes in WITHIN_BUDGETS:  # what Compare runs per codec: the best file within the budget
        for codec in codecs_for(models):
            stats = timed(lambda c=codec, b=max_bytes: c.within(x, b), max(5, repeats // 5))
            out[f"{codec.key.lower()}_within_{max_bytes}"] = stats
    for fmt in CLASSIC_FORMATS:
        data = encode_classic(crop, fmt, 30)
        stats = timed(lambda fmt=fmt: load_image(encode_classic(crop, fmt, 30)), repeats)
        out[f"{fmt.lower()}_q30"] = {**stats, "bytes": len(data)}
    return out


def detection_latency(repeats: int) -> dict:
    """Load, detect and crop a 1920x1080 photo (the astronaut on a larger canvas, as a camera frame)."""
    from skimage import data

    from ..faces import detect_faces
    from ..visual import png_bytes

    frame = Image.new("RGB", (1920, 1080), (90, 100, 110))
    frame.paste(Image.fromarray(data.astronaut()).resize((900, 900)), (510, 90))
    encoded = png_bytes(frame)

    def run() -> None:
        canonical_crop(load_image(encoded))

    return {"faces_found": len(detect_faces(frame)), **timed(run, repeats)}


def training_throughput(kind: str = "vae", batch: int = 64, steps: int = 6) -> dict:
    """Images per second of full training steps (channels_last, and bf16 autocast where the CPU
    has bfloat16 instructions, as `train`)."""
    from ..nets.autoencoder import ModelConfig, build_model, sample_prefix
    from ..training.autoencoder import build_optimizer
    from ..training.common import autocast

    model = build_model(ModelConfig(kind=kind)).to(memory_format=torch.channels_last).train()
    opt = build_optimizer(model, 1e-4)
    x = torch.rand(batch, 3, 128, 128).contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with autocast("cpu"):
            out = model(x, sample_prefix(batch, model.cfg.ladder))
        loss = model.loss(out, x, 0.05)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    stats = timed(step, steps, warmup=2)
    return {"batch": batch, "step": stats, "images_per_second": round(1000 * batch / stats["median_ms"], 1)}


def peak_memory_mb() -> float:
    """Peak resident memory of this process (Linux reports kilobytes, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def ratios(codecs: dict) -> dict:
    """How the .fcz round trip at 256 compares with the classic codecs' round trip on the same crop."""
    out = {}
    for kind in MODEL_KINDS:
        ours = codecs.get(f"{kind}_256", {}).get("median_ms")
        for fmt in CLASSIC_FORMATS:
            theirs = codecs.get(f"{fmt.lower()}_q30", {}).get("median_ms")
            if ours and theirs:
                out[f"{kind}_256_vs_{fmt.lower()}"] = round(ours / theirs, 2)
    return out


def run_benchmarks(weights_dir: Path | None = None, repeats: int = 50) -> dict:
    models, _ = load_models(weights_dir)
    crop = benchmark_crop()
    result: dict = {"machine": machine(), "repeats": repeats}
    result["model_latency"] = model_latency(models, to_tensor(crop).unsqueeze(0), repeats)
    result["codec_round_trip"] = codec_latency(models, crop, repeats)
    result["codec_ratios"] = ratios(result["codec_round_trip"])
    result["detect_and_crop_1080p"] = detection_latency(max(5, repeats // 5))
    result["training"] = training_throughput()
    result["peak_memory_mb"] = peak_memory_mb()
    return result
