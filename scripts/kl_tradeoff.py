"""The VAE's KL-weight trade-off: validation PSNR and a grid of prior samples per weight.

    python scripts/kl_tradeoff.py RUN_DIR... --out docs/kl_tradeoff.png

Each RUN_DIR holds vae/vae.safetensors and vae/vae.json from `python -m facecomp train
--model vae --kl-weight W --out RUN_DIR`. Prior samples are generated, not photos.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facecomp.weights import read_model  # noqa: E402

SAMPLES = 8


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    rows = []
    for run in args.runs:
        card = json.loads((run / "vae" / "vae.json").read_text())
        model = read_model(run / "vae" / "vae.safetensors")
        samples = model.sample(SAMPLES, latent=256, generator=torch.Generator().manual_seed(0))
        rows.append((card["kl_weight"], card["validation_psnr"], samples))
    rows.sort(key=lambda r: r[0])

    fig, axes = plt.subplots(len(rows), SAMPLES, figsize=(SAMPLES * 1.3, len(rows) * 1.5))
    for r, (weight, val_psnr, samples) in enumerate(rows):
        for c in range(SAMPLES):
            ax = axes[r][c]
            ax.imshow(samples[c].permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(f"KL {weight:g}\n{val_psnr['256']:.1f} dB", fontsize=9)
    fig.suptitle("VAE prior samples (latent 256) and validation PSNR at 256, by KL weight", fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    summary = [{"kl_weight": w, "validation_psnr": p} for w, p, _ in rows]
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
