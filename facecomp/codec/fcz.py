"""Writing and reading .fcz files: a model's code (and detail) to bytes and back.

A `LoadedModel` is what coding needs of one kind of model: its network, its detail layer and the
SHA-256 its files name (weights.load_models makes them). The header and framing are
format.py's; the entropy coding is entropy.py's; which file fits a byte budget is budget.py's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..nets.autoencoder import FaceAE
from . import detail_coder, entropy
from .detail_coder import DetailCodec
from .format import CRC_BYTES, CodecError, Compressed, Header, pack, parse_header, payload_words
from .pictures import base_picture


@dataclass(eq=False)
class LoadedModel:
    """One kind of model as loaded for coding."""

    network: FaceAE
    detail_codec: DetailCodec | None  # the detail layer for budgets from ~110 bytes up; None if not shipped
    codec_sha256: str  # the SHA-256 its files name: the weights' own, or that of the codec they share

    @property
    def kind(self) -> str:
        return self.network.cfg.kind

    @property
    def tag(self) -> bytes:
        """The 2-byte weights hash written into each file."""
        return bytes.fromhex(self.codec_sha256[:4])


Models = Mapping[str, LoadedModel]


@torch.inference_mode()
def encode_latent(model: LoadedModel, image: torch.Tensor) -> np.ndarray:
    """The full code of one (3, 128, 128) image in [0, 1], as float64."""
    return model.network.code(image.unsqueeze(0).float()).squeeze(0).double().cpu().numpy()


def _header(model: LoadedModel, latent: int, q: int, detail_quality: int | None) -> Header:
    detail_tag = b"" if detail_quality is None else model.detail_codec.tag
    return Header(model.kind, model.network.cfg.ladder.index(latent), model.tag, q, detail_quality, detail_tag)


def _file(model: LoadedModel, coder, latent: int, q: int, bits: float, detail_quality: int | None) -> Compressed:
    header = _header(model, latent, q, detail_quality)
    bits += 8 * (header.size + CRC_BYTES)
    return Compressed(pack(header, coder.get_compressed()), model.kind, latent, q, bits, detail_quality)


# ---- the base layer -------------------------------------------------------------------


def encode_base(model: LoadedModel, code: np.ndarray, q: int) -> Compressed:
    """Quantise a code (its length is the latent size) with quantiser q and write a base-only file."""
    symbols, std = entropy.quantise(model.network, code, q)
    coder = entropy.new_coder()
    bits = entropy.push_base(coder, symbols, std)
    return _file(model, coder, len(code), q, bits, None)


def compress_code(
    model: LoadedModel, code: np.ndarray, q: int | None = None, max_bytes: int | None = None
) -> Compressed:
    """A base-only file of an already computed code (its length is the latent size): at quantiser q
    (default DEFAULT_Q), or with `max_bytes` the finest quantiser whose file fits (the coarsest if
    none does)."""
    if max_bytes is None:
        return encode_base(model, code, entropy.DEFAULT_Q if q is None else q)
    for q_try in range(len(entropy.QSTEPS)):  # finest first: stop at the first file that fits
        result = encode_base(model, code, q_try)
        if len(result.data) <= max_bytes:
            break
    return result


def compress(
    model: LoadedModel, image: torch.Tensor, latent: int, q: int | None = None, max_bytes: int | None = None
) -> Compressed:
    """One crop to a base-only .fcz at latent size `latent` (see compress_code for q and max_bytes)."""
    if latent not in model.network.cfg.ladder:
        raise ValueError(f"latent size {latent} is not one of {model.network.cfg.ladder}")
    return compress_code(model, encode_latent(model, image)[:latent], q, max_bytes)


# ---- the detail layer -----------------------------------------------------------------


@dataclass(frozen=True)
class DetailInput:
    """What every quality of one image's detail file shares: the base layer and the analysis."""

    base_symbols: np.ndarray
    base_std: np.ndarray
    base_picture: torch.Tensor
    features: torch.Tensor


def prepare_detail(model: LoadedModel, image: torch.Tensor, code: np.ndarray | None = None) -> DetailInput:
    if model.detail_codec is None:
        raise ValueError(f"the {model.kind.upper()} weights have no detail layer")
    cfg = model.detail_codec.layer.cfg
    code = encode_latent(model, image) if code is None else code
    symbols, std = entropy.quantise(model.network, code[: cfg.base_latent], cfg.base_q)
    base = base_picture(model.network, symbols, cfg.base_q)
    return DetailInput(symbols, std, base, detail_coder.features(model.detail_codec, image, base))


def analyse(model: LoadedModel, prepared: DetailInput, quality: int) -> detail_coder.Analysed:
    cfg = model.detail_codec.layer.cfg
    if not 0 <= quality < cfg.qualities:
        raise ValueError(f"detail quality must be in 0..{cfg.qualities - 1}")
    return detail_coder.analyse(model.detail_codec, prepared.features, prepared.base_symbols, quality)


def detail_file(model: LoadedModel, prepared: DetailInput, analysed: detail_coder.Analysed) -> Compressed:
    codec, cfg = model.detail_codec, model.detail_codec.layer.cfg
    coder = entropy.new_coder()
    bits = entropy.push_detail(coder, codec, analysed.y_symbols, analysed.y_index)
    bits += entropy.push_detail(coder, codec, analysed.z_symbols, codec.hyper.z_index)
    bits += entropy.push_base(coder, prepared.base_symbols, prepared.base_std)
    return _file(model, coder, cfg.base_latent, cfg.base_q, bits, analysed.quality)


def detail_picture(model: LoadedModel, prepared: DetailInput, analysed: detail_coder.Analysed) -> torch.Tensor:
    """The picture the detail file decodes to, computed on the encoder's side: the same
    integer tables and float operations as decompress, without entropy decoding."""
    return detail_coder.synthesise(
        model.detail_codec, analysed.y_symbols, analysed.mu, prepared.base_picture, analysed.quality
    )


def compress_detail(model: LoadedModel, image: torch.Tensor, quality: int) -> Compressed:
    """One crop as the detail layer's base plus its detail at `quality`."""
    prepared = prepare_detail(model, image)
    return detail_file(model, prepared, analyse(model, prepared, quality))


# ---- reading --------------------------------------------------------------------------


def _checked_model(header: Header, models: Models) -> LoadedModel:
    kind = header.kind
    if kind not in models:
        raise CodecError(f"file was made by the {kind.upper()} model, which is not loaded")
    model = models[kind]
    if header.ladder_index >= len(model.network.cfg.ladder):
        raise CodecError(f"invalid latent size index {header.ladder_index}")
    if header.tag != model.tag:
        raise CodecError(
            f"file was made by other weights (hash {header.tag.hex()}); the loaded {kind.upper()} weights are "
            f"{model.tag.hex()}"
        )
    if header.detail_quality is None:
        return model
    if model.detail_codec is None:
        raise CodecError(f"file has a detail layer, and the loaded {kind.upper()} weights have none")
    if header.detail_tag != model.detail_codec.tag:
        raise CodecError(
            f"file's detail layer was made by other weights (hash {header.detail_tag.hex()}); "
            f"the loaded ones are {model.detail_codec.tag.hex()}"
        )
    cfg = model.detail_codec.layer.cfg
    if header.detail_quality >= cfg.qualities:
        raise CodecError(f"invalid detail quality {header.detail_quality}")
    if model.network.cfg.ladder[header.ladder_index] != cfg.base_latent or header.q != cfg.base_q:
        raise CodecError("file's base layer does not match its detail layer")
    return model


def _decode(data: bytes, models: Models) -> tuple[LoadedModel, Header, np.ndarray, torch.Tensor | None]:
    """(model, header, base symbols, detail picture or None) of a checked file."""
    header = parse_header(data)
    model = _checked_model(header, models)
    latent = model.network.cfg.ladder[header.ladder_index]
    _, std, _ = entropy.base_quantiser(model.network, latent, header.q)
    picture = None
    try:
        coder = entropy.new_coder(payload_words(data, header))
        symbols = entropy.pop_base(coder, std)
        if header.detail_quality is not None:
            codec = model.detail_codec
            z_symbols = entropy.pop_detail(coder, codec, codec.hyper.z_index)
            mu, y_index = codec.hyper(z_symbols, symbols, header.detail_quality)
            y_symbols = entropy.pop_detail(coder, codec, y_index)
            base = base_picture(model.network, symbols, header.q)
            picture = detail_coder.synthesise(codec, y_symbols, mu, base, header.detail_quality)
    except (ValueError, RuntimeError, AssertionError) as err:
        raise CodecError(f"corrupted payload: {err}") from err
    if not coder.is_empty():
        raise CodecError("corrupted payload: data left over after the latent")
    return model, header, symbols, picture


def decode_code(data: bytes, models: Models) -> tuple[str, np.ndarray]:
    """The model kind and the full code (max_latent,) a .fcz file holds (its prefix dequantised, the rest 0).

    For a file with a detail layer this is its base layer's code.
    """
    model, header, symbols, _ = _decode(data, models)
    return header.kind, entropy.dequantise(model.network, symbols, header.q)


@torch.no_grad()
def decompress(data: bytes, models: Models) -> torch.Tensor:
    """Decode .fcz bytes to a (3, 128, 128) image clamped to [0, 1]: the PSNR-optimal decoding."""
    model, header, symbols, picture = _decode(data, models)
    if picture is not None:
        return picture
    return base_picture(model.network, symbols, header.q)[0]


def decompress_sharp(data: bytes, models: Models, refiner: torch.nn.Module) -> torch.Tensor:
    """The same .fcz bytes decoded for realism instead of PSNR: decompress's picture through the
    sharp decoding's refiner (facecomp.nets.refiner). PSNR numbers always come from decompress."""
    from ..nets.refiner import sharpen

    return sharpen(refiner, decompress(data, models))
