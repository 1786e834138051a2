"""The AE and the VAE: one convolutional encoder/decoder trunk, a nested latent.

Design (argued in docs/models.md): a single model per kind serves every latent size.
Training masks the latent to a random prefix length from LATENT_LADDER (nested
dropout), so the first k numbers of the code are always a valid code of size k and
the dimensions come out ordered by importance, like principal components. Unused
dimensions are set to 0, which for the VAE is also the prior mean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import CROP_SIZE, LATENT_LADDER

N_COMPONENTS = 16  # principal directions shipped for the explorer's sliders
SAMPLE_SOURCES = ("prior", "fitted")


@dataclass
class ModelConfig:
    kind: str = "ae"  # "ae" or "vae"
    max_latent: int = 512
    channels: tuple[int, ...] = (24, 48, 96, 192, 256)  # at 64, 32, 16, 8, 4 pixels
    ladder: tuple[int, ...] = field(default=LATENT_LADDER)
    directions: tuple[str, ...] = ()  # names of the fitted attribute directions (explorer sliders)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        data = dict(data)
        data["channels"] = tuple(data["channels"])
        data["ladder"] = tuple(data["ladder"])
        data["directions"] = tuple(data.get("directions", ()))
        return cls(**data)


class ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=1),
            nn.BatchNorm2d(ch),
            nn.SiLU(),
            nn.Conv2d(ch, ch, 3, padding=1),
            nn.BatchNorm2d(ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x + self.body(x))


def _down(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout), nn.SiLU(), ResBlock(cout))


def _up(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.SiLU(),
        ResBlock(cout),
    )


class Encoder(nn.Module):
    """128x128 RGB -> `out_features` numbers."""

    def __init__(self, channels: tuple[int, ...], out_features: int) -> None:
        super().__init__()
        # 128 -> 64 by space-to-depth: no convolution has to run at full resolution.
        layers: list[nn.Module] = [nn.PixelUnshuffle(2), nn.Conv2d(12, channels[0], 3, padding=1), nn.SiLU()]
        for cin, cout in zip(channels, channels[1:]):
            layers.append(_down(cin, cout))
        self.features = nn.Sequential(*layers)
        side = CROP_SIZE // 2 ** len(channels)
        self.head = nn.Linear(channels[-1] * side * side, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class Decoder(nn.Module):
    """Latent -> 128x128 RGB in [0, 1] (a sigmoid, matching [0, 1] targets)."""

    def __init__(self, channels: tuple[int, ...], latent: int) -> None:
        super().__init__()
        rev = channels[::-1]
        self.side = CROP_SIZE // 2 ** len(channels)
        self.rev0 = rev[0]
        self.head = nn.Linear(latent, rev[0] * self.side * self.side)
        layers: list[nn.Module] = [ResBlock(rev[0])]
        for cin, cout in zip(rev, rev[1:]):
            layers.append(_up(cin, cout))
        layers += [nn.Conv2d(rev[-1], 12, 3, padding=1), nn.PixelShuffle(2)]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.head(z).view(-1, self.rev0, self.side, self.side)
        return torch.sigmoid(self.body(h))


def prefix_mask(k: torch.Tensor | int, n: int, max_latent: int, device: torch.device) -> torch.Tensor:
    """(n, max_latent) mask keeping the first k dimensions (k per sample or shared)."""
    k = torch.as_tensor(k, device=device).reshape(-1, 1)
    return (torch.arange(max_latent, device=device).expand(n, -1) < k).float()


class FaceAE(nn.Module):
    """Deterministic autoencoder with a nested latent."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg.channels, self._encoder_outputs())
        self.decoder = Decoder(cfg.channels, cfg.max_latent)
        # Fitted on training codes after training (facecomp.latent.statistics) and shipped in the
        # same file, so the weights' SHA-256 covers them: per-dimension mean, spread and
        # decoder gain for the codec, principal directions for the latent explorer.
        n, d = cfg.max_latent, len(cfg.directions)
        self.register_buffer("latent_mean", torch.zeros(n))
        self.register_buffer("latent_std", torch.ones(n))
        self.register_buffer("latent_gain", torch.ones(n))
        self.register_buffer("latent_pcs", torch.zeros(N_COMPONENTS, n))
        self.register_buffer("latent_pc_std", torch.ones(N_COMPONENTS))
        # The fitted sampler: a Gaussian over training codes (mean above, Cholesky factor here),
        # the identity until fitted (not torch.eye: on the meta device, where weights.read_model
        # builds models, it imports torch's compiler, 1.4 s).
        self.register_buffer("latent_chol", torch.zeros(n, n).fill_diagonal_(1.0))
        # Named directions (facecomp.latent.attributes): a linear classifier per attribute, the
        # logit being codes @ weights + offset; its held-out balanced accuracy; the unit
        # vector its slider moves along (facecomp.latent.statistics.edit_vectors; zero in files older
        # than it: then the classifier's normal) and the spread of training codes along
        # that vector (a slider's sigma).
        self.register_buffer("direction_weights", torch.zeros(d, n))
        self.register_buffer("direction_offset", torch.zeros(d))
        self.register_buffer("direction_accuracy", torch.zeros(d))
        self.register_buffer("direction_vectors", torch.zeros(d, n))
        self.register_buffer("direction_std", torch.ones(d))

    def _encoder_outputs(self) -> int:
        return self.cfg.max_latent

    def direction_vector(self, j: int) -> torch.Tensor:
        """The unit vector named direction j's slider moves along."""
        vector = self.direction_vectors[j].float()
        if not vector.any():  # weights fitted before edit vectors existed
            vector = self.direction_weights[j].float()
        return vector / vector.norm().clamp_min(1e-12)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def code(self, x: torch.Tensor) -> torch.Tensor:
        """The latent used for compression: the AE's output, the VAE's mean."""
        return self.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decode a code of any prefix length; missing dimensions are zero."""
        if z.shape[1] < self.cfg.max_latent:
            z = F.pad(z, (0, self.cfg.max_latent - z.shape[1]))
        return self.decoder(z)

    def reconstruct(self, x: torch.Tensor, latent: int) -> torch.Tensor:
        return self.decode(self.code(x)[:, :latent])

    def sample_codes(
        self, n: int, source: str = "fitted", temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(n, max_latent) codes: from the prior N(0, I), or from the Gaussian fitted to training codes.

        The temperature scales the spread about the mean (1: the distribution itself).
        """
        if source not in SAMPLE_SOURCES:
            raise ValueError(f"source must be one of {SAMPLE_SOURCES}, not {source!r}")
        eps = temperature * torch.randn(n, self.cfg.max_latent, generator=generator)
        if source == "prior":
            return eps
        return self.latent_mean.float() + eps @ self.latent_chol.float().T

    @torch.no_grad()
    def sample(
        self, n: int, source: str = "fitted", temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """n faces decoded from sampled codes (see sample_codes)."""
        z = self.sample_codes(n, source, temperature, generator)
        return self.decode(z.to(next(self.parameters()).device))

    def forward(self, x: torch.Tensor, k: torch.Tensor | int) -> dict[str, torch.Tensor]:
        z = self.encode(x)
        z = z * prefix_mask(k, x.shape[0], self.cfg.max_latent, x.device)
        return {"recon": self.decode(z), "z": z}

    def loss(
        self, out: dict[str, torch.Tensor], target: torch.Tensor, kl_weight: float = 0.0, log_mse: bool = False
    ) -> dict[str, torch.Tensor]:
        recon, objective = reconstruction_terms(out["recon"], target, log_mse)
        return {"reconstruction": recon, "total": objective}


class FaceVAE(FaceAE):
    """Variational autoencoder on the same trunk: encode -> (mu, logvar)."""

    def _encoder_outputs(self) -> int:
        return 2 * self.cfg.max_latent

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 6.0)

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def forward(self, x: torch.Tensor, k: torch.Tensor | int) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(x)
        mask = prefix_mask(k, x.shape[0], self.cfg.max_latent, x.device)
        z = self.reparameterize(mu, logvar) * mask
        return {"recon": self.decode(z), "z": z, "mu": mu, "logvar": logvar, "mask": mask}

    def loss(
        self, out: dict[str, torch.Tensor], target: torch.Tensor, kl_weight: float = 0.0, log_mse: bool = False
    ) -> dict[str, torch.Tensor]:
        """MSE per pixel plus kl_weight * KL per pixel.

        kl_weight = 2 sigma^2 is the ELBO of a Gaussian decoder with pixel noise sigma,
        so it sets how blurry (small sigma = sharp, large = smooth latent) we accept.
        """
        recon, objective = reconstruction_terms(out["recon"], target, log_mse)
        mu, logvar = out["mu"].float(), out["logvar"].float()
        # KL only over the dimensions that were used: masked ones are the prior itself.
        kl_dims = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar) * out["mask"]
        kl = kl_dims.sum(1).mean() / target[0].numel()
        return {"reconstruction": recon, "kl": kl, "total": objective + kl_weight * kl}

    def generate(self, x: torch.Tensor, latent: int | None = None) -> torch.Tensor:
        return self.reconstruct(x, latent or self.cfg.max_latent)


def reconstruction_terms(
    recon: torch.Tensor, target: torch.Tensor, log_mse: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean MSE, the term to minimise).

    log_mse minimises the mean over images of log(MSE), which is the mean PSNR up to a
    constant factor. Plain MSE lets the worst reconstructions dominate: the images with
    small nested-dropout prefixes, whose MSE is about three times that at 256. With
    log_mse, every image and every latent size counts the same number of decibels.
    """
    per_image = (recon.float() - target).pow(2).flatten(1).mean(1)
    mse = per_image.mean()
    return mse, (per_image.clamp_min(1e-8).log().mean() if log_mse else mse)


def build_model(cfg: ModelConfig) -> FaceAE:
    return FaceVAE(cfg) if cfg.kind == "vae" else FaceAE(cfg)


def sample_prefix(n: int, ladder: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """A latent size per sample, uniform over the ladder in log scale."""
    idx = torch.randint(len(ladder), (n,), generator=generator)
    return torch.tensor(ladder)[idx]
