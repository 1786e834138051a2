"""The sharp decoding: a refiner that turns an MSE decoder's picture into a realistic face.

An MSE decoder draws the average of every face its code could stand for: right shape, no pores,
no hair strands. The refiner sees that picture and adds the fine detail a real face has, while
keeping its coarse content (the code's colours, shapes and person): the same code, decoded for
realism instead of PSNR (Blau & Michaeli's perception-distortion trade-off). One refiner serves
both models, every latent size and the base layer of .fcz files, since its input is a picture.

It is a residual network on the MSE picture (space-to-depth, residual blocks at 64 and 32 pixels,
back to 128, where a last small convolution mixes the four sub-pixel phases so that they do not
draw a 2-pixel grid) whose last layer starts at zero, so an untrained refiner is the MSE decoder
itself; training/sharp.py trains it against a patch discriminator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class RefinerConfig:
    width: int = 48  # channels at 64x64
    inner_width: int = 96  # channels at 32x32
    outer_blocks: int = 1  # residual blocks at 64x64, before and after the inner level
    inner_blocks: int = 3  # residual blocks at 32x32
    full_width: int = 16  # channels at 128x128, where the last convolution runs

    def to_dict(self) -> dict:
        return asdict(self)


class _Block(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.2))


class Refiner(nn.Module):
    """(N, 3, 128, 128) MSE pictures in [0, 1] -> sharp pictures in [0, 1]."""

    def __init__(self, cfg: RefinerConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or RefinerConfig()
        w, wi = self.cfg.width, self.cfg.inner_width
        self.stem = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(12, w, 3, padding=1))
        self.outer_in = nn.Sequential(*[_Block(w) for _ in range(self.cfg.outer_blocks)])
        self.down = nn.Conv2d(w, wi, 4, stride=2, padding=1)
        self.inner = nn.Sequential(*[_Block(wi) for _ in range(self.cfg.inner_blocks)])
        self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(wi, w, 3, padding=1))
        self.outer_out = nn.Sequential(*[_Block(w) for _ in range(self.cfg.outer_blocks)])
        wf = self.cfg.full_width
        self.head = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.Conv2d(w, 4 * wf, 3, padding=1),
            nn.PixelShuffle(2),
            nn.LeakyReLU(0.2),
            nn.Conv2d(wf, 3, 3, padding=1),
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.outer_in(self.stem(x * 2 - 1))
        h = h + self.up(self.inner(F.leaky_relu(self.down(h), 0.2)))
        return (x + self.head(self.outer_out(h)).float()).clamp(0, 1)


def blur_down(x: torch.Tensor) -> torch.Tensor:
    """Half the size, low-passed first ([1, 2, 1] each way): a strided layer alone aliases, and is
    blind to the periodic patterns a generator can then hide in what it discards."""
    kernel = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, stride=2, groups=x.shape[1])


class PatchDiscriminator(nn.Module):
    """Real-or-refined logits per overlapping patch, at two scales: the picture (patches of about
    60 pixels: skin, hair, eyes) and its half-size copy (about 120: how the parts fit together).

    Each scale is a stack of 3x3 convolutions that halve the size through blur_down. No spectral
    norm: normalised layer by layer, a patch critic is too weak to tell a few pixels of blotchy
    texture from skin; the trainer's R1 penalty keeps it smooth on real faces instead.
    """

    def __init__(self, width: int = 32, depth: int = 3) -> None:
        super().__init__()
        self.scales = nn.ModuleList(_CriticScale(width, depth) for _ in range(2))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every scale's hidden activations, then its patch logits (flattened, both scales' together) last."""
        found, logits, h = [], [], x * 2 - 1
        for i, scale in enumerate(self.scales):
            if i:
                h = F.avg_pool2d(h, 2)
            *hidden, out = scale(h)
            found += hidden
            logits.append(out.flatten(1))
        return [*found, torch.cat(logits, 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[-1]


class _CriticScale(nn.Module):
    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        widths = [3] + [min(width * 2**i, 4 * width) for i in range(depth + 1)]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, 1, 1) for a, b in zip(widths, widths[1:]))
        self.out = nn.Conv2d(widths[-1], 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        found, h = [], x
        for i, conv in enumerate(self.convs):
            h = F.leaky_relu(conv(h), 0.2)
            found.append(h)
            if i < len(self.convs) - 1:
                h = blur_down(h)
        return [*found, self.out(h)]


def low_pass(x: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """The coarse content the refiner must keep: the picture averaged over factor x factor pixels."""
    return F.avg_pool2d(x, factor)


@torch.inference_mode()
def sharpen(refiner: Refiner, pictures: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """The sharp decoding of MSE pictures: (N, 3, 128, 128) or one (3, 128, 128), in [0, 1], float32."""
    single = pictures.dim() == 3
    x = pictures.unsqueeze(0) if single else pictures
    out = torch.cat([refiner(x[i : i + batch].float()) for i in range(0, len(x), batch)])
    return out[0] if single else out
