"""Benchmark: model loading, decode time, and compress + decompress time on this CPU.

    python scripts/bench_core.py [--threads 2] [--repeats 200]

Uses the shipped weights and scikit-image's astronaut as the face.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from skimage import data as skdata

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facecomp.codec import compress, decompress  # noqa: E402
from facecomp.faces import canonical_crop  # noqa: E402
from facecomp.visual import to_tensor  # noqa: E402
from facecomp.weights import load_model  # noqa: E402


def _timed(fn, repeats: int) -> dict[str, float]:
    for _ in range(10):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(times), 2), "p90_ms": round(sorted(times)[int(0.9 * len(times))], 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    models = {kind: load_model(kind)[0] for kind in ("ae", "vae")}
    load_ms = (time.perf_counter() - start) * 1000
    x = to_tensor(canonical_crop(Image.fromarray(skdata.astronaut()))[0])
    results: dict[str, object] = {"threads": args.threads, "load_both_models_ms": round(load_ms, 1)}
    with torch.inference_mode():
        for kind, model in models.items():
            z = model.code(x.unsqueeze(0))[:, :256]
            results[f"{kind}_decode_256"] = _timed(lambda m=model, z=z: m.decode(z), args.repeats)
            data = compress(model, x, 256).data
            results[f"{kind}_fcz_bytes_256"] = len(data)
            results[f"{kind}_compress_decompress_256"] = _timed(
                lambda m=model: decompress(compress(m, x, 256).data, models), args.repeats
            )
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
