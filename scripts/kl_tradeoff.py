"""The VAE's KL-weight sweep as a figure: prior and fitted samples per run, with its measured numbers.

    python scripts/kl_tradeoff.py --report weights/latent_space.json --out docs/kl_tradeoff.png

The runs are the `sweep` part of the report (`python -m facecomp latent-space ... --sweep
RUN/vae/vae.safetensors ...`): each row decodes the same seeded codes from the prior N(0, I)
and from the Gaussian fitted to that run's codes. Samples are generated, not photos.
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

SAMPLES = 6  # per sampler and run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = json.loads(args.report.read_text())["sweep"]

    fig, axes = plt.subplots(len(rows), 2 * SAMPLES, figsize=(2 * SAMPLES * 1.05, len(rows) * 1.25))
    for r, row in enumerate(rows):
        model = read_model(Path(row["weights"]))
        for half, source in enumerate(("prior", "fitted")):
            faces = model.sample(SAMPLES, source, generator=torch.Generator().manual_seed(0))
            for c in range(SAMPLES):
                ax = axes[r][half * SAMPLES + c]
                ax.imshow(faces[c].permute(1, 2, 0).numpy())
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0 and c == 0:
                    ax.set_title(f"{source} samples →", fontsize=9, loc="left")
        fd = row["fd_dlib"]
        name = Path(row["weights"]).parent.parent.name
        axes[r][0].set_ylabel(
            f"{name}\nKL {row['kl_weight']:g}, {row['validation_psnr']['256']:.2f} dB\n"
            f"FD {fd['prior']:.3f} / {fd['fitted']:.3f}",
            fontsize=8,
        )
    fig.suptitle("VAE sweep: prior N(0, I) samples (left) and fitted-Gaussian samples (right)", fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
