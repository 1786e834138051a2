"""dlib's face-recognition ResNet in torch, with the weights read from dlib's own model file.

dlib's Python wheel runs this network without BLAS on one core: ~0.11 s a face, and it
holds the GIL meanwhile. The same network in torch takes a few milliseconds a face and
releases the GIL. The descriptors agree with dlib's to 1e-5 (tests/test_latent_space.py checks
them against dlib on the same chips), so dlib's published 0.6 rule still holds.

The architecture is dlib's `anet_type` from examples/dnn_face_recognition_ex.cpp:
a 7x7 stem, then residual levels of 32, 64, 128, 256 and 256 filters, global average
pooling and a 128-d linear layer without bias. dlib's own conventions are kept where they
differ from torch's defaults: strided convolutions and pools are unpadded, the downsampling
shortcut is a 2x2 average pool, and a sum of two tensors of different sizes is taken over
the larger one with the smaller zero-padded (bottom, right and extra channels).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CHIP_SIZE = 150  # dlib's aligned face chip, padding 0.25
# input_rgb_image_sized: (pixel - channel mean) / 256
INPUT_MEAN = (122.782, 117.001, 104.298)
INPUT_SCALE = 256.0
# (filters, residual units) per level, input to output; the first unit of every level but
# the first downsamples (dlib's ares_down).
LEVELS = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))


class _Reader:
    """dlib's serialisation: integers as a control byte (length, sign) plus little-endian
    bytes, strings as length plus characters, tensors as raw little-endian float32."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def integer(self) -> int:
        control = self.data[self.pos]
        size = control & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if control & 0x80 else value

    def string(self) -> str:
        n = self.integer()
        self.pos += n
        return self.data[self.pos - n : self.pos].decode()

    def shape(self) -> tuple[int, int, int, int]:
        self.integer()  # version
        return tuple(self.integer() for _ in range(4))

    def tensor(self) -> np.ndarray:
        shape = self.shape()
        n = int(np.prod(shape))
        out = np.frombuffer(self.data, dtype="<f4", count=n, offset=self.pos)
        self.pos += 4 * n
        return out.reshape(shape)


@dataclass
class _Conv:
    weight: torch.Tensor
    bias: torch.Tensor
    stride: int
    padding: int


def _layers(data: bytes, tag: bytes) -> list[_Reader]:
    """A reader placed at each layer whose version string is `tag`, in file order (dlib
    writes a network input first, so this is the forward order)."""
    marker = struct.pack("BB", 1, len(tag)) + tag
    readers, start = [], 0
    while (pos := data.find(marker, start)) >= 0:
        readers.append(_Reader(data, pos))
        start = pos + len(marker)
    return readers


def _read_conv(reader: _Reader) -> _Conv:
    reader.string()
    params = reader.tensor().reshape(-1)
    filters = reader.integer()
    nr, nc, stride_y, _stride_x, padding_y, _padding_x = (reader.integer() for _ in range(6))
    weight_shape = reader.shape()
    n_weights = int(np.prod(weight_shape))
    if weight_shape != (filters, weight_shape[1], nr, nc) or params.size != n_weights + filters:
        raise ValueError(f"a convolution of shape {weight_shape} does not match its {params.size} parameters")
    return _Conv(
        torch.from_numpy(params[:n_weights].reshape(weight_shape).copy()),
        torch.from_numpy(params[n_weights:].copy()),
        stride_y,
        padding_y,
    )


def _read_affine(reader: _Reader) -> tuple[torch.Tensor, torch.Tensor]:
    reader.string()
    params = torch.from_numpy(reader.tensor().reshape(-1).copy())
    gamma, beta = params.chunk(2)
    return gamma.reshape(1, -1, 1, 1), beta.reshape(1, -1, 1, 1)


def _read_fc(reader: _Reader) -> torch.Tensor:
    reader.string()
    outputs, inputs = reader.integer(), reader.integer()
    return torch.from_numpy(reader.tensor().reshape(inputs, outputs).copy())


def _add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the sum over the larger of each dimension, the smaller tensor zero-padded."""
    if a.shape == b.shape:
        return a + b
    size = [max(x, y) for x, y in zip(a.shape, b.shape, strict=True)]
    out = a.new_zeros(size)
    out[: a.shape[0], : a.shape[1], : a.shape[2], : a.shape[3]] += a
    out[: b.shape[0], : b.shape[1], : b.shape[2], : b.shape[3]] += b
    return out


class DlibFaceNet:
    """The network with dlib's weights; call it on (N, 150, 150, 3) uint8 chips for (N, 128) descriptors."""

    def __init__(self, model_file: str | Path) -> None:
        data = Path(model_file).read_bytes()
        convs = [_read_conv(r) for r in _layers(data, b"con_4")]
        affines = [_read_affine(r) for r in _layers(data, b"affine_")]
        (fc,) = [_read_fc(r) for r in _layers(data, b"fc_2")]
        expected = 1 + 2 * sum(units for _, units in LEVELS)
        if len(convs) != expected or len(affines) != expected:
            raise ValueError(f"{model_file}: {len(convs)} convolutions, expected {expected}: not dlib's face ResNet v1")
        self.layers = list(zip(convs, affines, strict=True))
        self.fc = fc
        self.mean = torch.tensor(INPUT_MEAN).reshape(1, 3, 1, 1)

    def _conv_affine(self, x: torch.Tensor, index: int) -> torch.Tensor:
        conv, (gamma, beta) = self.layers[index]
        return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding) * gamma + beta

    def __call__(self, chips: np.ndarray | torch.Tensor) -> torch.Tensor:
        chips = torch.as_tensor(chips)
        with torch.inference_mode():
            x = (chips.permute(0, 3, 1, 2).float() - self.mean) / INPUT_SCALE
            x = F.max_pool2d(F.relu(self._conv_affine(x, 0)), 3, 2)
            index = 1
            for level, (_, units) in enumerate(LEVELS):
                for unit in range(units):
                    down = level > 0 and unit == 0
                    y = F.relu(self._conv_affine(x, index))
                    y = self._conv_affine(y, index + 1)
                    index += 2
                    x = F.relu(_add(F.avg_pool2d(x, 2, 2) if down else x, y))
            return x.mean(dim=(2, 3)) @ self.fc
