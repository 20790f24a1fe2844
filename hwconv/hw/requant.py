"""Requantizer: accumulators -> saturated 8-bit activations, bit-exact with
:meth:`hwconv.numerics.Requant.apply` followed by ``clip(zp + r, lo, hi)``.

One shared unit serves every stage that requantizes (conv, depthwise/pointwise, dense,
average pooling).  It is a stream stage with a global-stall pipeline: every register
advances when the output is free or accepted, so backpressure never loses a beat.
"""

from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import HwconvError
from .stream import beat_layout

__all__ = ["Requantizer", "acc_layout", "clamp", "round_shift_const"]


def acc_layout(acc_bits, lanes, groups):
    """Requantizer input: ``lanes`` accumulators of channel group ``group``, ``last``."""
    return data.StructLayout({
        "acc": data.ArrayLayout(signed(acc_bits), lanes),
        "group": unsigned(max(1, (groups - 1).bit_length())),
        "last": unsigned(1),
    })


def clamp(value, lo, hi):
    return Mux(value < lo, lo, Mux(value > hi, hi, value))


def round_shift_const(value, shift, rounding):
    """Amaranth expression equal to :func:`hwconv.numerics.round_shift` for a constant
    ``shift``: ``value / 2**shift`` rounded half up or half to even."""
    if shift == 0:
        return value
    half = 1 << (shift - 1)
    if rounding == "half_even":
        return (value + (half - 1) + (value >> shift)[0]) >> shift
    return (value + half) >> shift


def _table(values, shape, index):
    """A constant per channel group, selected by ``index`` (a mux, or a constant)."""
    values = [int(v) for v in values]
    if len(set(values)) == 1:
        return Const(values[0], shape)
    return Array(Const(v, shape) for v in values)[index]


class Requantizer(wiring.Component):
    """Per-channel fixed-point requantization, rounding (``requant.rounding``: half up
    or half to even), saturation.

    Parameters
    ----------
    requant : hwconv.numerics.Requant
        Per-channel ``multiplier``/``shift`` arrays (length ``channels``) or scalars.
    channels : int
        Output channels; ``lanes`` must divide it.
    lanes : int
        Channels per beat; lane ``l`` of group ``g`` is channel ``g * lanes + l``.
    acc_bits : int
        Accumulator width (two's complement).
    zero_point, lo, hi : int
        Output zero point and clamp range (the output type's range, or a fused ReLU).
    out_shape : Shape
        ``signed(8)`` or ``unsigned(8)``.

    Attributes
    ----------
    i : In(stream.Signature(acc_layout(...)))
    o : Out(stream.Signature(beat_layout(out_shape, lanes)))
    latency : int
        Register stages from ``i`` to ``o`` (3).
    """

    latency = 3

    def __init__(self, requant, channels, lanes, acc_bits, zero_point, lo, hi, out_shape):
        if lanes < 1 or channels % lanes:
            raise HwconvError(f"Requantizer: lanes={lanes} must divide {channels} channels")
        mult = [int(v) for v in requant.multiplier.ravel()]
        shift = [int(v) for v in requant.shift.ravel()]
        if len(mult) == 1:
            mult, shift = mult * channels, shift * channels
        if len(mult) != channels:
            raise HwconvError(f"Requantizer: {len(mult)} multipliers for {channels} channels")
        if not out_shape.signed and lo < 0:
            raise HwconvError(f"Requantizer: clamp low {lo} below unsigned range")
        self._mult, self._shift = mult, shift
        self._channels, self._lanes, self._acc_bits = channels, lanes, acc_bits
        self._mult_bits = requant.mult_bits
        self._rounding = requant.rounding
        self._zp, self._lo, self._hi = zero_point, lo, hi
        self._out_shape = out_shape
        self._groups = channels // lanes
        super().__init__({
            "i": In(stream.Signature(acc_layout(acc_bits, lanes, self._groups))),
            "o": Out(stream.Signature(beat_layout(out_shape, lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        prod_bits = self._acc_bits + self._mult_bits + 1
        max_shift = max(self._shift)

        v1, v2 = Signal(), Signal()
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]

        g1 = Signal.like(self.i.payload.group)
        last1, last2 = Signal(), Signal()
        prods = [Signal(signed(prod_bits), name=f"prod{lane}") for lane in range(lanes)]
        shifted = [Signal(signed(prod_bits), name=f"rounded{lane}") for lane in range(lanes)]
        with m.If(en):
            m.d.sync += [v1.eq(self.i.valid), v2.eq(v1), self.o.valid.eq(v2),
                         g1.eq(self.i.payload.group), last1.eq(self.i.payload.last),
                         last2.eq(last1), self.o.payload.last.eq(last2)]
            for lane in range(lanes):
                chans = range(lane, self._channels, lanes)
                mult = _table([self._mult[c] for c in chans], unsigned(self._mult_bits),
                              self.i.payload.group)
                m.d.sync += prods[lane].eq(self.i.payload.acc[lane] * mult)
                shift = _table([self._shift[c] for c in chans],
                               unsigned(max(1, max_shift.bit_length())), g1)
                even = self._rounding == "half_even"
                # half to even: add half - 1, plus 1 when the bit kept last is odd
                half = _table([(1 << (self._shift[c] - 1)) - even if self._shift[c] else 0
                               for c in chans], unsigned(max(1, max_shift)), g1)
                rounded = prods[lane] + half
                if even:
                    odd = _table([int(self._shift[c] > 0) for c in chans], unsigned(1), g1)
                    rounded = rounded + (odd & (prods[lane] >> shift)[0])
                m.d.sync += shifted[lane].eq(rounded >> shift)
                out = clamp(shifted[lane] + self._zp, self._lo, self._hi)
                m.d.sync += self.o.payload.data[lane].eq(out)
        return m
