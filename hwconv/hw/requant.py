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

from .. import cost
from ..errors import HwconvError
from ..numerics import signed_bits
from . import dsp
from .fifo import RegisterSlice
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

    Every channel's shift is folded into its multiplier: with ``S = max(shift)``,
    ``round(acc * M_c / 2**s_c) == round(acc * (M_c << (S - s_c)) / 2**S)`` exactly, so
    the shift, the rounding constant and the tie bit are constants and the only
    per-channel table is the multiplier (a few bits wider: digits' shifts span 2 bits).

    Pipeline (global stall: every register advances when the output is free or taken):
    product of the accumulator and the group's multiplier (:func:`~hwconv.hw.dsp.multiply`,
    :func:`hwconv.cost.requant_mul_latency` edges: a product of fewer DSP cells is padded
    after rounding, where it is narrow), round and shift by ``S`` (1), clamp to
    ``[lo - zp, hi - zp]`` (1), add the zero point (1), an output register slice (1):
    :attr:`latency` edges in all.

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
    backend : str
        Multiplier back end (:mod:`hwconv.hw.dsp`).

    Attributes
    ----------
    i : In(stream.Signature(acc_layout(...)))
    o : Out(stream.Signature(beat_layout(out_shape, lanes)))
    latency : int
        Register stages from ``i`` to ``o``.
    """

    def __init__(self, requant, channels, lanes, acc_bits, zero_point, lo, hi, out_shape,
                 *, backend="generic"):
        if lanes < 1 or channels % lanes:
            raise HwconvError(f"Requantizer: lanes={lanes} must divide {channels} channels")
        n = requant.multiplier.size
        if n not in (1, channels):
            raise HwconvError(f"Requantizer: {n} multipliers for {channels} channels")
        if not out_shape.signed and lo < 0:
            raise HwconvError(f"Requantizer: clamp low {lo} below unsigned range")
        self._mult, self._shift = cost.requant_multipliers(requant, channels)
        self._mult_shape = unsigned(max(1, max(self._mult).bit_length()))
        self._backend = dsp.backend(backend)
        self._mul_latency = dsp.multiply_latency(self._backend, signed(acc_bits),
                                                 self._mult_shape)
        room = cost.requant_mul_latency(self._backend.name)
        if self._mul_latency > room:
            raise HwconvError(f"Requantizer: a {acc_bits}-bit x {self._mult_shape.width}-bit "
                              f"product takes {self._mul_latency} cycles on the "
                              f"{self._backend.name} back end, more than the {room} the "
                              f"pipeline has")
        self._channels, self._lanes, self._acc_bits = channels, lanes, acc_bits
        self._rounding = requant.rounding
        self._zp, self._lo, self._hi = zero_point, lo, hi
        self._out_shape = out_shape
        self._groups = channels // lanes
        super().__init__({
            "i": In(stream.Signature(acc_layout(acc_bits, lanes, self._groups))),
            "o": Out(stream.Signature(beat_layout(out_shape, lanes))),
        })

    @property
    def latency(self):
        return cost.requant_latency(self._backend.name)

    def elaborate(self, platform):
        m = Module()
        # Output register slice: the stall of every register here comes from its
        # flip-flops, so the chain of readies from the consumer ends at this unit.
        m.submodules.out_slice = out = RegisterSlice(self.o.signature)
        wiring.connect(m, out.o, wiring.flipped(self.o))
        dst = out.i
        src = self.i
        lanes = self._lanes
        en = Signal()
        m.d.comb += [en.eq(~dst.valid | dst.ready), src.ready.eq(en)]

        ctrl = data.StructLayout({"valid": 1, "last": 1})
        c0 = Signal(ctrl)
        m.d.comb += [c0.valid.eq(src.valid), c0.last.eq(src.payload.last)]
        room = cost.requant_mul_latency(self._backend.name)
        c = dsp.delay(m, en, c0, room + 2, "ctrl")     # product, round, clamp; o.valid
        with m.If(en):
            m.d.sync += [dst.valid.eq(c.valid), dst.payload.last.eq(c.last)]

        s = self._shift
        lo, hi = self._lo - self._zp, self._hi - self._zp
        for lane in range(lanes):
            acc = src.payload.acc[lane]
            mult = _table(self._mult[lane::lanes], self._mult_shape, src.payload.group)
            prod = dsp.multiply(m, acc, mult, en, self._backend, f"mul{lane}")
            scaled = Signal(signed(max(1, len(prod) - s + 1)), name=f"scaled{lane}")
            clamped = Signal(signed(signed_bits(max(abs(lo), abs(hi)))),
                             name=f"clamped{lane}")
            with m.If(en):
                m.d.sync += scaled.eq(round_shift_const(prod, s, self._rounding))
            padded = dsp.delay(m, en, scaled, room - self._mul_latency, f"scaled{lane}")
            with m.If(en):
                m.d.sync += [clamped.eq(clamp(padded, lo, hi)),
                             dst.payload.data[lane].eq(clamped + self._zp)]
        return m

