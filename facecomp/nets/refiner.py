"""The sharp decoding: a refiner that turns an MSE decoder's picture into a realistic face.

An MSE decoder draws the average of every face its code could stand for: right shape, no pores,
no hair strands. The refiner sees that picture and adds the fine detail a real face has, while
keeping its coarse content (the code's colours, shapes and person): the same code, decoded for
realism instead of PSNR (Blau & Michaeli's perception-distortion trade-off). One refiner serves
both models, every latent size and the base layer of .fcz files, since its input is a picture.

It is a residual network on the MSE picture (space-to-depth, residual blocks at 64 and 32 pixels,
back to 128) whose last layer starts at zero, so an untrained refiner is the MSE decoder itself;
training/sharp.py trains it against a patch discriminator.
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
        self.head = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(w, 12, 3, padding=1), nn.PixelShuffle(2))
        nn.init.zeros_(self.head[1].weight)
        nn.init.zeros_(self.head[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.outer_in(self.stem(x * 2 - 1))
        h = h + self.up(self.inner(F.leaky_relu(self.down(h), 0.2)))
        return (x + self.head(self.outer_out(h)).float()).clamp(0, 1)


class PatchDiscriminator(nn.Module):
    """Real-or-refined logit per overlapping patch (about 46x46 pixels each).

    No spectral norm: normalised layer by layer, a patch critic is too weak to tell a few pixels of
    blotchy texture from skin; the trainer's R1 penalty keeps it smooth on real faces instead.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        widths = (3, width, 2 * width, 4 * width)
        self.down = nn.ModuleList(nn.Conv2d(a, b, 4, 2, 1) for a, b in zip(widths, widths[1:]))
        self.mid = nn.Conv2d(4 * width, 4 * width, 3, 1, 1)
        self.out = nn.Conv2d(4 * width, 1, 3, 1, 1)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each hidden layer's activations (at 64, 32, 16 and 16 pixels), then the patch logits."""
        found, h = [], x * 2 - 1
        for conv in (*self.down, self.mid):
            h = F.leaky_relu(conv(h), 0.2)
            found.append(h)
        return [*found, self.out(h)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[-1]


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
