"""The .fcz bitstream: a quantised latent, entropy-coded with constriction's ANS coder.

Layout (8 bytes of overhead):
  0-1  magic b"FZ"
  2    format version (high 4 bits) | model kind (1 bit) | latent size as a ladder index (3 bits)
  3-4  first two bytes of the SHA-256 of the weights that made the file
  5    quantiser index q: step of dimension i is QSTEPS[q] / sqrt(gain_i)
  6..  ANS payload, little-endian 32-bit words, zero high bytes of the last one dropped
  -2   CRC-16 (CCITT) of everything before it

Quantisation: dimension i is coded as round((z_i - mean_i) / step_i), its entropy
model a Gaussian of std std_i / step_i discretised to integers. mean, std and the
decoder gain live in the weights file (so its SHA-256 covers them). The step
follows the decoder's sensitivity: every dimension then adds the same expected
pixel error, the allocation that minimises MSE for a given rate.

The file length is the payload length: there is no length field to lie, and a
file is capped at MAX_FILE_BYTES before anything is allocated. Entropy decoding
is exact integer arithmetic. The decoder network then runs in float64 on the CPU:
in float32, an Intel Xeon with torch 2.11 decoded 30 of 144 files one 8-bit level
apart from an AMD EPYC with torch 2.14 (convolutions sum in a different order);
in float64 both gave the same pixels (scripts/decode_determinism.py).
"""

from __future__ import annotations

import binascii
import copy
import struct
import weakref
from dataclasses import dataclass

import constriction
import numpy as np
import torch
from scipy.special import ndtr

from .model import MODEL_KINDS, FaceAE

MAGIC = b"FZ"
VERSION = 1
HEADER_BYTES = 6
CRC_BYTES = 2
MAX_FILE_BYTES = 64 * 1024
# Pixel-RMS error each dimension's quantisation adds (uniform noise: step^2 / 12),
# on a geometric ladder of 64 levels from 0.0003 to 0.3.
QSTEPS = np.geomspace(3e-4, 3e-1, 64)
DEFAULT_Q = 8  # 0.2-0.3 dB below the unquantised code (measured on validation faces)
SYMBOL_BOUND = 4096  # symbols are clamped to +-this; the leaky model can code any of them
MIN_STD = 0.01  # the entropy model's std floor, in steps


class CodecError(ValueError):
    """A .fcz file that cannot be decoded: one clear reason, never a garbage image."""


@dataclass(frozen=True)
class Compressed:
    data: bytes
    kind: str
    latent: int
    q: int
    estimated_bits: float  # information content under the entropy model, header and CRC included

    @property
    def bits_per_pixel(self) -> float:
        return 8 * len(self.data) / (128 * 128)


def weights_tag(model: FaceAE) -> bytes:
    """The 2-byte weights hash written into each file (set by load_model from the card's SHA-256)."""
    sha = getattr(model, "weights_sha256", None)
    return bytes.fromhex(sha[:4]) if sha else b"\0\0"


def _steps(model: FaceAE, latent: int, q: int) -> np.ndarray:
    gain = model.latent_gain[:latent].double().cpu().numpy()
    return QSTEPS[q] * np.sqrt(12.0) / np.sqrt(np.maximum(gain, 1e-12))


def _entropy_model(model: FaceAE, latent: int, q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    steps = _steps(model, latent, q)
    mean = model.latent_mean[:latent].double().cpu().numpy()
    std = np.maximum(model.latent_std[:latent].double().cpu().numpy() / steps, MIN_STD)
    return mean, std, steps


def _information_bits(symbols: np.ndarray, std: np.ndarray) -> float:
    prob = ndtr((symbols + 0.5) / std) - ndtr((symbols - 0.5) / std)
    return float(-np.log2(np.maximum(prob, 2.0**-24)).sum())


def _encode(model: FaceAE, code: np.ndarray, q: int) -> Compressed:
    """Quantise a code with quantiser q and write the whole file."""
    latent = len(code)
    mean, std, steps = _entropy_model(model, latent, q)
    symbols = np.clip(np.round((code - mean) / steps), -SYMBOL_BOUND, SYMBOL_BOUND).astype(np.int32)
    coder = constriction.stream.stack.AnsCoder()
    family = constriction.stream.model.QuantizedGaussian(-SYMBOL_BOUND, SYMBOL_BOUND)
    coder.encode_reverse(symbols, family, np.zeros_like(std), std)
    payload = coder.get_compressed().astype("<u4").tobytes()
    # The last word is the top of the ANS state; its high bytes are often zero. Dropping up
    # to 3 of them saves ~1.4 bytes a file; the decoder pads back to whole words.
    payload = payload[: len(payload) - min(3, len(payload) - len(payload.rstrip(b"\0")))]
    ladder = model.cfg.ladder
    header = MAGIC + bytes([VERSION << 4 | MODEL_KINDS.index(model.cfg.kind) << 3 | ladder.index(latent)])
    header += weights_tag(model) + bytes([q])
    body = header + payload
    bits = _information_bits(symbols, std) + 8 * (HEADER_BYTES + CRC_BYTES)
    return Compressed(body + struct.pack(">H", binascii.crc_hqx(body, 0)), model.cfg.kind, latent, q, bits)


@torch.inference_mode()
def encode_latent(model: FaceAE, image: torch.Tensor) -> np.ndarray:
    """The full code of one (3, 128, 128) image in [0, 1], as float64."""
    return model.code(image.unsqueeze(0).float()).squeeze(0).double().cpu().numpy()


def compress(
    model: FaceAE, image: torch.Tensor, latent: int, q: int | None = None, max_bytes: int | None = None
) -> Compressed:
    """Compress one crop to .fcz bytes at latent size `latent`.

    With `max_bytes`, the finest quantiser whose file fits is chosen (the coarsest if
    none does); otherwise `q` (default DEFAULT_Q).
    """
    if latent not in model.cfg.ladder:
        raise ValueError(f"latent size {latent} is not one of {model.cfg.ladder}")
    code = encode_latent(model, image)[:latent]
    return compress_code(model, code, q, max_bytes)


def compress_code(model: FaceAE, code: np.ndarray, q: int | None = None, max_bytes: int | None = None) -> Compressed:
    """Compress an already computed code (its length is the latent size)."""
    if max_bytes is None:
        return _encode(model, code, DEFAULT_Q if q is None else q)
    for q_try in range(len(QSTEPS)):  # finest first: stop at the first file that fits
        result = _encode(model, code, q_try)
        if len(result.data) <= max_bytes:
            break
    return result


def parse_header(data: bytes) -> tuple[str, int, bytes, int]:
    """Validate a file's framing; returns (kind, ladder index, weights tag, q)."""
    if not data:
        raise CodecError("empty file")
    if len(data) > MAX_FILE_BYTES:
        raise CodecError(f"file is {len(data):,} bytes; a FaceComp file is at most {MAX_FILE_BYTES:,}")
    if len(data) < HEADER_BYTES + CRC_BYTES:
        raise CodecError(f"truncated file: {len(data)} bytes is shorter than the header")
    if data[:2] != MAGIC:
        raise CodecError("not a FaceComp .fcz file (wrong magic bytes)")
    version, kind_bit, ladder_index = data[2] >> 4, (data[2] >> 3) & 1, data[2] & 7
    if version != VERSION:
        raise CodecError(f"unsupported format version {version} (this FaceComp reads version {VERSION})")
    (crc,) = struct.unpack(">H", data[-2:])
    if binascii.crc_hqx(data[:-2], 0) != crc:
        raise CodecError("checksum mismatch: the file is corrupted or truncated")
    return MODEL_KINDS[kind_bit], ladder_index, data[3:5], data[5]


@torch.inference_mode()
def decode_code(data: bytes, models: dict[str, FaceAE]) -> tuple[str, np.ndarray]:
    """The model kind and the full code (max_latent,) a .fcz file holds (its prefix dequantised, the rest 0)."""
    kind, ladder_index, tag, q = parse_header(data)
    if kind not in models:
        raise CodecError(f"file was made by the {kind.upper()} model, which is not loaded")
    model = models[kind]
    if ladder_index >= len(model.cfg.ladder):
        raise CodecError(f"invalid latent size index {ladder_index}")
    if tag != weights_tag(model):
        raise CodecError(
            f"file was made by other weights (hash {tag.hex()}); the loaded {kind.upper()} weights are "
            f"{weights_tag(model).hex()}"
        )
    latent = model.cfg.ladder[ladder_index]
    mean, std, steps = _entropy_model(model, latent, q)
    payload = data[HEADER_BYTES:-CRC_BYTES]
    payload += b"\0" * (-len(payload) % 4)
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    family = constriction.stream.model.QuantizedGaussian(-SYMBOL_BOUND, SYMBOL_BOUND)
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        symbols = coder.decode(family, np.zeros_like(std), std)
    except (ValueError, RuntimeError, AssertionError) as err:
        raise CodecError(f"corrupted payload: {err}") from err
    if not coder.is_empty():
        raise CodecError("corrupted payload: data left over after the latent")
    code = np.zeros(model.cfg.max_latent)  # the dimensions past the prefix are zero, as in FaceAE.decode
    code[:latent] = mean + symbols * steps
    return kind, code


@torch.no_grad()
def decompress(data: bytes, models: dict[str, FaceAE]) -> torch.Tensor:
    """Decode .fcz bytes to a (3, 128, 128) image clamped to [0, 1]."""
    kind, code = decode_code(data, models)
    return _exact_decoder(models[kind])(torch.from_numpy(code).unsqueeze(0)).squeeze(0).clamp(0, 1).float()


_float64_decoders: weakref.WeakKeyDictionary[FaceAE, torch.nn.Module] = weakref.WeakKeyDictionary()


def _exact_decoder(model: FaceAE) -> torch.nn.Module:
    """A float64 CPU copy of the model's decoder (see the module notes), made once per model."""
    if model not in _float64_decoders:
        _float64_decoders[model] = copy.deepcopy(model.decoder).cpu().double().eval()
    return _float64_decoders[model]
