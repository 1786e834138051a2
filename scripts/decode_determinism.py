"""Check that a .fcz file decodes to the same pixels on another machine.

Run `--write ref.npz` on one machine and `--compare ref.npz` on another. The files are
made from seeded codes drawn from each model's latent statistics (no photo travels),
for every model, latent size and a few quantisers, so both machines code the same bytes.

Detail-layer files (when the weights ship detail layers) are made from the built-in
photos and decoded random faces at a few qualities. Their encoder runs a float network,
so another machine may write other bytes; what must hold is that the reference's own
files decode on this machine to the same pictures: the decoder's entropy model is an
integer network with stored tables (facecomp.codec.detail_coder), so a table mismatch would show
as a garbage picture or a decoding error, not a one-level pixel difference.

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

from facecomp.codec.fcz import compress_code, compress_detail, decompress  # noqa: E402
from facecomp.codec.format import CodecError  # noqa: E402
from facecomp.comparison import BUILTIN_PHOTOS, builtin_photo_bytes, choose_crop, open_photo  # noqa: E402
from facecomp.visual import to_pil  # noqa: E402
from facecomp.weights import load_models  # noqa: E402

FILES_PER_SETTING = 4
QUANTISERS = (0, 8, 24)
DETAIL_QUALITIES = (0, 10, 20, 30, 40)


def detail_files(models: dict) -> list[bytes]:
    """Detail-layer files of the built-in photos and two decoded random faces per model."""
    from facecomp.visual import to_tensor

    faces = [to_tensor(choose_crop(open_photo(builtin_photo_bytes(name)), 0)) for name in BUILTIN_PHOTOS]
    generator = torch.Generator().manual_seed(0)
    for model in models.values():
        with torch.no_grad():
            network = model.network
            faces += list(network.decode(network.sample_codes(2, "fitted", generator=generator)).clamp(0, 1))
    files = []
    for model in models.values():
        if model.detail_codec is None:
            continue
        qualities = [q for q in DETAIL_QUALITIES if q < model.detail_codec.layer.cfg.qualities]
        files += [compress_detail(model, face, q).data for face in faces for q in qualities]
    return files


def decode_all() -> tuple[list[bytes], np.ndarray, list[str]]:
    models, _ = load_models()
    rng = np.random.default_rng(0)
    files, pixels, float_hashes = [], [], []
    for model in models.values():
        mean, std = model.network.latent_mean.double().numpy(), model.network.latent_std.double().numpy()
        for latent in model.network.cfg.ladder:
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
    models, _ = load_models()
    machine = f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if args.write:
        blob = np.frombuffer(b"".join(files), np.uint8)
        lengths = np.array([len(f) for f in files])
        detail = detail_files(models)
        detail_pixels = np.stack([np.asarray(to_pil(decompress(f, models))) for f in detail]) if detail else np.zeros(0)
        np.savez_compressed(
            args.write,
            files=blob,
            lengths=lengths,
            pixels=pixels,
            float_hashes=float_hashes,
            detail_files=np.frombuffer(b"".join(detail), np.uint8),
            detail_lengths=np.array([len(f) for f in detail]),
            detail_pixels=detail_pixels,
        )
        print(f"wrote {len(files)} base and {len(detail)} detail files from {machine} to {args.write}")
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
    detail_ok = True
    if "detail_files" in ref.files and len(ref["detail_lengths"]):
        blob, ends = bytes(ref["detail_files"]), np.cumsum(ref["detail_lengths"])
        worst, failed = 0, 0
        for start, end, expected in zip(ends - ref["detail_lengths"], ends, ref["detail_pixels"], strict=True):
            try:
                got = np.asarray(to_pil(decompress(blob[start:end], models))).astype(int)
                worst = max(worst, int(np.abs(got - expected.astype(int)).max()))
            except CodecError:
                failed += 1
        detail_ok = failed == 0 and worst <= 1
        print(f"  reference detail files: {len(ends)}, failed to decode: {failed}, max pixel difference: {worst}")
    return 0 if same_bytes and pixel_diff.max() == 0 and detail_ok else 1


if __name__ == "__main__":
    sys.exit(main())
