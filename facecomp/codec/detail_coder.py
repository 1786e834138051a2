"""The detail layer's coder: the exact, integer entropy model that any CPU rebuilds the same way.

The decoder must rebuild the same tables as the encoder on every CPU, or a file decodes to garbage.
So the hyper synthesis runs as an integer network (`IntegerHyper`: weights and activations in fixed
point, exact sums in any order), the scale index is an integer comparison, and the probability
tables are data in the weights file, not recomputed. Only pixels come from float arithmetic
(`synthesise`), and a difference of one 8-bit level across CPUs is harmless. The trainable network
is `facecomp.nets.detail.DetailLayer`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..nets.detail import HYPER_SIDE, SCALE_LEVELS, SCALE_MAX, SCALE_MIN, SUBSTEPS, DetailConfig, DetailLayer

TABLE_SIGMAS = 6.0  # each scale's table covers +-6 sigma; symbols beyond are clamped
ACT_BITS, WEIGHT_BITS = 10, 16  # fixed point of the integer hyper synthesis


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
    does not depend on x, the bound's weight sums and the float64 weights, is computed once
    here: redone on every call, it would be a large share of every decode's hyper synthesis.
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
