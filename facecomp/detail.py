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
(Cui et al. 2021, "asymmetric gained"; train_detail can add lower lambdas later), and
SUBSTEPS interpolated steps sit between neighbours, so the encoder can fill a byte
budget closely.

Determinism: the decoder must rebuild the same integer tables as the encoder on any
CPU, or a file decodes to garbage. So the hyper synthesis runs at decoding time as an
integer network (`IntegerHyper`, weights and activations in fixed point, exact integer
sums in any order), the scale index is an integer comparison, and
the probability tables are data in the weights file, not recomputed. Only pixels come
from float arithmetic, and pixel differences of one level across CPUs are harmless.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

QUALITY_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18)
SUBSTEPS = 4  # interpolated qualities between two trained gains
SCALE_MIN, SCALE_MAX, SCALE_LEVELS = 0.11, 64.0, 64
TABLE_SIGMAS = 6.0  # each scale's table covers +-6 sigma; symbols beyond are clamped
ACT_BITS, WEIGHT_BITS = 10, 16  # fixed point of the integer hyper synthesis
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


# ---- exact entropy model for coding ---------------------------------------------------


def scale_table() -> np.ndarray:
    """The SCALE_LEVELS standard deviations the coder knows, geometric from SCALE_MIN to SCALE_MAX."""
    return np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS))


def probability_tables() -> tuple[np.ndarray, np.ndarray]:
    """(SCALE_LEVELS, 2R+1) discretised-Gaussian probabilities and each table's half-width.

    Made once at export and stored in the weights file, so encoder and decoder read the
    same numbers rather than recomputing erf on different CPUs.
    """
    from scipy.special import ndtr

    sigmas = scale_table()
    half = np.ceil(TABLE_SIGMAS * sigmas).astype(np.int64) + 1
    width = int(half.max())
    tables = np.zeros((len(sigmas), 2 * width + 1))
    for i, (s, r) in enumerate(zip(sigmas, half, strict=True)):
        v = np.arange(-r, r + 1)
        tables[i, width - r : width + r + 1] = ndtr((v + 0.5) / s) - ndtr((v - 0.5) / s)
    return tables, half


def _fixed(x: torch.Tensor, bits: int) -> np.ndarray:
    return np.round(x.detach().double().cpu().numpy() * 2.0**bits).astype(np.int64)


EXACT_FLOAT_BOUND = 2.0**52  # integers below this are exact in float64, and so is any sum of them


def _exact_in_float64(weight_sums: np.ndarray, x: np.ndarray, b: np.ndarray) -> bool:
    """Whether every partial sum of a layer is provably an integer below 2^52: then float64
    arithmetic is exact in any order, with or without FMA, on any CPU. weight_sums: sum of
    |w| over everything one output adds up; the margin covers the rounding of the bound itself."""
    bound = float(weight_sums.max()) * float(np.abs(x).max(initial=0)) + float(np.abs(b).max(initial=0))
    return bound < EXACT_FLOAT_BOUND / 2


def _int64_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, padding: int) -> np.ndarray:
    """Integer 2-D convolution, stride 1, in int64: x (C, H, W), w (O, C, k, k), b (O,)."""
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))  # C, H, W, k, k
    h, wd = windows.shape[1:3]
    cols = windows.transpose(0, 3, 4, 1, 2).reshape(-1, h * wd)
    out = np.einsum("ij,jk->ik", w.reshape(len(w), -1), cols)
    return (out + b[:, None]).reshape(len(w), h, wd)


class IntegerConv:
    """An exact integer convolution, stride 1 (weight (O, C, k, k)), or transposed convolution,
    stride 2 (output_padding given; weight (C, O, k, k) as torch stores it): x (C, H, W) int64.

    A float64 convolution when that is provably exact (_exact_in_float64), else int64 (the
    transposed one as a convolution of the zero-dilated input with the flipped kernel). What
    does not depend on x, the bound's weight sums and the float64 weights, is computed once:
    redone on every call, the whole hyper synthesis took 6.8 ms instead of 4.0.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, padding: int, output_padding: int | None = None) -> None:
        self.padding, self.output_padding = padding, output_padding
        self.transposed = output_padding is not None
        self.weight_sums = np.abs(weight).sum(axis=(0, 2, 3) if self.transposed else (1, 2, 3))
        # Fixed-point weights are integers far below 2^52: float64 holds them exactly.
        self.weight = torch.from_numpy(weight.astype(np.float64))
        self.bias = bias
        self.bias64 = torch.from_numpy(bias.astype(np.float64))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not _exact_in_float64(self.weight_sums, x, self.bias):
            return self._in_int64(x)
        x64 = torch.from_numpy(x.astype(np.float64))[None]
        with torch.no_grad():
            if self.transposed:
                out = F.conv_transpose2d(
                    x64, self.weight, self.bias64, stride=2, padding=self.padding, output_padding=self.output_padding
                )
            else:
                out = F.conv2d(x64, self.weight, self.bias64, padding=self.padding)
        return out[0].numpy().astype(np.int64)

    def _in_int64(self, x: np.ndarray) -> np.ndarray:
        weight = self.weight.numpy().astype(np.int64)
        if not self.transposed:
            return _int64_conv(x, weight, self.bias, self.padding)
        c, h, wd = x.shape
        k = weight.shape[-1]
        dilated = np.zeros((c, 2 * h - 1, 2 * wd - 1), dtype=np.int64)
        dilated[:, ::2, ::2] = x
        lo, hi = k - 1 - self.padding, k - 1 - self.padding + self.output_padding
        dilated = np.pad(dilated, ((0, 0), (lo, hi), (lo, hi)))
        return _int64_conv(dilated, np.flip(weight, (2, 3)).transpose(1, 0, 2, 3), self.bias, 0)


def scale_grid() -> np.ndarray:
    """[log SCALE_MIN, log step] of the scale table in the hyper synthesis's output fixed point.

    Computed once at export and stored with the tables: the decoder compares integers.
    """
    sigmas, bits = scale_table(), WEIGHT_BITS + ACT_BITS
    lo = math.log(sigmas[0])
    return np.array([round(lo * 2.0**bits), round((math.log(sigmas[1]) - lo) * 2.0**bits)], dtype=np.int64)


class IntegerHyper:
    """The hyper synthesis and the quality gains in fixed point, for coding.

    Activations carry ACT_BITS fractional bits, weights WEIGHT_BITS; every sum is an
    int64 sum of int64 products, so any CPU gets the same scale indices.
    """

    def __init__(self, layer: DetailLayer, grid: np.ndarray) -> None:
        cfg = layer.cfg
        self.cfg = cfg
        convs = [m for m in layer.hyper_synthesis if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
        self.layers = [
            IntegerConv(
                _fixed(m.weight, WEIGHT_BITS),
                _fixed(m.bias, WEIGHT_BITS + ACT_BITS),
                m.padding[0],
                m.output_padding[0] if isinstance(m, nn.ConvTranspose2d) else None,
            )
            for m in convs
        ]
        self.base_weight = _fixed(layer.base_to_hyper.weight, WEIGHT_BITS)
        self.base_bias = _fixed(layer.base_to_hyper.bias, WEIGHT_BITS + ACT_BITS)
        self.log_gain = _fixed(layer.log_gain, WEIGHT_BITS + ACT_BITS)  # (trained qualities, M)
        self.log_scale_lo, self.log_scale_step = (int(v) for v in grid)
        # z's scale index, one per channel, as a (Z, 2, 2) map like z itself.
        z_index = self.scale_index(_fixed(layer.z_log_scale, WEIGHT_BITS + ACT_BITS))
        self.z_index = np.broadcast_to(z_index[:, None, None], (len(z_index), HYPER_SIDE, HYPER_SIDE))

    def scale_index(self, log_sigma: np.ndarray) -> np.ndarray:
        """The nearest level of the scale table, by integer division."""
        step = self.log_scale_step
        return np.clip((log_sigma - self.log_scale_lo + step // 2) // step, 0, SCALE_LEVELS - 1)

    def log_gain_at(self, quality: int) -> np.ndarray:
        lo = min(quality // SUBSTEPS, len(self.cfg.lambdas) - 2)
        frac = quality - lo * SUBSTEPS
        return ((SUBSTEPS - frac) * self.log_gain[lo] + frac * self.log_gain[lo + 1]) // SUBSTEPS

    def __call__(self, z_symbols: np.ndarray, base_symbols: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
        """(mu in the gained domain as float64, integer scale index), both (M, 8, 8)."""
        base = self.base_weight @ (base_symbols.astype(np.int64) << ACT_BITS) + self.base_bias
        h = (z_symbols.astype(np.int64) << ACT_BITS) + (base.reshape(z_symbols.shape) >> WEIGHT_BITS)
        for i, conv in enumerate(self.layers):
            h = conv(h)
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0) >> WEIGHT_BITS  # ReLU, back to ACT_BITS
        m, one = self.cfg.latent_channels, 2.0 ** (WEIGHT_BITS + ACT_BITS)
        log_gain = self.log_gain_at(quality)[:, None, None]
        mu = h[:m] / one * np.exp(log_gain / one)  # float: mu moves pixels, never the tables
        return mu, self.scale_index(h[m:] + log_gain)


@dataclass
class DetailCodec:
    """A detail layer ready to code: the float network, its integer entropy model, the tables."""

    layer: DetailLayer
    hyper: IntegerHyper
    tables: np.ndarray  # (SCALE_LEVELS, 2W+1) probabilities, centred
    half: np.ndarray  # (SCALE_LEVELS,) half-width of each table's support
    tag: bytes  # first two bytes of the file's SHA-256, written into each .fcz

    def table(self, index: int) -> np.ndarray:
        centre, r = self.tables.shape[1] // 2, int(self.half[index])
        return self.tables[index, centre - r : centre + r + 1]


CODING_KEYS = ("coding.tables", "coding.half", "coding.grid")


def coding_tensors() -> dict[str, torch.Tensor]:
    tables, half = probability_tables()
    return {
        "coding.tables": torch.from_numpy(tables),
        "coding.half": torch.from_numpy(half),
        "coding.grid": torch.from_numpy(scale_grid()),
    }


def detail_codec(cfg: DetailConfig, state: dict[str, torch.Tensor], sha256: str) -> DetailCodec:
    """Build the coding bundle from a weights file's tensors (float weights and coding.* data)."""
    layer = DetailLayer(cfg)
    layer.load_state_dict({k: v.float() for k, v in state.items() if k not in CODING_KEYS})
    layer.eval().requires_grad_(False)
    return DetailCodec(
        layer=layer,
        hyper=IntegerHyper(layer, state["coding.grid"].numpy()),
        tables=state["coding.tables"].double().numpy(),
        half=state["coding.half"].numpy(),
        tag=bytes.fromhex(sha256[:4]),
    )


@torch.no_grad()
def features(codec: DetailCodec, image: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """The analysis of one image given its base picture, before the quality's gain (1, M, 8, 8)."""
    return codec.layer.analysis(torch.cat([image[None].float(), base], 1))


@dataclass(frozen=True)
class Analysed:
    """One image's detail at one quality: what is coded (z, y and y's scale index) and the
    mean the decoder will predict for y (enough to compute the decoded picture)."""

    quality: int
    z_symbols: np.ndarray
    y_symbols: np.ndarray
    y_index: np.ndarray
    mu: np.ndarray


@torch.no_grad()
def analyse(codec: DetailCodec, feats: torch.Tensor, base_symbols: np.ndarray, quality: int) -> Analysed:
    """The detail symbols at one quality."""
    gain, _ = codec.layer.gains(torch.tensor([quality]))
    y = feats * gain
    z = codec.layer.hyper_analysis(y)[0].double().numpy()
    z_half = codec.half[codec.hyper.z_index]
    z_symbols = np.clip(np.round(z), -z_half, z_half).astype(np.int64)
    mu, index = codec.hyper(z_symbols, base_symbols, quality)
    y_half = codec.half[index]
    y_symbols = np.clip(np.round(y[0].double().numpy() - mu), -y_half, y_half).astype(np.int64)
    return Analysed(quality, z_symbols, y_symbols, index, mu)


@torch.no_grad()
def synthesise(
    codec: DetailCodec, y_symbols: np.ndarray, mu: np.ndarray, base: torch.Tensor, quality: int
) -> torch.Tensor:
    """(3, 128, 128) picture in [0, 1] from the detail symbols and the base picture."""
    _, inv_gain = codec.layer.gains(torch.tensor([quality]))
    y_hat = torch.from_numpy(y_symbols + mu).float()[None] * inv_gain
    return codec.layer.synthesise(y_hat, base)[0].clamp(0, 1)
