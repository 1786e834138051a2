"""The detail layer: a spatial latent that codes what the global code misses.

A .fcz file holds a base layer (the AE's or VAE's global code, the explorer's latent)
and, for budgets from ~110 bytes up, a detail layer on top of it:

  base     code[:base_latent] at quantiser base_q; its decoder gives x_b
  y        analysis(x, x_b): 8x8 x M, scaled by a per-channel gain that sets the quality
  z        hyper_analysis(y): 2x2 x Z, coded with a Gaussian of one learned scale per channel
  mu, sigma  hyper_synthesis(z + linear(base symbols)): the entropy model of y; the global
           code acts as a second hyperprior
  x_hat    x_b + synthesis(y_hat / gain, features of x_b)

One network serves every quality: a gain vector per lambda of the config is trained
(Cui et al. 2021, "asymmetric gained"; training.detail can add lower lambdas later), and
SUBSTEPS interpolated steps sit between neighbours, so the encoder can fill a byte
budget closely.

This module is the trainable network; facecomp.codec.detail_coder turns it into the exact,
integer entropy model that files are coded with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

QUALITY_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18)
SUBSTEPS = 4  # interpolated qualities between two trained gains
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 64.0, 64
HYPER_SIDE = 2  # the hyper-latent z is 2x2: a 128-pixel crop after six stride-2 layers


@dataclass
class DetailConfig:
    base_kind: str = "ae"  # "ae", "vae", or "" for a standalone codec (the measured alternative)
    base_latent: int = 128
    base_q: int = 8
    channels: int = 128
    latent_channels: int = 160
    hyper_channels: int = 64
    context_channels: int = 48
    lambdas: tuple[float, ...] = field(default=QUALITY_LAMBDAS)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DetailConfig:
        data = dict(data)
        data["lambdas"] = tuple(data["lambdas"])
        return cls(**data)

    @property
    def qualities(self) -> int:
        """Number of selectable qualities, trained and interpolated."""
        return (len(self.lambdas) - 1) * SUBSTEPS + 1


class SimpleGDN(nn.Module):
    """x / (beta + gamma |x|): the simplified GDN of Johnston et al. (2019); inverse multiplies."""

    def __init__(self, ch: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(ch))
        self.gamma = nn.Parameter(0.1 * torch.eye(ch).view(ch, ch, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = F.conv2d(x.abs(), self.gamma.abs(), self.beta.abs() + 1e-6)
        return x * norm if self.inverse else x / norm


def _conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def _deconv(cin: int, cout: int, k: int = 5) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=2, padding=k // 2, output_padding=1)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def gaussian_likelihood(v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """P(round(v) = 0-centred bin of v) under N(0, sigma) integrated over a unit bin, computed on
    the side of the tail that keeps precision."""
    v = v.abs()
    upper = torch.special.ndtr((0.5 - v) / sigma)
    lower = torch.special.ndtr((-0.5 - v) / sigma)
    return (upper - lower).clamp_min(1e-9)


class DetailLayer(nn.Module):
    def __init__(self, cfg: DetailConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n, m, z, c = cfg.channels, cfg.latent_channels, cfg.hyper_channels, cfg.context_channels
        self.analysis = nn.Sequential(
            _conv(6, n), SimpleGDN(n), _conv(n, n), SimpleGDN(n), _conv(n, n), SimpleGDN(n), _conv(n, m)
        )
        # Features of the base picture at 64, 32, 16 and 8 pixels, fed to each synthesis stage.
        self.context = nn.ModuleList([nn.Sequential(_conv(3 if i == 0 else c, c), nn.LeakyReLU(0.1)) for i in range(4)])
        self.synthesis = nn.ModuleList(
            [nn.Sequential(_deconv(m + c, n), SimpleGDN(n, inverse=True))]
            + [nn.Sequential(_deconv(n + c, n), SimpleGDN(n, inverse=True)) for _ in range(2)]
            + [_deconv(n + c, 3)]
        )
        self.hyper_analysis = nn.Sequential(_conv(m, n, 3, 1), nn.ReLU(), _conv(n, n), nn.ReLU(), _conv(n, z))
        # Linear and ReLU only: it is run as an integer network when decoding files.
        self.hyper_synthesis = nn.Sequential(_deconv(z, n), nn.ReLU(), _deconv(n, n), nn.ReLU(), _conv(n, 2 * m, 3, 1))
        self.base_to_hyper = nn.Linear(cfg.base_latent, z * 4)
        self.z_log_scale = nn.Parameter(torch.zeros(z))
        # gain ~ sqrt(lambda): the step that minimises rate + lambda * MSE shrinks like 1/sqrt(lambda).
        lam = torch.tensor(cfg.lambdas)
        log_gain = 0.5 * torch.log(lam / lam.log().mean().exp())
        self.log_gain = nn.Parameter(log_gain[:, None].repeat(1, m))
        self.log_inv_gain = nn.Parameter(-log_gain[:, None].repeat(1, m))

    # ---- pieces shared by training and coding ----------------------------------------

    def gains(self, quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, M, 1, 1) gain and inverse gain for integer qualities in [0, cfg.qualities)."""
        lo = torch.div(quality, SUBSTEPS, rounding_mode="floor").clamp(max=len(self.cfg.lambdas) - 2)
        frac = ((quality - lo * SUBSTEPS).float() / SUBSTEPS)[:, None]
        log_g = (1 - frac) * self.log_gain[lo] + frac * self.log_gain[lo + 1]
        log_ig = (1 - frac) * self.log_inv_gain[lo] + frac * self.log_inv_gain[lo + 1]
        return log_g.exp()[:, :, None, None], log_ig.exp()[:, :, None, None]

    def contexts(self, base: torch.Tensor) -> list[torch.Tensor]:
        feats, h = [], base
        for layer in self.context:
            h = layer(h)
            feats.append(h)
        return feats[::-1]  # 8, 16, 32, 64 pixels: the order the synthesis needs them

    def synthesise(self, y_hat: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        h = y_hat
        for stage, feat in zip(self.synthesis, self.contexts(base), strict=True):
            h = stage(torch.cat([h, feat], 1))
        return base + h

    def hyper_input(self, z_hat: torch.Tensor, base_symbols: torch.Tensor) -> torch.Tensor:
        return z_hat + self.base_to_hyper(base_symbols).view(z_hat.shape)

    # ---- training --------------------------------------------------------------------

    def forward(
        self, x: torch.Tensor, base: torch.Tensor, base_symbols: torch.Tensor, quality: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Rate in bits per pixel and MSE per image, with the noise proxy for rate and
        straight-through rounding for distortion (Minnen & Singh 2020)."""
        gain, inv_gain = self.gains(quality)
        y = self.analysis(torch.cat([x, base], 1)) * gain
        z = self.hyper_analysis(y)
        z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        z_bits = -torch.log2(gaussian_likelihood(z_noisy, self.z_log_scale.exp()[:, None, None])).sum((1, 2, 3))
        mu, log_sigma = self.hyper_synthesis(self.hyper_input(ste_round(z), base_symbols)).float().chunk(2, 1)
        mu, sigma = mu * gain, (log_sigma.exp() * gain).clamp(SCALE_MIN, SCALE_MAX)
        y_noisy = y.float() + torch.empty_like(mu).uniform_(-0.5, 0.5)
        y_bits = -torch.log2(gaussian_likelihood(y_noisy - mu, sigma)).sum((1, 2, 3))
        y_hat = ste_round(y.float() - mu) + mu
        x_hat = self.synthesise(y_hat * inv_gain, base)
        mse = (x_hat.float() - x).pow(2).mean((1, 2, 3))
        bpp = (y_bits + z_bits) / (x.shape[2] * x.shape[3])
        return {"bpp": bpp, "mse": mse, "x_hat": x_hat}

    def loss(self, out: dict[str, torch.Tensor], quality: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rate + lambda * 255^2 * MSE (CompressAI's scaling), lambda per image by its quality."""
        lam = torch.tensor(self.cfg.lambdas, device=quality.device)[torch.div(quality, SUBSTEPS, rounding_mode="floor")]
        loss = (out["bpp"] + lam * 255**2 * out["mse"]).mean()
        return {"loss": loss, "bpp": out["bpp"].mean(), "mse": out["mse"].mean()}


def trained_qualities(cfg: DetailConfig) -> list[int]:
    """The qualities that sit exactly on a trained gain (training samples these)."""
    return list(range(0, cfg.qualities, SUBSTEPS))
