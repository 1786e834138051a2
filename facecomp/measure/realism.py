"""Realism: can a fresh classifier tell pictures from real faces, and do they have real faces' fine detail?

Two numbers, both blind to who is in the picture (identity.py measures that):
- `two_sample_accuracy`: a classifier two-sample test (Lopez-Paz & Oquab, ICLR 2017). A small
  CNN is trained from scratch on 60% of each set and scored on the other 40%: 0.5 means it
  cannot tell the sets apart, 1.0 that every picture gives itself away. The accuracy depends on
  the set size, so sets are only compared at one size.
- `detail_energy`: the share of the grey-level power spectrum above a quarter of Nyquist. An MSE
  decoder's blur shows as a share far below real faces'; noise or over-sharpening far above.

FD-dlib (latent_report.py) misses blur: dlib's descriptor was trained to see people through it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TRAIN_SHARE = 0.6  # of each set, to train the classifier on; the rest scores it
EPOCHS = 12
BATCH = 64
DETAIL_CUTOFF = 0.125  # cycles per pixel: a quarter of Nyquist (0.5)
SEEDS = (0, 1, 2)
_LUMA = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)


def detail_share(images: torch.Tensor) -> torch.Tensor:
    """(N,) share of each (N, 3, H, W) picture's grey-level spectral power above DETAIL_CUTOFF."""
    grey = (images.float() * _LUMA).sum(1)
    grey = grey - grey.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.rfft2(grey).abs().pow(2)
    fy = torch.fft.fftfreq(grey.shape[1]).abs().reshape(-1, 1)
    fx = torch.fft.rfftfreq(grey.shape[2]).reshape(1, -1)
    # rfft2 keeps one half of the spectrum: columns 1..W/2-1 stand for two, 0 and W/2 for one.
    weight = torch.full_like(fx, 2.0)
    weight[0, 0] = 1.0
    if grey.shape[2] % 2 == 0:
        weight[0, -1] = 1.0
    high = (fy.pow(2) + fx.pow(2)).sqrt() > DETAIL_CUTOFF
    total = (power * weight).sum(dim=(1, 2)).clamp_min(1e-12)
    return (power * weight * high).sum(dim=(1, 2)) / total


def detail_energy(images: torch.Tensor, real: torch.Tensor) -> float:
    """Mean fine-detail share of `images` over that of `real` faces (1.0: as much detail as real faces)."""
    return float(detail_share(images).mean() / detail_share(real).mean())


class _Critic(nn.Module):
    """The two-sample test's classifier: four stride-2 convolutions and a linear read-out.

    No normalisation layer: per-picture normalisation (GroupNorm) divides out how much fine detail
    a picture has, the very cue blur leaves, and BatchNorm's running statistics lag this short training.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 16, 4, 2, 1), nn.LeakyReLU(0.2)]
        for cin, cout in ((16, 32), (32, 64), (64, 128)):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(128, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x * 2 - 1).mean(dim=(2, 3))).squeeze(1)


def _split(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    cut = int(round(TRAIN_SHARE * n))
    return order[:cut], order[cut:]


def two_sample_accuracy(real: torch.Tensor, fake: torch.Tensor, seed: int = 0, epochs: int = EPOCHS) -> float:
    """Held-out accuracy of a fresh classifier trained to tell `fake` from `real` (N, 3, H, W) in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    real_train, real_test = _split(len(real), generator)
    fake_train, fake_test = _split(len(fake), generator)
    x_train = torch.cat([real[real_train], fake[fake_train]]).float()
    y_train = torch.cat([torch.zeros(len(real_train)), torch.ones(len(fake_train))])
    x_test = torch.cat([real[real_test], fake[fake_test]]).float()
    y_test = torch.cat([torch.zeros(len(real_test)), torch.ones(len(fake_test))])
    critic = _Critic()
    optimiser = torch.optim.Adam(critic.parameters(), lr=1e-3)
    for _ in range(epochs):
        critic.train()
        for batch in torch.randperm(len(x_train), generator=generator).split(BATCH):
            loss = F.binary_cross_entropy_with_logits(critic(x_train[batch]), y_train[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    critic.eval()
    with torch.no_grad():
        logits = torch.cat([critic(x) for x in x_test.split(256)])
    return float(((logits > 0).float() == y_test).float().mean())


def realism(real: torch.Tensor, fake: torch.Tensor, seeds: tuple[int, ...] = SEEDS) -> dict[str, float | list[float]]:
    """The two-sample test over several seeds (mean and spread) and the fine-detail energy ratio."""
    accuracies = [two_sample_accuracy(real, fake, seed) for seed in seeds]
    return {
        "classifier_accuracy": float(np.mean(accuracies)),
        "classifier_accuracy_spread": float(np.max(accuracies) - np.min(accuracies)),
        "classifier_accuracies": accuracies,
        "detail_energy": detail_energy(fake, real),
        "pictures": len(fake),
    }
