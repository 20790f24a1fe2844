"""Requantizer: accumulators -> saturated 8-bit activations, bit-exact with
:meth:`hwconv.numerics.Requant.apply` followed by ``clip(zp + r, lo, hi)``.

One shared unit serves every stage that requantizes (conv, depthwise/pointwise, dense,
average pooling).  It is a stream stage with a global-stall pipeline: every register
advances when the output is free or accepted, so backpressure never loses a beat.
"""

from __future__ import annotations

import numpy as np
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


def _table(values, shape, *index):
    """A constant table ``values[i0][i1]...`` (nested lists) selected by ``index``: a
    mux, or a constant when every entry is equal."""
    flat = [int(v) for v in np.ravel(np.array(values, dtype=object))]
    if len(set(flat)) == 1:
        return Const(flat[0], shape)

    def build(v):
        return Array(build(x) for x in v) if isinstance(v, list) else Const(int(v), shape)
    sel = build(values)
    for i in index:
        sel = sel[i]
    return sel


def _flags(m, name, **fields):
    """One-bit control ``fields`` as a struct signal (for :func:`~hwconv.hw.dsp.delay`)."""
    sig = Signal(data.StructLayout({k: 1 for k in fields}), name=name)
    m.d.comb += [getattr(sig, k).eq(v) for k, v in fields.items()]
    return sig


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

    Limb-serial mode (``limbs = L > 1``), for a producer that delivers a beat at most
    every ``L`` cycles: the folded multipliers (``Wm`` bits) are split into ``L`` limbs
    of ``w = ceil(Wm / L)`` bits, most significant first, in a table indexed by channel
    group and limb.  A beat is taken into a held register (accumulators, group, last)
    when the unit is idle or issues the previous beat's last limb, so ``i.ready`` is high
    one cycle in ``L`` at least and a producer spaced ``L`` or more cycles never stalls.
    From the held register one ``acc x limb`` product per lane and cycle (an
    ``acc_bits x w`` multiplier instead of ``acc_bits x Wm``) enters a Horner
    accumulator, ``P = (P << w) + product`` (``P = product`` for the first limb); after
    the last limb ``P == acc * M_c`` exactly and takes the parallel path's round, clamp,
    zero point and register slice.  Throughput one beat per ``L`` cycles; latency
    ``L + 1`` edges more than the parallel unit's (:func:`hwconv.cost.requant_latency`).

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
        The design's multiplier back end (:mod:`hwconv.hw.dsp`); the products use
        :func:`hwconv.cost.requant_backend` of it (fabric on ``ice40``).
    limbs : int
        Limbs per multiplier, 1 (one full product per beat) to ``Wm``
        (:func:`hwconv.cost.requant_limbs` chooses it from the producer's beat spacing).

    Attributes
    ----------
    i : In(stream.Signature(acc_layout(...)))
    o : Out(stream.Signature(beat_layout(out_shape, lanes)))
    latency : int
        Register stages from ``i`` to ``o``.
    limbs : int
        Limbs per multiplier (cycles per beat).
    """

    def __init__(self, requant, channels, lanes, acc_bits, zero_point, lo, hi, out_shape,
                 *, backend="generic", limbs=1):
        if lanes < 1 or channels % lanes:
            raise HwconvError(f"Requantizer: lanes={lanes} must divide {channels} channels")
        n = requant.multiplier.size
        if n not in (1, channels):
            raise HwconvError(f"Requantizer: {n} multipliers for {channels} channels")
        if not out_shape.signed and lo < 0:
            raise HwconvError(f"Requantizer: clamp low {lo} below unsigned range")
        self._mult, self._shift = cost.requant_multipliers(requant, channels)
        self._limb_bits = cost.requant_limb_bits(requant, channels, limbs)
        self._limbs = int(limbs)
        self._mult_shape = unsigned(max(1, max(self._mult).bit_length()))
        self._backend = dsp.backend(cost.requant_backend(backend))
        self._mul_latency = dsp.multiply_latency(self._backend, signed(acc_bits),
                                                 unsigned(self._limb_bits))
        room = cost.requant_mul_latency(self._backend.name)
        if self._mul_latency > room:
            raise HwconvError(f"Requantizer: a {acc_bits}-bit x {self._limb_bits}-bit "
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
        return cost.requant_latency(self._backend.name, self._limbs)

    @property
    def limbs(self):
        return self._limbs

    def elaborate(self, platform):
        m = Module()
        # Output register slice: the stall of every register here comes from its
        # flip-flops, so the chain of readies from the consumer ends at this unit.
        m.submodules.out_slice = out = RegisterSlice(self.o.signature)
        wiring.connect(m, out.o, wiring.flipped(self.o))
        dst = out.i
        en = Signal()
        m.d.comb += en.eq(~dst.valid | dst.ready)
        if self._limbs == 1:
            prods, ctrl = self._parallel(m, en)
        else:
            prods, ctrl = self._serial(m, en)

        # every product is valid with `ctrl`, mul_latency + (L > 1: L + 1) edges after
        # its beat's transfer; pad to `room` after rounding, where the value is narrow
        room = cost.requant_mul_latency(self._backend.name)
        c = dsp.delay(m, en, ctrl, 1 + room - self._mul_latency + 1, "ctrl")
        with m.If(en):
            m.d.sync += [dst.valid.eq(c.valid), dst.payload.last.eq(c.last)]
        s = self._shift
        lo, hi = self._lo - self._zp, self._hi - self._zp
        for lane, prod in enumerate(prods):
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

    def _parallel(self, m, en):
        """One full product per lane and beat: the products, and their valid/last."""
        src, lanes = self.i, self._lanes
        m.d.comb += src.ready.eq(en)
        prods = []
        for lane in range(lanes):
            mult = _table(self._mult[lane::lanes], self._mult_shape, src.payload.group)
            prods.append(dsp.multiply(m, src.payload.acc[lane], mult, en, self._backend,
                                      f"mul{lane}"))
        c0 = _flags(m, "c0", valid=src.valid, last=src.payload.last)
        return prods, dsp.delay(m, en, c0, self._mul_latency, "c0")

    def _serial(self, m, en):
        """One limb product per lane and cycle into Horner accumulators: the
        accumulators, and valid/last of their final sums."""
        src, lanes, n, w = self.i, self._lanes, self._limbs, self._limb_bits
        held = Signal.like(src.payload, name="held")
        busy = Signal()
        k = Signal(range(n), name="limb")
        final = Signal()
        m.d.comb += [final.eq(busy & (k == n - 1)),
                     src.ready.eq(en & (~busy | final))]
        with m.If(en):
            with m.If(src.valid & src.ready):
                m.d.sync += [held.eq(src.payload), busy.eq(1), k.eq(0)]
            with m.Elif(final):
                m.d.sync += [busy.eq(0), k.eq(0)]
            with m.Elif(busy):
                m.d.sync += k.eq(k + 1)

        c0 = _flags(m, "c0", valid=busy, first=k == 0, final=final, last=held.last)
        c = dsp.delay(m, en, c0, self._mul_latency, "c0")
        mask = (1 << w) - 1
        prods = []
        for lane in range(lanes):
            # rows: channel groups, columns: limbs, most significant first
            rows = [[(mc >> (w * (n - 1 - j))) & mask for j in range(n)]
                    for mc in self._mult[lane::lanes]]
            limb = (_table(rows[0], unsigned(w), k) if all(r == rows[0] for r in rows)
                    else _table(rows, unsigned(w), held.group, k))
            prod = dsp.multiply(m, held.acc[lane], limb, en, self._backend, f"mul{lane}")
            acc = Signal(signed(self._acc_bits + self._mult_shape.width + 1),
                         name=f"horner{lane}")
            with m.If(en & c.valid):
                m.d.sync += acc.eq(Mux(c.first, 0, acc << w) + prod)
            prods.append(acc)
        done = _flags(m, "horner", valid=c.valid & c.final, last=c.last)
        return prods, dsp.delay(m, en, done, 1, "horner")
