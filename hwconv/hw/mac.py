"""MacArray: the folded multiply-accumulate engine shared by Conv2D and DepthwisePointwise.

Each input beat is a vector of ``n_in`` values (a window beat: ``K*K`` taps x ``simd``
lanes, or a pixel beat).  A pixel arrives as ``groups`` consecutive beats; each beat is
held for ``folds`` cycles, and in cycle ``f`` the array computes ``PE`` dot products of
``T`` terms (lane ``p`` multiplies the inputs ``taps[p]`` by weights from a ROM row
addressed by ``(beat, fold)``).

* ``accumulate=True`` (convolution, pointwise): the ``groups`` beats of a pixel add up;
  output group ``f`` (channels ``f*PE .. f*PE+PE-1``) leaves after the pixel's last beat.
  Per-output-channel accumulators form a rotating bank of ``folds`` words of ``PE``
  values: each product sum adds to the head word, which moves to the tail, so every input
  beat is read exactly once, no address decoding is needed and the bank maps to
  shift-register LUTs.  (An input buffer of one pixel's windows, the alternative, would
  hold ``K*K*C`` values instead of ``O`` accumulators and re-read them ``O/PE`` times.)
* ``accumulate=False`` (depthwise, ``folds == 1``): every beat is its own output group.
* ``chunks > 1`` (kernel folding): each ``(beat, fold)`` step takes ``chunks`` cycles,
  lane ``p`` multiplying the ``T / chunks`` terms of chunk ``c`` in cycle ``c`` (terms
  ``c*T/chunks ..``); a per-lane partial sum adds the chunks up in the accumulator stage
  itself (no extra register stage), and the step's result enters the bank or the output
  register after its last chunk.  ``PE * T / chunks`` multipliers, and output beats at
  least ``chunks`` cycles apart (a serial requantizer can keep up, see
  :func:`hwconv.cost.requant_limbs`).  The chunk's inputs are selected before the weight
  ROM's delay line, so only ``T / chunks`` values per lane are delayed.

The first beat of a pixel starts from the bias (the caller folds the input zero point in:
``sum((x - zp) * w) + b == sum(x * w) + (b - zp * sum(w))``, the same integer, with
8-bit multiplier operands).

Pipeline (global stall, or free-running with credits, ``credit=True``: see
:class:`~hwconv.hw.fifo.CreditQueue`): weight ROM read
(:attr:`WeightRom.latency <hwconv.hw.rom.WeightRom.latency>`, the input beat delayed
alike), products (:func:`hwconv.hw.dsp.multiply`, :func:`hwconv.cost.mul_latency` of the
back end), adder tree (registers every ``levels_per_stage`` levels and after the last, see
:func:`hwconv.hw.dense.adder_tree`), accumulator result register (1), output register or
queue (1).  Throughput: one ``(beat, fold)`` step per cycle.
"""

from __future__ import annotations

import numpy as np
from amaranth import Array, Const, Module, Mux, Signal
from amaranth.hdl import Shape, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..cost import mul_latency
from ..errors import HwconvError
from ..numerics import signed_bits
from . import dsp
from .dense import adder_tree, group_bias, start_register
from .fifo import PipelineEnd
from .requant import acc_layout
from .rom import WeightRom

__all__ = ["MacArray", "vector_layout", "value_bound"]


def vector_layout(elem, n):
    """Input beat of a :class:`MacArray`: ``n`` values plus ``last``."""
    return data.StructLayout({"data": data.ArrayLayout(elem, n), "last": 1})


def value_bound(elem):
    """Largest magnitude of a value of shape ``elem``."""
    elem = Shape.cast(elem)
    return (1 << (elem.width - 1)) if elem.signed else (1 << elem.width) - 1


class MacArray(wiring.Component):
    """``PE`` dot products per cycle, folded over ``groups`` beats x ``folds`` cycles.

    Parameters
    ----------
    in_elem : Shape
        Input value shape.
    taps : list of list of int
        ``taps[p]``: the input indices lane ``p`` multiplies (same length ``T`` for all).
    n_in : int
        Values per input beat.
    weights : int array, shape (groups * folds, PE, T)
        Row ``g * folds + f`` holds the weights of beat ``g``, fold ``f``.
    bias : int array, shape (output groups, PE)
        Start value of each output group's accumulators.
    groups, folds : int
    accumulate : bool
    chunks : int
        Cycles per ``(beat, fold)`` step; divides ``T``.
    weight_bits, acc_bits : int
    levels_per_stage : int
        Adder-tree levels between registers (0: combinational tree).
    backend : str
        Multiplier back end (:mod:`hwconv.hw.dsp`).
    credit : bool
        Free-running pipeline with a :class:`~hwconv.hw.fifo.CreditQueue` on the output
        (no stall signal to fan out; for fast clocks), instead of the global stall
        (fewer cells: no queue).  Same latency and throughput.

    Attributes
    ----------
    i : In(stream.Signature(vector_layout(in_elem, n_in)))
    o : Out(stream.Signature(acc_layout(acc_bits, PE, output groups)))
    multipliers : int
        ``PE * T / chunks``.
    """

    def __init__(self, in_elem, taps, n_in, weights, bias, *, groups, folds, accumulate,
                 weight_bits, acc_bits, levels_per_stage=1, backend="generic", chunks=1,
                 credit=False):
        weights = np.asarray(weights, dtype=np.int64)
        bias = np.asarray(bias, dtype=np.int64)
        pe, t = len(taps), len(taps[0])
        if weights.shape != (groups * folds, pe, t):
            raise HwconvError(f"MacArray: weights shape {weights.shape} != "
                              f"{(groups * folds, pe, t)}")
        out_groups = folds if accumulate else groups
        if not accumulate and folds != 1:
            raise HwconvError("MacArray: folds must be 1 without accumulation")
        if bias.shape != (out_groups, pe):
            raise HwconvError(f"MacArray: bias shape {bias.shape} != {(out_groups, pe)}")
        if not isinstance(chunks, int) or isinstance(chunks, bool) or chunks < 1 or t % chunks:
            raise HwconvError(f"MacArray: chunks={chunks!r} must be a positive integer "
                              f"dividing the {t} terms per lane")
        if not isinstance(levels_per_stage, int) or levels_per_stage < 0:
            raise HwconvError(f"MacArray: levels_per_stage={levels_per_stage!r} must be an "
                              f"integer >= 0")
        self._in_elem = Shape.cast(in_elem)
        self._taps, self._n_in = [list(tp) for tp in taps], n_in
        self._weights, self._bias = weights, bias
        self._groups, self._folds, self._accumulate = groups, folds, accumulate
        self._wbits, self._acc_bits = weight_bits, acc_bits
        self._lps, self._backend = levels_per_stage, dsp.backend(backend)
        self._chunks = chunks
        self._credit = bool(credit)
        super().__init__({
            "i": In(stream.Signature(vector_layout(self._in_elem, n_in))),
            "o": Out(stream.Signature(acc_layout(acc_bits, pe, out_groups))),
        })

    @property
    def multipliers(self):
        return len(self._taps) * len(self._taps[0]) // self._chunks

    def elaborate(self, platform):
        m = Module()
        # No input register slice: two more beats of buffering between a line buffer and
        # a folded array would change the frame time hwconv.cost.window_cycles predicts.
        src = self.i
        pe, t, kc = len(self._taps), len(self._taps[0]), self._chunks
        tc = t // kc
        groups, folds = self._groups, self._folds
        steps = groups * folds * kc

        # Stall mode: every register advances on `en`.  Credit mode: the registers run
        # free (en = 1) and a step that will write an output first takes a credit of
        # the output queue (`go`), so nothing downstream reaches back into the array.
        out = PipelineEnd(m, wiring.flipped(self.o), self._credit)
        en = out.en

        # Issue: step through (beat g, fold f, chunk c); the beat is taken in its last
        # fold's last chunk.
        c = Signal(range(kc), name="chunk")
        f = Signal(range(folds), name="fold")
        g = Signal(range(groups), name="beat")
        addr = Signal(range(steps), name="waddr")
        step = Signal()
        # Two flags of the position: `beat_done`, the step takes the beat (last fold,
        # last chunk); `produces`, it writes an output (last beat of a pixel, last
        # chunk).  Credit mode (fast clocks): flip-flops loaded from the counters' next
        # state, so `i.ready` and `go`, which fan out to the input's register enables,
        # are one LUT of flip-flops.  Stall mode: logic on the counters.
        c_n, f_n, g_n = Signal.like(c), Signal.like(f), Signal.like(g)
        m.d.comb += [c_n.eq(c), f_n.eq(f), g_n.eq(g)]

        def is_final(g):        # the pixel's last beat
            return (g == groups - 1) if self._accumulate else 1

        def flags(c, f, g):
            return (f == folds - 1) & (c == kc - 1), is_final(g) & (c == kc - 1)

        (beat_done, produces), (done_n, produces_n) = dsp.position_flags(
            m, self._credit, flags, (c, f, g), (c_n, f_n, g_n), ("beat_done", "produces"))
        out_group = f if self._accumulate else g
        first = (g == 0) if self._accumulate else 1
        final = is_final(g)
        go = out.go(produces)
        m.d.comb += [src.ready.eq(out.ready("i_ready", produces, beat_done,
                                            (produces_n, done_n))),
                     step.eq(go & src.valid)]
        with m.If(step):
            m.d.comb += c_n.eq(Mux(c == kc - 1, 0, c + 1))
            m.d.sync += addr.eq(Mux(addr == steps - 1, 0, addr + 1))
            with m.If(c == kc - 1):
                m.d.comb += f_n.eq(Mux(f == folds - 1, 0, f + 1))
            with m.If(beat_done):
                m.d.comb += g_n.eq(Mux(g == groups - 1, 0, g + 1))
        m.d.sync += [c.eq(c_n), f.eq(f_n), g.eq(g_n)]

        ctrl = data.StructLayout({"valid": 1, "first": 1, "final": 1, "last": 1,
                                  "head": 1, "tail": 1,
                                  "group": range(max(folds, groups))})
        c0 = Signal(ctrl)
        m.d.comb += [c0.valid.eq(step), c0.first.eq(first), c0.final.eq(final),
                     c0.last.eq(src.payload.last & beat_done),
                     c0.head.eq(c == 0), c0.tail.eq(c == kc - 1),
                     c0.group.eq(out_group)]
        c1 = dsp.delay(m, en, c0, WeightRom.latency, "ctrl_in")

        # The inputs a chunk multiplies, selected before the ROM's delay line: one value
        # per distinct (lane, term) source sequence over the chunks.
        sources = {}
        for lane_taps in self._taps:
            for k in range(tc):
                sources.setdefault(tuple(lane_taps[j * tc + k] for j in range(kc)),
                                   len(sources))
        sel = Signal(data.ArrayLayout(self._in_elem, len(sources)), name="x_sel")
        for seq, n in sources.items():
            if kc == 1:
                m.d.comb += sel[n].eq(src.payload.data[seq[0]])
            else:
                m.d.comb += sel[n].eq(Array(src.payload.data[j] for j in seq)[c])
        x1 = dsp.delay(m, en, sel, WeightRom.latency, "x_in")

        wshape = signed(self._wbits)
        rows = (self._weights.reshape(groups * folds, pe, kc, tc).transpose(0, 2, 1, 3)
                .reshape(steps, pe * tc))
        if steps == 1:
            def weight(p, k):
                return Const(int(rows[0, p * tc + k]), wshape)
        else:
            m.submodules.weights = rd = WeightRom(rows, self._wbits)
            m.d.comb += [rd.addr.eq(addr), rd.en.eq(en)]

            def weight(p, k):
                return rd.data[p * tc + k]

        # Products, then the adder tree per lane.
        xb = value_bound(self._in_elem)
        pbound = xb * (1 << (self._wbits - 1))
        sums = []
        regs = 0
        for p, lane_taps in enumerate(self._taps):
            prods = []
            for k in range(tc):
                x = x1[sources[tuple(lane_taps[j * tc + k] for j in range(kc))]]
                prod = dsp.multiply(m, x, weight(p, k), en, self._backend, f"mul_{p}_{k}")
                prods.append(prod[:signed_bits(pbound)].as_signed())
            total, _, regs = adder_tree(m, prods, [pbound] * tc, en, self._lps, f"tree{p}")
            sums.append(total)
        # ct_pre is ct one edge earlier: the step whose start value (bias, bank word
        # or chunk partial sum) is chosen now (start_register)
        ct_pre = dsp.delay(m, en, c1, mul_latency(self._backend.name) + regs - 1, "ctrl")
        ct = dsp.delay(m, en, ct_pre, 1, "ctrl_acc")

        # Accumulate (chunk partial sum, rotating bank) and register the output.
        acc_shape = signed(self._acc_bits)
        banked = self._accumulate and groups > 1
        bank = [[Signal(acc_shape, name=f"bank{w}_{p}", reset_less=True) for p in range(pe)]
                for w in range(folds)] if banked else None
        part = [Signal(acc_shape, name=f"part{p}", reset_less=True) for p in range(pe)] \
            if kc > 1 else None
        # Every step's sum lands in a result register (`res`), which feeds the output
        # register or queue: the queue's multiplexers stay off the accumulator's adder.
        # The bank's newest word, or the partial sum, already holds an output step's
        # sum an edge later, so `res` is one of them where there is one.
        res_ctrl = data.StructLayout({"valid": 1, "group": ct.group.shape(), "last": 1})
        res_c = Signal(res_ctrl, name="res_ctrl")
        if banked:
            res = bank[folds - 1]
        elif part is not None:
            res = part
        else:
            res = [Signal(acc_shape, name=f"res{p}", reset_less=True) for p in range(pe)]
        own_res = not banked and part is None

        def start_value(p, ctl, bank0, part_sum):
            """Lane ``p``'s start (bias, bank word or partial sum) for step ``ctl``."""
            v = group_bias([int(b) for b in self._bias[:, p]], acc_shape, ctl.group)
            if banked:
                v = Mux(ctl.first, v, bank0)
            if part is not None:
                v = Mux(ctl.head, v, part_sum)
            return v

        with m.If(en):
            m.d.sync += [res_c.valid.eq(ct.valid & ct.final & ct.tail),
                         res_c.group.eq(ct.group), res_c.last.eq(ct.last)]
            for p in range(pe):
                new = Signal(acc_shape, name=f"acc_next{p}")
                if self._credit:
                    # the next step's, from the state as this edge leaves it, into a
                    # register (for fast clocks; the stall mode saves its flip-flops)
                    shifts = ct.valid & ct.tail
                    start = start_value(
                        p, ct_pre,
                        banked and Mux(shifts, new if folds == 1 else bank[1][p], bank[0][p]),
                        part is not None and Mux(ct.valid, new, part[p]))
                    if not isinstance(start, Const):
                        start = start_register(m, en, start, f"start{p}")
                else:
                    start = start_value(p, ct, banked and bank[0][p],
                                        part is not None and part[p])
                m.d.comb += new.eq(start + sums[p])
                if own_res:
                    m.d.sync += res[p].eq(new)
                if part is not None:
                    with m.If(ct.valid):
                        m.d.sync += part[p].eq(new)
                if banked:
                    with m.If(ct.valid & ct.tail):
                        for w in range(folds):
                            m.d.sync += bank[w][p].eq(new if w == folds - 1 else bank[w + 1][p])
        out.write(WeightRom.latency + mul_latency(self._backend.name) + regs + 1,
                  step & produces, res_c.valid,
                  lambda p: [p.group.eq(res_c.group), p.last.eq(res_c.last),
                             *[p.acc[k].eq(res[k]) for k in range(pe)]])
        return m
