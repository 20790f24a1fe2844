"""The inter-stage stream format, shared by every hardware stage and every testbench.

A stream carries one pixel's channels (channels-last, raster order) in ``C // lanes``
consecutive beats of ``lanes`` values; ``last`` is set on the final beat of a frame.
A vector (``(N,)`` tensor) is a frame of one pixel with ``N`` channels.

The payload is ``StructLayout({"data": ArrayLayout(elem, lanes), "last": 1})``;
:func:`encode_frame` and :func:`decode_beats` translate NumPy arrays to and from beats,
so the testbenches and the golden model speak the hardware's bit format.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data, stream

from ..errors import HwconvError

__all__ = ["elem_shape", "beat_layout", "beat_signature", "check_lanes", "encode_frame",
           "decode_beats", "beats_to_bits", "bits_to_beats"]


def elem_shape(dtype, bits=8):
    """Amaranth shape of one activation value (``"int8"`` -> ``signed(8)``)."""
    if dtype in ("int8", "signed"):
        return signed(bits)
    if dtype in ("uint8", "unsigned"):
        return unsigned(bits)
    raise HwconvError(f"element dtype must be int8 or uint8, not {dtype!r}")


def beat_layout(elem, lanes):
    """Payload layout of a beat: ``lanes`` values of shape ``elem`` plus ``last``."""
    if lanes < 1:
        raise HwconvError(f"lanes must be >= 1, not {lanes}")
    return data.StructLayout({"data": data.ArrayLayout(elem, lanes), "last": unsigned(1)})


def beat_signature(elem, lanes):
    return stream.Signature(beat_layout(elem, lanes))


def check_lanes(channels, lanes, what):
    """Refuse a lane count that does not divide the channel count."""
    if lanes < 1 or channels % lanes:
        raise HwconvError(f"{what}: lanes={lanes} must divide the {channels} channels")
    return channels // lanes


def encode_frame(x, lanes):
    """Beats ``[(values, last), ...]`` of one frame ``x`` of shape (H, W, C) or (N,)."""
    x = np.asarray(x)
    c = x.shape[-1]
    check_lanes(c, lanes, "encode_frame")
    flat = x.reshape(-1, lanes)
    n = len(flat)
    return [([int(v) for v in row], int(i == n - 1)) for i, row in enumerate(flat)]


def decode_beats(beats, shape, lanes):
    """Inverse of :func:`encode_frame`; checks ``last`` is on the final beat only."""
    n = int(np.prod(shape)) // lanes
    if len(beats) != n:
        raise AssertionError(f"expected {n} beats, got {len(beats)}")
    for i, (_, last) in enumerate(beats):
        if bool(last) != (i == n - 1):
            raise AssertionError(f"beat {i} of {n} has last={last}")
    return np.array([v for values, _ in beats for v in values], dtype=np.int64).reshape(shape)


def beats_to_bits(beats, elem, lanes):
    """Pack beats into integers with the payload's bit layout (for Verilog testbenches)."""
    layout = beat_layout(Shape.cast(elem), lanes)
    return [layout.const({"data": list(v), "last": last}).as_value().value for v, last in beats]


def bits_to_beats(words, elem, lanes):
    """Unpack payload integers into ``(values, last)`` beats."""
    elem = Shape.cast(elem)
    w = elem.width
    out = []
    for word in words:
        vals = []
        for i in range(lanes):
            v = (word >> (i * w)) & ((1 << w) - 1)
            if elem.signed and v >> (w - 1):
                v -= 1 << w
            vals.append(v)
        out.append((vals, (word >> (lanes * w)) & 1))
    return out
