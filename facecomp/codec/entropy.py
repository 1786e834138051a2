"""Entropy coding of .fcz payloads with constriction's ANS coder: the base layer's quantised code
under Gaussians, and the detail layer's symbols under the tables shipped in its weights.

Quantisation: dimension i of the code is coded as round((z_i - mean_i) / step_i), its entropy
model a Gaussian of std std_i / step_i discretised to integers. mean, std and the decoder gain
live in the weights file (so its SHA-256 covers them). The step follows the decoder's
sensitivity: every dimension then adds the same expected pixel error, the allocation that
minimises MSE for a given rate. Entropy decoding is exact integer arithmetic.
"""

from __future__ import annotations

import constriction
import numpy as np
import torch

from ..nets.autoencoder import FaceAE
from .detail_coder import DetailCodec
from .format import QUANTISERS

# Pixel-RMS error each dimension's quantisation adds (uniform noise: step^2 / 12),
# on a geometric ladder of QUANTISERS levels from 0.0003 to 0.3.
QSTEPS = np.geomspace(3e-4, 3e-1, QUANTISERS)
DEFAULT_Q = 8  # 0.2-0.3 dB below the unquantised code (measured on validation faces)
SYMBOL_BOUND = 4096  # symbols are clamped to +-this; the leaky model can code any of them
MIN_STD = 0.01  # the entropy model's std floor, in steps
GAUSSIAN = constriction.stream.model.QuantizedGaussian(-SYMBOL_BOUND, SYMBOL_BOUND)


def _steps(network: FaceAE, latent: int, q: int) -> np.ndarray:
    gain = network.latent_gain[:latent].double().cpu().numpy()
    return QSTEPS[q] * np.sqrt(12.0) / np.sqrt(np.maximum(gain, 1e-12))


def base_quantiser(network: FaceAE, latent: int, q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, std in steps, step) of each of the first `latent` code dimensions at quantiser q."""
    steps = _steps(network, latent, q)
    mean = network.latent_mean[:latent].double().cpu().numpy()
    std = np.maximum(network.latent_std[:latent].double().cpu().numpy() / steps, MIN_STD)
    return mean, std, steps


def information_bits(symbols: np.ndarray, std: np.ndarray) -> float:
    """The base symbols' information content under their Gaussians, in bits."""
    # torch's ndtr, not scipy's: importing scipy.special adds ~0.2 s to the app's start.
    upper, lower = (torch.special.ndtr(torch.from_numpy((symbols + d) / std)) for d in (0.5, -0.5))
    return float(-np.log2(np.maximum((upper - lower).numpy(), 2.0**-24)).sum())


def quantise(network: FaceAE, code: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    """(symbols, their std in steps) of a code (its length is the latent size) at quantiser q."""
    mean, std, steps = base_quantiser(network, len(code), q)
    return np.clip(np.round((code - mean) / steps), -SYMBOL_BOUND, SYMBOL_BOUND).astype(np.int32), std


def dequantise(network: FaceAE, symbols: np.ndarray, q: int) -> np.ndarray:
    """The full code (max_latent,): the prefix dequantised, the rest zero as in FaceAE.decode."""
    mean, _, steps = base_quantiser(network, len(symbols), q)
    code = np.zeros(network.cfg.max_latent)
    code[: len(symbols)] = mean + symbols * steps
    return code


def push_base(coder, symbols: np.ndarray, std: np.ndarray) -> float:
    """Push the base symbols; returns their information content in bits."""
    coder.encode_reverse(symbols, GAUSSIAN, np.zeros_like(std), std)
    return information_bits(symbols, std)


def pop_base(coder, std: np.ndarray) -> np.ndarray:
    return coder.decode(GAUSSIAN, np.zeros_like(std), std)


def _detail_groups(index: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(scale index, flat positions) in decoding order: each group is one table's symbols."""
    flat = index.ravel()
    return [(int(k), np.flatnonzero(flat == k)) for k in np.unique(flat)]


def push_detail(coder, codec: DetailCodec, symbols: np.ndarray, index: np.ndarray) -> float:
    """Push symbols (any shape) coded with the tables of `index` (same shape); returns their bits."""
    bits, flat = 0.0, symbols.ravel()
    for k, positions in reversed(_detail_groups(index)):  # a stack: last pushed, first read
        table, shifted = codec.table(k), flat[positions] + int(codec.half[k])
        coder.encode_reverse(shifted.astype(np.int32), constriction.stream.model.Categorical(table, perfect=False))
        bits -= float(np.log2(np.maximum(table[shifted] / table.sum(), 2.0**-24)).sum())
    return bits


def pop_detail(coder, codec: DetailCodec, index: np.ndarray) -> np.ndarray:
    flat = np.zeros(index.size, dtype=np.int64)
    for k, positions in _detail_groups(index):
        model = constriction.stream.model.Categorical(codec.table(k), perfect=False)
        flat[positions] = coder.decode(model, len(positions)).astype(np.int64) - int(codec.half[k])
    return flat.reshape(index.shape)


def new_coder(words: np.ndarray | None = None):
    """An empty ANS coder, or one holding a file's payload words."""
    return constriction.stream.stack.AnsCoder() if words is None else constriction.stream.stack.AnsCoder(words)
