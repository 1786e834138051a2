"""Check that a .fcz file decodes to the same pixels on another machine.

Run `--write ref.npz` on one machine and `--compare ref.npz` on another. The files are
made from seeded codes drawn from each model's latent statistics (no photo travels),
for every model, latent size and a few quantisers, so both machines code the same bytes.

  python scripts/decode_determinism.py --write /tmp/ref.npz
  python scripts/decode_determinism.py --compare /tmp/ref.npz
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facecomp.codec import compress_code, decompress  # noqa: E402
from facecomp.visual import to_pil  # noqa: E402
from facecomp.weights import load_models  # noqa: E402

FILES_PER_SETTING = 4
QUANTISERS = (0, 8, 24)


def decode_all() -> tuple[list[bytes], np.ndarray, list[str]]:
    models, _ = load_models()
    rng = np.random.default_rng(0)
    files, pixels, float_hashes = [], [], []
    for model in models.values():
        mean, std = model.latent_mean.double().numpy(), model.latent_std.double().numpy()
        for latent in model.cfg.ladder:
            for q in QUANTISERS:
                for _ in range(FILES_PER_SETTING):
                    code = (mean + std * rng.standard_normal(len(mean)))[:latent]
                    data = compress_code(model, code, q).data
                    image = decompress(data, models)
                    files.append(data)
                    float_hashes.append(hashlib.sha256(image.numpy().tobytes()).hexdigest())
                    pixels.append(np.asarray(to_pil(image)))  # the 8-bit pixels the CLI and app write
    return files, np.stack(pixels), float_hashes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path)
    group.add_argument("--compare", type=Path)
    args = parser.parse_args()

    files, pixels, float_hashes = decode_all()
    machine = f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if args.write:
        blob = np.frombuffer(b"".join(files), np.uint8)
        lengths = np.array([len(f) for f in files])
        np.savez_compressed(args.write, files=blob, lengths=lengths, pixels=pixels, float_hashes=float_hashes)
        print(f"wrote {len(files)} decoded files from {machine} to {args.write}")
        return 0

    ref = np.load(args.compare)
    same_bytes = bytes(ref["files"]) == b"".join(files)
    pixel_diff = np.abs(pixels.astype(int) - ref["pixels"].astype(int))
    same_floats = sum(a == b for a, b in zip(float_hashes, ref["float_hashes"]))
    print(f"{machine}: {len(files)} files")
    print(f"  same .fcz bytes as the reference: {same_bytes}")
    print(f"  images with any differing 8-bit pixel: {(pixel_diff.reshape(len(files), -1).max(1) > 0).sum()}")
    print(f"  differing 8-bit pixel values: {(pixel_diff > 0).sum()} of {pixel_diff.size}, max {pixel_diff.max()}")
    print(f"  images bit-identical in float32 before rounding: {same_floats} of {len(files)}")
    return 0 if same_bytes and pixel_diff.max() == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
