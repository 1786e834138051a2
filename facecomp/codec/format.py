"""The .fcz file format: header, payload framing and checksum (docs/format.md is the spec).

Layout (8 bytes of overhead for a base-only file, 11 with a detail layer):
  0-1  magic b"FZ"
  2    format version (high 4 bits) | model kind (1 bit) | latent size as a ladder index (3 bits)
  3-4  first two bytes of the SHA-256 of the weights that made the file
  5    quantiser index q (low 6 bits); bit 7 set: a detail layer follows
  6    [detail] its quality, 0 to DetailConfig.qualities - 1
  7-8  [detail] first two bytes of the SHA-256 of the detail weights
  ...  ANS payload, little-endian 32-bit words, zero high bytes of the last one dropped:
       the base symbols, then the detail layer's z, then its y grouped by scale index
  -2   CRC-16 (CCITT) of everything before it

Version 1 files (base only, the same layout without bit 7) still decode. The file length is the
payload length: there is no length field to lie, and a file is capped at MAX_FILE_BYTES before
anything is allocated. Plain Python and numpy.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

import numpy as np

from ..spec import MODEL_KINDS, bits_per_pixel

MAGIC = b"FZ"
VERSION = 2
READABLE_VERSIONS = (1, 2)
HEADER_BYTES = 6
DETAIL_HEADER_BYTES = 3
DETAIL_FLAG = 0x80
CRC_BYTES = 2
MAX_FILE_BYTES = 64 * 1024
QUANTISERS = 64  # quantiser indices 0..63 (entropy.QSTEPS)


class CodecError(ValueError):
    """A .fcz file that cannot be decoded: one clear reason, never a garbage image."""


@dataclass(frozen=True)
class Compressed:
    """One .fcz file and how it was made."""

    data: bytes
    kind: str
    latent: int
    q: int
    estimated_bits: float  # information content under the entropy model, header and CRC included
    detail_quality: int | None = None  # the detail layer's quality, None for a base-only file

    @property
    def bits_per_pixel(self) -> float:
        return bits_per_pixel(len(self.data))

    @property
    def label(self) -> str:
        """How the file was made, in words: 'latent 128' or 'latent 128 + detail 12'."""
        return f"latent {self.latent}" + ("" if self.detail_quality is None else f" + detail {self.detail_quality}")


@dataclass(frozen=True)
class Header:
    kind: str
    ladder_index: int
    tag: bytes
    q: int
    detail_quality: int | None
    detail_tag: bytes

    @property
    def size(self) -> int:
        return HEADER_BYTES + (0 if self.detail_quality is None else DETAIL_HEADER_BYTES)


def pack(header: Header, words: np.ndarray) -> bytes:
    """A whole file: the header, the ANS coder's words (uint32) and the checksum."""
    payload = words.astype("<u4").tobytes()
    # The last word is the top of the ANS state; its high bytes are often zero. Dropping up
    # to 3 of them saves ~1.4 bytes a file; the decoder pads back to whole words.
    payload = payload[: len(payload) - min(3, len(payload) - len(payload.rstrip(b"\0")))]
    kind_bit = MODEL_KINDS.index(header.kind)
    head = MAGIC + bytes([VERSION << 4 | kind_bit << 3 | header.ladder_index]) + header.tag
    head += bytes([header.q | (0 if header.detail_quality is None else DETAIL_FLAG)])
    if header.detail_quality is not None:
        head += bytes([header.detail_quality]) + header.detail_tag
    body = head + payload
    return body + struct.pack(">H", binascii.crc_hqx(body, 0))


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
    if q >= QUANTISERS:
        raise CodecError(f"invalid quantiser index {q}")
    if not has_detail:
        return Header(MODEL_KINDS[kind_bit], ladder_index, data[3:5], q, None, b"")
    if len(data) < HEADER_BYTES + DETAIL_HEADER_BYTES + CRC_BYTES:
        raise CodecError(f"truncated file: {len(data)} bytes is shorter than the detail header")
    return Header(MODEL_KINDS[kind_bit], ladder_index, data[3:5], q, data[6], data[7:9])


def payload_words(data: bytes, header: Header) -> np.ndarray:
    """The ANS coder's words of a checked file, padded back to whole words."""
    payload = data[header.size : -CRC_BYTES]
    payload += b"\0" * (-len(payload) % 4)
    return np.frombuffer(payload, dtype="<u4").astype(np.uint32)
