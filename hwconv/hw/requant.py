"""Requantizer: accumulators -> saturated 8-bit activations, bit-exact with
:meth:`hwconv.numerics.Requant.apply` followed by ``clip(zp + r, lo, hi)``.

One shared unit serves every stage that requantizes (conv, depthwise/pointwise, dense,
average pooling).  It is a stream stage whose pipeline either runs free and takes a
beat only with a credit of its output queue (``skid=True``, for fast clocks), or stalls
as a whole when the output is not accepted (``skid=False``, fewer cells); backpressure
never loses a beat.
"""

from __future__ import annotations

import numpy as np
from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .. import cost
from ..errors import HwconvError
from ..numerics import signed_bits
from . import dsp
from .fifo import CreditQueue, RegisterSlice
from .stream import beat_layout

__all__ = ["Requantizer", "acc_layout", "clamp", "round_shift_const", "round_threshold",
           "at_least"]


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


def round_threshold(t, shift, rounding):
    """The smallest integer ``v`` with ``round_shift(v, shift, rounding) >= t``
    (:func:`hwconv.numerics.round_shift`; both roundings are monotone), so that
    ``round_shift(v) < t`` is ``v < round_threshold(t)``: a compare on the unrounded
    value, beside the rounding adder instead of after it."""
    if shift == 0:
        return t
    tie = (t << shift) - (1 << (shift - 1))     # half-way between t - 1 and t
    if rounding == "half_even" and (t - 1) % 2 == 0:
        return tie + 1                          # the tie goes to the even t - 1
    return tie


def _trailing_zeros(t):
    return (t & -t).bit_length() - 1


def at_least(value, t):
    """``value >= t`` for a signed ``value`` and a constant ``t``, compared on as few bits
    as exactness allows (a :func:`round_threshold` has ``shift - 1`` low bits of zeros,
    or is one more than such a number: a full-width compare of a wide product would be
    a long carry chain).

    * ``t = q * 2**k``: ``value >= t`` exactly when ``value >> k >= q``.
    * ``t = q * 2**k + 1``: with ``w = 2 * (value >> k) + (any of value's k low bits)``,
      a monotone map that sends ``t`` to ``2q + 1`` and ``t - 1`` to ``2q``,
      ``value >= t`` exactly when ``w >= 2q + 1``.
    """
    n = len(value)
    zeros = n - 1 if t == 0 else min(_trailing_zeros(t), n - 1)
    ones = n - 1 if t == 1 else min(_trailing_zeros(t - 1), n - 1)
    if zeros >= ones or ones < 2:
        return value[zeros:].as_signed() >= (t >> zeros)
    sticky = value[:ones].any()
    return Cat(sticky, value[ones:]).as_signed() >= 2 * ((t - 1) >> ones) + 1


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


def _any(bits):
    """OR of ``bits`` (0 for none)."""
    return Cat(*bits).any() if bits else Const(0, 1)


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

    Pipeline (free-running with credits, or a global stall, see ``skid``):
    product of the accumulator and the group's multiplier (:func:`~hwconv.hw.dsp.multiply`,
    :func:`hwconv.cost.requant_mul_latency` edges: a product of fewer DSP cells is padded
    after rounding, where it is narrow), round and shift by ``S`` and compare the
    product with the bounds ``[lo - zp, hi - zp]`` moved before the rounding
    (:func:`round_threshold`) (1), clamp (1), add the zero point (1), the output queue
    or register slice (1): :attr:`latency` edges in all.

    Limb-serial mode (``limbs = L > 1``), for a producer that delivers a beat at most
    every ``L`` cycles: the folded multipliers (``Wm`` bits) are split into ``L`` limbs
    of ``w = ceil(Wm / L)`` bits, least significant first, read one cycle ahead into a
    register: from a block-RAM table indexed by channel group and limb
    (:func:`hwconv.cost.requant_table_block`, on ``ice40``), otherwise from a shift
    register loaded with the group's whole multiplier when a beat is taken.  A beat is
    taken into a held register (accumulators, group, last) when the unit is idle or
    issues the previous beat's last limb, so ``i.ready`` is high one cycle in ``L`` at
    least and a producer spaced ``L`` or more cycles never stalls.  From the held
    register one ``acc x limb`` product per lane and cycle (an ``acc_bits x w``
    multiplier instead of ``acc_bits x Wm``) enters a running sum ``R = (R >> w) +
    product`` (``R = product`` for the first limb), ``acc_bits + w + 1`` bits wide:
    after limb ``j``, ``R`` is ``P >> (w*j)`` of the partial product ``P``, and the
    ``w`` bits each step shifts out are final bits of ``P``.  Those from ``low`` up are
    kept, those below only in a sticky bit (:func:`hwconv.cost.requant_round_point`), so
    after the last limb ``2 * (acc * M_c >> low) + sticky`` takes the parallel path's
    round (by ``S - low + 1``: the same result, ties included), clamp, zero point and
    register slice.  Throughput one beat per ``L`` cycles; latency ``L + 1`` edges more
    than the parallel unit's (:func:`hwconv.cost.requant_latency`).

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
    skid : bool
        ``True``: the registers and multipliers run free, a beat is taken only with a
        credit of the output :class:`~hwconv.hw.fifo.CreditQueue` (``latency + 1``
        beats), so no stall signal fans out (for fast clocks).  ``False``: a global
        stall and a plain output register (:class:`~hwconv.hw.fifo.RegisterSlice`):
        fewer cells.

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
                 *, backend="generic", limbs=1, skid=True):
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
        self._design_backend = backend
        self._skid = skid
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
        if self._skid:
            # Free-running pipeline: a beat is taken only with a credit of the output
            # queue, which stands where the register slice would (one edge, the same
            # latency), so no stall fans out to the registers and multipliers.
            dst = self.o.signature.create(path=("dst",))
            # the queue's write is `latency - 1` edges after the take
            m.submodules.out_queue = q = CreditQueue.covering(self.o.signature,
                                                              self.latency - 1)
            wiring.connect(m, q.o, wiring.flipped(self.o))
            m.d.comb += [q.w_en.eq(dst.valid), q.w_data.eq(dst.payload),
                         q.reserve.eq(self.i.valid & self.i.ready)]   # one beat out each
            en = Const(1, 1)
            go = q.ok
        else:
            # Output register slice: the stall of every register here comes from its
            # flip-flops, so the chain of readies from the consumer ends at this unit.
            m.submodules.out_slice = out = RegisterSlice(self.o.signature, skid=False)
            wiring.connect(m, out.o, wiring.flipped(self.o))
            dst = out.i
            en = Signal()
            m.d.comb += en.eq(~dst.valid | dst.ready)
            go = en
        # Credit mode, parallel: the beat and its multipliers are registered before the
        # products (the table lookup stays off the multiplier inputs), and the output
        # is written to the queue straight from the clamp register (the zero point
        # added on the way): the same number of edges.
        staged = self._skid and self._limbs == 1
        if self._limbs == 1:
            prods, ctrl = self._parallel(m, en, go, staged)
            s = self._shift
        else:
            prods, ctrl = self._serial(m, en, go)
            s = self._round_point()[1]

        # every product is valid with `ctrl`, mul_latency + (L > 1: L + 1) edges after
        # its beat's transfer; pad to `room` after rounding, where the value is narrow
        room = cost.requant_mul_latency(self._backend.name)
        c = dsp.delay(m, en, ctrl, 1 + room - self._mul_latency + 1, "ctrl")
        out = m.d.comb if staged else m.d.sync
        with m.If(en):
            out += [dst.valid.eq(c.valid), dst.payload.last.eq(c.last)]
        lo, hi = self._lo - self._zp, self._hi - self._zp
        rnd, pad = self._rounding, room - self._mul_latency
        for lane, prod in enumerate(prods):
            # The saturation flags compare the product with the bounds moved before
            # the rounding (round_threshold), beside the rounding adder, so the clamp
            # stage is a multiplexer of registered flags instead of two compares on
            # the rounded value; the compares skip the threshold's low zero bits
            # (at_least).
            scaled = Signal(signed(max(1, len(prod) - s + 1)), name=f"scaled{lane}")
            under, over = Signal(name=f"under{lane}"), Signal(name=f"over{lane}")
            clamped = Signal(signed(signed_bits(max(abs(lo), abs(hi)))),
                             name=f"clamped{lane}")
            with m.If(en):
                m.d.sync += [scaled.eq(round_shift_const(prod, s, rnd)),
                             under.eq(~at_least(prod, round_threshold(lo, s, rnd))),
                             over.eq(at_least(prod, round_threshold(hi + 1, s, rnd)))]
            padded = dsp.delay(m, en, scaled, pad, f"scaled{lane}")
            under, over = (dsp.delay(m, en, under, pad, f"under{lane}"),
                           dsp.delay(m, en, over, pad, f"over{lane}"))
            with m.If(en):
                # in range, the rounded value fits `clamped` (the truncation is exact)
                m.d.sync += clamped.eq(Mux(under, lo, Mux(over, hi, padded)))
                out += dst.payload.data[lane].eq(clamped + self._zp)
        return m

    def _parallel(self, m, en, go, staged):
        """One full product per lane and beat: the products, and their valid/last
        (``staged``: after a register of the beat and its multipliers)."""
        src, lanes = self.i, self._lanes
        m.d.comb += src.ready.eq(go)
        c0 = _flags(m, "c0", valid=src.valid & go, last=src.payload.last)
        prods = []
        for lane in range(lanes):
            mult = _table(self._mult[lane::lanes], self._mult_shape, src.payload.group)
            acc = src.payload.acc[lane]
            if staged:
                acc = dsp.delay(m, en, acc, 1, f"acc{lane}", reset_less=True)
                if not isinstance(mult, Const):
                    mult = dsp.delay(m, en, mult, 1, f"mult{lane}", reset_less=True)
            prods.append(dsp.multiply(m, acc, mult, en, self._backend, f"mul{lane}"))
        return prods, dsp.delay(m, en, c0, self._mul_latency + staged, "c0")

    def _round_point(self):
        """``(low, shift)`` of the limb-serial path: the product ``P``'s bits from ``low``
        up are kept exactly, those below only as a sticky bit under them, and the
        value ``2 * (P >> low) + sticky`` rounds by ``shift`` to the same result as
        ``P`` by the common shift ``S`` (``S - low >= 1``: every tie and every
        half-way comparison sees the same side).  With ``S = 0`` nothing rounds."""
        return cost.requant_round_point(self._shift, self._limb_bits, self._limbs)

    def _serial(self, m, en, go):
        """One limb product per lane and cycle, least significant limb first, into a
        running sum: the values to round (see :meth:`_round_point`), and valid/last of
        their final sums."""
        src, lanes, n, w = self.i, self._lanes, self._limbs, self._limb_bits
        held = Signal.like(src.payload, name="held")
        busy = Signal()
        k = Signal(range(n), name="limb")
        # `final` (busy on the last limb) is a flip-flop set an edge ahead, so `take`
        # and `i.ready` are one LUT of flip-flops (no compare of `k` before them)
        final = Signal()
        take = Signal()
        m.d.comb += [src.ready.eq(go & (~busy | final)),
                     take.eq(src.valid & src.ready)]
        with m.If(en):
            m.d.sync += final.eq(~take & ~final & busy & (k == n - 2))
            with m.If(take):
                m.d.sync += [held.eq(src.payload), busy.eq(1), k.eq(0)]
            with m.Elif(final):
                m.d.sync += [busy.eq(0), k.eq(0)]
            with m.Elif(busy):
                m.d.sync += k.eq(k + 1)

        # The limb table is read one cycle ahead: the address of the limb multiplied
        # next cycle (limb 0 of a beat taken now, else the held beat's next limb), so
        # its registered output (a block RAM's read register) meets the held beat.
        kb = max(1, (n - 1).bit_length())
        limbs = Signal(data.ArrayLayout(unsigned(w), lanes), name="limbs")
        if cost.requant_table_block(self._mult, lanes, self._design_backend, n):
            # word (group g, limb j): limb j of every lane's multiplier, side by side
            mask = (1 << w) - 1
            words = [sum(((self._mult[g * lanes + lane] >> (w * j)) & mask) << (w * lane)
                         for lane in range(lanes)) if j < n else 0
                     for g in range(self._groups) for j in range(1 << kb)]
            m.submodules.limb_table = mem = Memory(
                shape=unsigned(w * lanes), depth=len(words), init=words,
                attrs={"ram_style": "block"})
            rd = mem.read_port()
            nk, ng = Signal(kb, name="next_limb"), Signal.like(src.payload.group,
                                                                name="next_g")
            m.d.comb += [nk.eq(Mux(take, 0, k + 1)),
                         ng.eq(Mux(take, src.payload.group, held.group)),
                         rd.addr.eq(Cat(nk, ng)), rd.en.eq(en),
                         limbs.as_value().eq(rd.data)]
        else:
            # A take loads the incoming beat's whole multiplier (a table indexed by its
            # group alone): limb 0 into `limbs`, the rest into a shift register that
            # hands out the next limb every cycle, so no lookup follows `take` or `k`
            # (a groups x limbs table behind `take` was the digits pipeline's
            # critical path on ECP5, bench/fmax.py)
            rest = Signal(data.ArrayLayout(unsigned(max(1, w * (n - 1))), lanes),
                          name="rest")
            for lane in range(lanes):
                row = _table(list(self._mult[lane::lanes]), unsigned(w * n),
                             src.payload.group)
                with m.If(en):
                    with m.If(take):
                        m.d.sync += [limbs[lane].eq(row[:w]), rest[lane].eq(row[w:])]
                    with m.Else():
                        m.d.sync += [limbs[lane].eq(rest[lane][:w]),
                                     rest[lane].eq(rest[lane] >> w)]

        ctrl = Signal(data.StructLayout({"valid": 1, "first": 1, "final": 1, "last": 1,
                                         "k": unsigned(kb)}), name="c0")
        m.d.comb += [ctrl.valid.eq(busy), ctrl.first.eq(k == 0), ctrl.final.eq(final),
                     ctrl.last.eq(held.last), ctrl.k.eq(k)]
        c = dsp.delay(m, en, ctrl, self._mul_latency, "c0")
        step = en & c.valid
        low, _ = self._round_point()
        top = w * (n - 1)           # P's bits below `top` leave the running sum
        values = []
        for lane in range(lanes):
            prod = dsp.multiply(m, held.acc[lane], limbs[lane], en, self._backend,
                                f"mul{lane}")
            # R = P >> w*j after limb j; the w bits a step shifts out are P's bits
            # w*(j-1) ... w*j - 1, final: those from `low` up are kept, those below
            # only as a sticky bit (all the rounding needs of them).
            run = Signal(signed(self._acc_bits + w + 1), name=f"run{lane}")
            with m.If(step):
                m.d.sync += run.eq(Mux(c.first, 0, run >> w) + prod)
            kept = Signal(max(0, top - low), name=f"kept{lane}")
            for p in range(low, top):
                with m.If(step & (c.k == p // w + 1)):
                    m.d.sync += kept[p - low].eq(run[p % w])
            parts = [kept, run]
            if self._shift:
                sticky = Signal(name=f"sticky{lane}")
                # bit i of a step j >= 1 is P's bit w*(j-1) + i: below `low` for j <= J_i
                below = [run[i] & (c.k <= -(-(low - i) // w)) for i in range(min(w, low))]
                with m.If(step):
                    m.d.sync += sticky.eq(Mux(c.first, 0, sticky | _any(below)))
                parts.insert(0, sticky)
            values.append(Cat(*parts).as_signed())
        done = _flags(m, "summed", valid=c.valid & c.final, last=c.last)
        return values, dsp.delay(m, en, done, 1, "summed")
