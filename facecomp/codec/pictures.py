"""The base decoder's pictures: exact ones for files, quick ones for ranking and showing.

Files decode in float64 on the CPU: in float32, CPUs and torch versions that sum a convolution
in another order decode some files one 8-bit level apart; in float64 every machine gets the same
pixels (scripts/decode_determinism.py checks this). Ranking candidates and drawing the explorer's
faces need no exact pixels: a channels-last copy in bfloat16 where the CPU computes bfloat16 natively
(two to three times float32's speed), else in float32 (emulated bfloat16 is several times slower).
"""

from __future__ import annotations

import copy
import weakref

import numpy as np
import torch
import torch.nn.functional as F

from ..hardware import cpu_has_bfloat16
from ..nets.autoencoder import FaceAE
from .entropy import dequantise

_float64_decoders: weakref.WeakKeyDictionary[FaceAE, torch.nn.Module] = weakref.WeakKeyDictionary()
_preview_decoders: weakref.WeakKeyDictionary[FaceAE, torch.nn.Module] = weakref.WeakKeyDictionary()


def preview_dtype() -> torch.dtype:
    """bfloat16 where the CPU computes it natively (hardware.cpu_has_bfloat16), else float32."""
    return torch.bfloat16 if cpu_has_bfloat16() else torch.float32


def exact_decoder(network: FaceAE) -> torch.nn.Module:
    """A float64 CPU copy of the network's decoder, made once per network."""
    if network not in _float64_decoders:
        _float64_decoders[network] = copy.deepcopy(network.decoder).cpu().double().eval()
    return _float64_decoders[network]


def base_picture(network: FaceAE, symbols: np.ndarray, q: int) -> torch.Tensor:
    """The (1, 3, 128, 128) float32 picture a base layer decodes to, as the decoder sees it."""
    code = torch.from_numpy(dequantise(network, symbols, q)).unsqueeze(0)
    with torch.no_grad():
        return exact_decoder(network)(code).clamp(0, 1).float()


@torch.no_grad()
def preview_decode(network: FaceAE, codes: torch.Tensor) -> torch.Tensor:
    """(N, 3, 128, 128) float32 CPU pictures of (N, k) codes (missing dimensions zero, as in
    FaceAE.decode), to rank or show, not for files: a channels-last copy of the decoder in
    preview_dtype(), made once per network; in bfloat16 its pixels are at most 3 8-bit levels
    from float32's."""
    if network not in _preview_decoders:
        decoder = copy.deepcopy(network.decoder).eval()
        _preview_decoders[network] = decoder.to(preview_dtype(), memory_format=torch.channels_last)
    decoder = _preview_decoders[network]
    codes = F.pad(codes, (0, network.cfg.max_latent - codes.shape[1]))
    weight = next(decoder.parameters())
    return decoder(codes.to(weight.device, weight.dtype)).clamp(0, 1).float().cpu()
