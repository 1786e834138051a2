"""The .fcz bitstream: a quantised global code and, optionally, a detail layer, entropy-coded
with constriction's ANS coder.

Layout (8 bytes of overhead for a base-only file, 11 with a detail layer):
  0-1  magic b"FZ"
  2    format version (high 4 bits) | model kind (1 bit) | latent size as a ladder index (3 bits)
  3-4  first two bytes of the SHA-256 of the weights that made the file
  5    quantiser index q (low 6 bits): step of dimension i is QSTEPS[q] / sqrt(gain_i);
       bit 7 set: a detail layer follows (facecomp.detail)
  6    [detail] its quality, 0 to DetailConfig.qualities - 1
  7-8  [detail] first two bytes of the SHA-256 of the detail weights
  ...  ANS payload, little-endian 32-bit words, zero high bytes of the last one dropped:
       the base symbols, then the detail layer's z, then its y grouped by scale index
  -2   CRC-16 (CCITT) of everything before it

Version 1 files (base only, the same layout without bit 7) still decode.

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
import math
import struct
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import constriction
import numpy as np
import torch
import torch.nn.functional as F

from . import detail as detail_layer
from .model import MODEL_KINDS, FaceAE

MAGIC = b"FZ"
VERSION = 2
READABLE_VERSIONS = (1, 2)
HEADER_BYTES = 6
DETAIL_HEADER_BYTES = 3
DETAIL_FLAG = 0x80
CRC_BYTES = 2
MAX_FILE_BYTES = 64 * 1024
# Pixel-RMS error each dimension's quantisation adds (uniform noise: step^2 / 12),
# on a geometric ladder of 64 levels from 0.0003 to 0.3.
QSTEPS = np.geomspace(3e-4, 3e-1, 64)
DEFAULT_Q = 8  # 0.2-0.3 dB below the unquantised code (measured on validation faces)
# A detail file grows by 6-8.5% from one quality to the next (median 7.3%; 24 faces, both models).
DETAIL_GROWTH_PER_QUALITY = 1.07
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
    detail: int | None = None  # the detail layer's quality, None for a base-only file

    @property
    def bits_per_pixel(self) -> float:
        return 8 * len(self.data) / (128 * 128)

    @property
    def label(self) -> str:
        """How the file was made, in words: 'latent 128' or 'latent 128 + detail 12'."""
        return f"latent {self.latent}" + ("" if self.detail is None else f" + detail {self.detail}")


@dataclass(frozen=True)
class Header:
    kind: str
    ladder_index: int
    tag: bytes
    q: int
    detail: int | None
    detail_tag: bytes

    @property
    def size(self) -> int:
        return HEADER_BYTES + (0 if self.detail is None else DETAIL_HEADER_BYTES)


def weights_tag(model: FaceAE) -> bytes:
    """The 2-byte weights hash written into each file (set by load_model from the card's SHA-256)."""
    sha = getattr(model, "codec_sha256", None)
    return bytes.fromhex(sha[:4]) if sha else b"\0\0"


def _steps(model: FaceAE, latent: int, q: int) -> np.ndarray:
    gain = model.latent_gain[:latent].double().cpu().numpy()
    return QSTEPS[q] * np.sqrt(12.0) / np.sqrt(np.maximum(gain, 1e-12))


def base_quantiser(model: FaceAE, latent: int, q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, std in steps, step) of each of the first `latent` code dimensions at quantiser q."""
    steps = _steps(model, latent, q)
    mean = model.latent_mean[:latent].double().cpu().numpy()
    std = np.maximum(model.latent_std[:latent].double().cpu().numpy() / steps, MIN_STD)
    return mean, std, steps


def _information_bits(symbols: np.ndarray, std: np.ndarray) -> float:
    # torch's ndtr, not scipy's: importing scipy.special took 0.2 s of the app's start.
    upper, lower = (torch.special.ndtr(torch.from_numpy((symbols + d) / std)) for d in (0.5, -0.5))
    return float(-np.log2(np.maximum((upper - lower).numpy(), 2.0**-24)).sum())


def _quantise(model: FaceAE, code: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray]:
    mean, std, steps = base_quantiser(model, len(code), q)
    return np.clip(np.round((code - mean) / steps), -SYMBOL_BOUND, SYMBOL_BOUND).astype(np.int32), std


def _dequantise(model: FaceAE, symbols: np.ndarray, q: int) -> np.ndarray:
    """The full code (max_latent,): the prefix dequantised, the rest zero as in FaceAE.decode."""
    mean, _, steps = base_quantiser(model, len(symbols), q)
    code = np.zeros(model.cfg.max_latent)
    code[: len(symbols)] = mean + symbols * steps
    return code


_GAUSSIAN = constriction.stream.model.QuantizedGaussian(-SYMBOL_BOUND, SYMBOL_BOUND)


def _detail_groups(index: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(scale index, flat positions) in decoding order: each group is one table's symbols."""
    flat = index.ravel()
    return [(int(k), np.flatnonzero(flat == k)) for k in np.unique(flat)]


def _push_detail(coder, codec: detail_layer.DetailCodec, symbols: np.ndarray, index: np.ndarray) -> float:
    """Push symbols (any shape) coded with the tables of `index` (same shape); returns their bits."""
    bits, flat = 0.0, symbols.ravel()
    for k, positions in reversed(_detail_groups(index)):  # a stack: last pushed, first read
        table, shifted = codec.table(k), flat[positions] + int(codec.half[k])
        coder.encode_reverse(shifted.astype(np.int32), constriction.stream.model.Categorical(table, perfect=False))
        bits -= float(np.log2(np.maximum(table[shifted] / table.sum(), 2.0**-24)).sum())
    return bits


def _pop_detail(coder, codec: detail_layer.DetailCodec, index: np.ndarray) -> np.ndarray:
    flat = np.zeros(index.size, dtype=np.int64)
    for k, positions in _detail_groups(index):
        model = constriction.stream.model.Categorical(codec.table(k), perfect=False)
        flat[positions] = coder.decode(model, len(positions)).astype(np.int64) - int(codec.half[k])
    return flat.reshape(index.shape)


def _base_picture(model: FaceAE, symbols: np.ndarray, q: int) -> torch.Tensor:
    """The (1, 3, 128, 128) float32 picture the base layer decodes to, as the decoder sees it."""
    code = torch.from_numpy(_dequantise(model, symbols, q)).unsqueeze(0)
    with torch.no_grad():
        return _exact_decoder(model)(code).clamp(0, 1).float()


def _write(model: FaceAE, coder, latent: int, q: int, bits: float, detail: int | None) -> Compressed:
    payload = coder.get_compressed().astype("<u4").tobytes()
    # The last word is the top of the ANS state; its high bytes are often zero. Dropping up
    # to 3 of them saves ~1.4 bytes a file; the decoder pads back to whole words.
    payload = payload[: len(payload) - min(3, len(payload) - len(payload.rstrip(b"\0")))]
    ladder = model.cfg.ladder
    header = MAGIC + bytes([VERSION << 4 | MODEL_KINDS.index(model.cfg.kind) << 3 | ladder.index(latent)])
    header += weights_tag(model) + bytes([q | (0 if detail is None else DETAIL_FLAG)])
    if detail is not None:
        header += bytes([detail]) + model.detail.tag
    body = header + payload
    bits += 8 * (len(header) + CRC_BYTES)
    return Compressed(body + struct.pack(">H", binascii.crc_hqx(body, 0)), model.cfg.kind, latent, q, bits, detail)


def _encode(model: FaceAE, code: np.ndarray, q: int) -> Compressed:
    """Quantise a code with quantiser q and write a base-only file."""
    symbols, std = _quantise(model, code, q)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(symbols, _GAUSSIAN, np.zeros_like(std), std)
    return _write(model, coder, len(code), q, _information_bits(symbols, std), None)


@dataclass(frozen=True)
class _DetailInput:
    """What every quality of one image's detail file shares: the base layer and the analysis."""

    base_symbols: np.ndarray
    base_std: np.ndarray
    base_picture: torch.Tensor
    features: torch.Tensor


def _prepare_detail(model: FaceAE, image: torch.Tensor, code: np.ndarray | None = None) -> _DetailInput:
    codec = model.detail
    if codec is None:
        raise ValueError(f"the {model.cfg.kind.upper()} weights have no detail layer")
    cfg = codec.layer.cfg
    code = encode_latent(model, image) if code is None else code
    symbols, std = _quantise(model, code[: cfg.base_latent], cfg.base_q)
    base = _base_picture(model, symbols, cfg.base_q)
    return _DetailInput(symbols, std, base, detail_layer.features(codec, image, base))


def _analyse(model: FaceAE, prepared: _DetailInput, quality: int) -> detail_layer.Analysed:
    cfg = model.detail.layer.cfg
    if not 0 <= quality < cfg.qualities:
        raise ValueError(f"detail quality must be in 0..{cfg.qualities - 1}")
    return detail_layer.analyse(model.detail, prepared.features, prepared.base_symbols, quality)


def _detail_file(model: FaceAE, prepared: _DetailInput, analysed: detail_layer.Analysed) -> Compressed:
    codec = model.detail
    cfg = codec.layer.cfg
    coder = constriction.stream.stack.AnsCoder()
    bits = _push_detail(coder, codec, analysed.y_symbols, analysed.y_index)
    bits += _push_detail(coder, codec, analysed.z_symbols, codec.hyper.z_index)
    std = prepared.base_std
    coder.encode_reverse(prepared.base_symbols, _GAUSSIAN, np.zeros_like(std), std)
    bits += _information_bits(prepared.base_symbols, std)
    return _write(model, coder, cfg.base_latent, cfg.base_q, bits, analysed.quality)


def compress_detail(model: FaceAE, image: torch.Tensor, quality: int) -> Compressed:
    """Compress one crop as the detail layer's base plus its detail at `quality`."""
    prepared = _prepare_detail(model, image)
    return _detail_file(model, prepared, _analyse(model, prepared, quality))


def _detail_picture(model: FaceAE, prepared: _DetailInput, analysed: detail_layer.Analysed) -> torch.Tensor:
    """The picture the detail file decodes to, computed on the encoder's side: the same
    integer tables and float operations as decompress, without entropy decoding."""
    return detail_layer.synthesise(
        model.detail, analysed.y_symbols, analysed.mu, prepared.base_picture, analysed.quality
    )


def highest_fitting(size_at: Callable[[int], int], low: int, high: int, max_bytes: int, growth: float) -> int | None:
    """The highest q in [low, high] with size_at(q) <= max_bytes, for sizes that grow with q
    about geometrically, by `growth` a step; None when not even `low` fits.

    Each probe goes where the sizes seen so far put the budget on a log scale (from `low` with
    `growth` until a size over the budget is known, then between the two nearest sizes): 3.5
    probes of the detail layer's 41 qualities on average where a binary search took 5.6 (24
    validation faces, five budgets, both models; the same files). size_at is called once per
    quality probed.
    """
    sizes: dict[int, int] = {}

    def fits(q: int) -> bool:
        sizes[q] = size_at(q)
        return sizes[q] <= max_bytes

    if not fits(low):
        return None
    lo, hi = low, high + 1  # lo fits; hi is the lowest quality known not to (high + 1: none yet)
    while hi - lo > 1:
        rate = math.log(sizes[hi] / sizes[lo]) / (hi - lo) if hi <= high else math.log(growth)
        ahead = math.log(max_bytes / sizes[lo]) / rate if rate > 0 else 1.0
        q = min(max(lo + int(ahead), lo + 1), hi - 1)
        lo, hi = (q, hi) if fits(q) else (lo, q)
    return lo


def _finest_detail_within(
    model: FaceAE, image: torch.Tensor, code: np.ndarray, max_bytes: int
) -> tuple[Compressed, torch.Tensor] | None:
    """The highest detail quality whose file fits, with its picture; None when even the lowest
    does not fit."""
    prepared = _prepare_detail(model, image, code)
    probed: dict[int, tuple[Compressed, detail_layer.Analysed]] = {}

    def size_at(quality: int) -> int:
        analysed = _analyse(model, prepared, quality)
        probed[quality] = (_detail_file(model, prepared, analysed), analysed)
        return len(probed[quality][0].data)

    top = model.detail.layer.cfg.qualities - 1
    quality = highest_fitting(size_at, 0, top, max_bytes, DETAIL_GROWTH_PER_QUALITY)
    if quality is None:
        return None
    found, analysed = probed[quality]
    return found, _detail_picture(model, prepared, analysed)


def _base_candidates(model: FaceAE, code: np.ndarray, max_bytes: int) -> list[tuple[Compressed, torch.Tensor]]:
    """Per latent size the finest base file within max_bytes (else the smallest), each with a
    preview of its picture from one batched decode in bfloat16: ranking needs no exact pixels
    (a preview's squared error is off by ~1e-6, against ~3e-3 for a face at 26 dB; of 800
    choices, 50 faces at 8 budgets, 10 near-ties at 96 bytes went the other way, by 0.007 dB
    at most)."""
    files = [compress_code(model, code[:latent], max_bytes=max_bytes) for latent in model.cfg.ladder]
    codes = torch.from_numpy(
        np.stack([_dequantise(model, _quantise(model, code[: f.latent], f.q)[0], f.q) for f in files])
    ).float()
    return list(zip(files, preview_decode(model, codes), strict=True))


def best_within(models: dict[str, FaceAE], image: torch.Tensor, max_bytes: int) -> tuple[Compressed, torch.Tensor]:
    """The best file of at most `max_bytes` for one crop and the picture it decodes to.

    Every model given, every latent size with its finest fitting quantiser, and the highest
    fitting detail quality are tried; the one that decodes closest to the image (PSNR)
    wins. If nothing fits, the smallest file.
    """
    candidates = []
    for model in models.values():
        code = encode_latent(model, image)
        candidates += _base_candidates(model, code, max_bytes)
        if model.detail is not None and (found := _finest_detail_within(model, image, code, max_bytes)):
            candidates.append(found)
    fitting = [c for c in candidates if len(c[0].data) <= max_bytes]
    if not fitting:
        smallest = min((file for file, _ in candidates), key=lambda f: len(f.data))
        return smallest, decompress(smallest.data, models)
    best, picture = min(fitting, key=lambda c: float(((c[1] - image) ** 2).mean()))
    # A detail picture is already the decoder's; a base one was a float32 preview.
    return best, picture if best.detail is not None else decompress(best.data, models)


def compress_within(models: dict[str, FaceAE], image: torch.Tensor, max_bytes: int) -> Compressed:
    """The best file of at most `max_bytes` for one crop (see best_within)."""
    return best_within(models, image, max_bytes)[0]


@torch.inference_mode()
def encode_latent(model: FaceAE, image: torch.Tensor) -> np.ndarray:
    """The full code of one (3, 128, 128) image in [0, 1], as float64."""
    return model.code(image.unsqueeze(0).float()).squeeze(0).double().cpu().numpy()


def compress(
    model: FaceAE, image: torch.Tensor, latent: int, q: int | None = None, max_bytes: int | None = None
) -> Compressed:
    """Compress one crop to a base-only .fcz at latent size `latent`.

    With `max_bytes`, the finest quantiser whose file fits is chosen (the coarsest if
    none does); otherwise `q` (default DEFAULT_Q). `compress_within` chooses the layer too.
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


def parse_header(data: bytes) -> Header:
    """Validate a file's framing and read its header."""
    if not data:
        raise CodecError("empty file")
    if len(data) > MAX_FILE_BYTES:
        raise CodecError(f"file is {len(data):,} bytes; a FaceComp file is at most {MAX_FILE_BYTES:,}")
    if len(data) < HEADER_BYTES + CRC_BYTES:
        raise CodecError(f"truncated file: {len(data)} bytes is shorter than the header")
    if data[:2] != MAGIC:
        raise CodecError("not a FaceComp .fcz file (wrong magic bytes)")
    version, kind_bit, ladder_index = data[2] >> 4, (data[2] >> 3) & 1, data[2] & 7
    if version not in READABLE_VERSIONS:
        raise CodecError(
            f"unsupported format version {version} (this FaceComp reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}); a newer FaceComp wrote it"
        )
    (crc,) = struct.unpack(">H", data[-2:])
    if binascii.crc_hqx(data[:-2], 0) != crc:
        raise CodecError("checksum mismatch: the file is corrupted or truncated")
    q, has_detail = data[5] & ~DETAIL_FLAG, bool(data[5] & DETAIL_FLAG)
    if q >= len(QSTEPS):
        raise CodecError(f"invalid quantiser index {q}")
    if not has_detail:
        return Header(MODEL_KINDS[kind_bit], ladder_index, data[3:5], q, None, b"")
    if len(data) < HEADER_BYTES + DETAIL_HEADER_BYTES + CRC_BYTES:
        raise CodecError(f"truncated file: {len(data)} bytes is shorter than the detail header")
    return Header(MODEL_KINDS[kind_bit], ladder_index, data[3:5], q, data[6], data[7:9])


def _checked_model(header: Header, models: dict[str, FaceAE]) -> FaceAE:
    kind = header.kind
    if kind not in models:
        raise CodecError(f"file was made by the {kind.upper()} model, which is not loaded")
    model = models[kind]
    if header.ladder_index >= len(model.cfg.ladder):
        raise CodecError(f"invalid latent size index {header.ladder_index}")
    if header.tag != weights_tag(model):
        raise CodecError(
            f"file was made by other weights (hash {header.tag.hex()}); the loaded {kind.upper()} weights are "
            f"{weights_tag(model).hex()}"
        )
    if header.detail is None:
        return model
    codec = getattr(model, "detail", None)
    if codec is None:
        raise CodecError(f"file has a detail layer, and the loaded {kind.upper()} weights have none")
    if header.detail_tag != codec.tag:
        raise CodecError(
            f"file's detail layer was made by other weights (hash {header.detail_tag.hex()}); "
            f"the loaded ones are {codec.tag.hex()}"
        )
    cfg = codec.layer.cfg
    if header.detail >= cfg.qualities:
        raise CodecError(f"invalid detail quality {header.detail}")
    if model.cfg.ladder[header.ladder_index] != cfg.base_latent or header.q != cfg.base_q:
        raise CodecError("file's base layer does not match its detail layer")
    return model


def _decode(data: bytes, models: dict[str, FaceAE]) -> tuple[FaceAE, Header, np.ndarray, torch.Tensor | None]:
    """(model, header, base symbols, detail picture or None) of a checked file."""
    header = parse_header(data)
    model = _checked_model(header, models)
    latent = model.cfg.ladder[header.ladder_index]
    _, std, _ = base_quantiser(model, latent, header.q)
    payload = data[header.size : -CRC_BYTES]
    payload += b"\0" * (-len(payload) % 4)
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    picture = None
    try:
        coder = constriction.stream.stack.AnsCoder(words)
        symbols = coder.decode(_GAUSSIAN, np.zeros_like(std), std)
        if header.detail is not None:
            codec = model.detail
            z_symbols = _pop_detail(coder, codec, codec.hyper.z_index)
            mu, y_index = codec.hyper(z_symbols, symbols, header.detail)
            y_symbols = _pop_detail(coder, codec, y_index)
            picture = detail_layer.synthesise(
                codec, y_symbols, mu, _base_picture(model, symbols, header.q), header.detail
            )
    except (ValueError, RuntimeError, AssertionError) as err:
        raise CodecError(f"corrupted payload: {err}") from err
    if not coder.is_empty():
        raise CodecError("corrupted payload: data left over after the latent")
    return model, header, symbols, picture


def decode_code(data: bytes, models: dict[str, FaceAE]) -> tuple[str, np.ndarray]:
    """The model kind and the full code (max_latent,) a .fcz file holds (its prefix dequantised, the rest 0).

    For a file with a detail layer this is its base layer's code.
    """
    model, header, symbols, _ = _decode(data, models)
    return header.kind, _dequantise(model, symbols, header.q)


@torch.no_grad()
def decompress(data: bytes, models: dict[str, FaceAE]) -> torch.Tensor:
    """Decode .fcz bytes to a (3, 128, 128) image clamped to [0, 1]."""
    model, header, symbols, picture = _decode(data, models)
    if picture is not None:
        return picture
    return _base_picture(model, symbols, header.q)[0]


_float64_decoders: weakref.WeakKeyDictionary[FaceAE, torch.nn.Module] = weakref.WeakKeyDictionary()
_preview_decoders: weakref.WeakKeyDictionary[FaceAE, torch.nn.Module] = weakref.WeakKeyDictionary()


def _exact_decoder(model: FaceAE) -> torch.nn.Module:
    """A float64 CPU copy of the model's decoder (see the module notes), made once per model."""
    if model not in _float64_decoders:
        _float64_decoders[model] = copy.deepcopy(model.decoder).cpu().double().eval()
    return _float64_decoders[model]


@torch.no_grad()
def preview_decode(model: FaceAE, codes: torch.Tensor) -> torch.Tensor:
    """(N, 3, 128, 128) float32 CPU pictures of (N, k) codes (missing dimensions zero, as in
    FaceAE.decode), to rank or show, not for files: a bfloat16 channels-last copy of the decoder
    (10 MB, made once per model) takes under a third of float32's time (16 against 56 ms for six
    codes, 6 against 13 ms for one, on one CPU thread). Its pixels are at most 3 8-bit levels
    from float32's, a quarter of them 1 level or more (32 sampled codes per model)."""
    if model not in _preview_decoders:
        decoder = copy.deepcopy(model.decoder).eval()
        _preview_decoders[model] = decoder.to(torch.bfloat16, memory_format=torch.channels_last)
    decoder = _preview_decoders[model]
    codes = F.pad(codes, (0, model.cfg.max_latent - codes.shape[1]))
    return decoder(codes.to(next(decoder.parameters()).device, torch.bfloat16)).clamp(0, 1).float().cpu()
