"""Pool-then-activate stage: k x k max-pool with stride s, then the activation.

Max-pooling first means the activation (a multiplier per lane for LeakyReLU or a scale
change) runs on ``k*k`` (``s*s`` for overlapping windows) times fewer values; the mapper
only moves an activation behind a pool where that is exact (monotone non-decreasing
activation, see :func:`hwconv.transforms.pool_before_activate`).  The stage itself
computes exactly :func:`hwconv.golden.pool_activate`.

* Pooling: a :class:`~hwconv.hw.linebuffer.LineBuffer` padded with the input type's
  minimum (padding never wins: every window holds a real value), then a per-lane
  comparator tree with a register every ``levels_per_stage`` levels and after the last.
* Activation (:class:`ActivationUnit`): ``d = x - zp_in``; ``r = round_half_up(d * M /
  2**s)`` with the positive or the negative branch's fixed-point constant ``(M, s)``
  (LeakyReLU's alpha lives in the negative multiplier); ``y = clamp(zp_out + r, lo,
  hi)``.  Both branches multiply by constants (shift-and-add, no DSP).  A pure clamp
  (ReLU/ReLU6/Clip on an unchanged scale, ``act.is_clamp``) is one compare stage.

Throughput: one beat per cycle; a frame takes the line buffer's slot count,
``H * W * C / lanes`` cycles (:func:`hwconv.cost.pool_activate`).
"""

from __future__ import annotations

import numpy as np
from amaranth import Const, Module, Mux, Signal
from amaranth.hdl import signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import cost
from ..errors import HwconvError
from ..numerics import DTYPES
from ..quant import QActivation
from .linebuffer import LineBuffer, window_signature
from .requant import clamp, round_shift_const
from .fifo import UnitOutput
from .figures import StageFigures
from .stream import beat_signature, elem_shape

__all__ = ["PoolActivate", "ActivationUnit", "WindowMax"]


def _scalar(requant, what):
    mult, shift = requant.multiplier.ravel(), requant.shift.ravel()
    if len(set(mult.tolist())) != 1 or len(set(shift.tolist())) != 1:
        raise HwconvError(f"ActivationUnit: {what} requantizer must be per-tensor (one "
                          f"multiplier and shift)")
    return int(mult[0]), int(shift[0])


class ActivationUnit(wiring.Component):
    """A :class:`~hwconv.quant.QActivation` on a beat stream, bit-exact with
    :func:`hwconv.golden.activation`.

    Parameters
    ----------
    act : hwconv.quant.QActivation
        Per-tensor ``pos``/``neg`` requantizers (as the quantizer makes them).
    lanes : int
        Values per beat.
    credit : bool
        Run free on the credits of an output :class:`~hwconv.hw.fifo.CreditQueue`
        instead of stalling (:class:`~hwconv.hw.fifo.UnitOutput`).

    Attributes
    ----------
    i : In(beat_signature(act.in_q elem, lanes))
    o : Out(beat_signature(act.out_q elem, lanes))
    latency : int
        Register stages (1 for a pure clamp, else 3).
    """

    def __init__(self, act, lanes, *, credit=False):
        if not isinstance(act, QActivation):
            raise HwconvError(f"ActivationUnit: act must be a QActivation, not "
                              f"{type(act).__name__}")
        self._act, self._lanes = act, lanes
        self._pos = _scalar(act.pos, "positive")
        self._neg = _scalar(act.neg, "negative")
        self._clamp = act.is_clamp
        self._credit = bool(credit)
        super().__init__({
            "i": In(beat_signature(elem_shape(act.in_q.dtype), lanes)),
            "o": Out(beat_signature(elem_shape(act.out_q.dtype), lanes)),
        })

    @property
    def latency(self):
        return 1 if self._clamp else cost.ACTIVATE_LATENCY

    def elaborate(self, platform):
        m = Module()
        act, lanes = self._act, self._lanes
        out = UnitOutput(m, self, self.latency, self._credit)
        x = self.i.payload.data
        zp_in, zp_out = act.in_q.zero_point, act.out_q.zero_point

        if self._clamp:
            rectify = self._neg[0] == 0     # ReLU: below the zero point maps to it
            out.write(out.valid, self.i.payload.last, [
                clamp(Mux(x[lane] < zp_in, zp_in, x[lane]) if rectify else x[lane],
                      act.lo, act.hi) for lane in range(lanes)])
            return m

        (pm, ps), (nm, ns) = self._pos, self._neg
        v1, v2, last1, last2 = Signal(), Signal(), Signal(), Signal()
        prod_bits = 10 + max(pm, nm, 1).bit_length() + 1
        results = []
        with m.If(out.en):
            m.d.sync += [v1.eq(out.valid), v2.eq(v1),
                         last1.eq(self.i.payload.last), last2.eq(last1)]
            for lane in range(lanes):
                d = Signal(signed(10), name=f"d{lane}")
                m.d.comb += d.eq(x[lane] - zp_in)
                neg1 = Signal(name=f"neg{lane}")
                pprod = Signal(signed(prod_bits), name=f"pos_prod{lane}")
                nprod = Signal(signed(prod_bits), name=f"neg_prod{lane}")
                m.d.sync += [neg1.eq(d < 0), pprod.eq(d * Const(pm)), nprod.eq(d * Const(nm))]
                r = Signal(signed(prod_bits), name=f"r{lane}")
                m.d.sync += r.eq(Mux(neg1, round_shift_const(nprod, ns, act.neg.rounding),
                                     round_shift_const(pprod, ps, act.pos.rounding)))
                results.append(clamp(r + zp_out, act.lo, act.hi))
        out.write(v2, last2, results)
        return m


def _greater(a, b):
    """``a > b`` as the sign of ``b - a`` (one word wider, so it cannot overflow).

    Yosys maps ``a > b`` on ECP5 to two carry chains, each cut by nextpnr to bring its
    carry out into the fabric, then a LUT and a mux: 7.6 ns alone on the digits
    pipeline's pool stage (``bench/fmax.py``).  The difference is one chain whose top
    sum bit is the answer."""
    diff = b - a
    return diff[len(diff) - 1]


class WindowMax(wiring.Component):
    """Per-lane maximum of each window beat (a comparator tree, pipelined).

    ``credit``: run free on the credits of an output
    :class:`~hwconv.hw.fifo.CreditQueue` instead of stalling
    (:class:`~hwconv.hw.fifo.UnitOutput`).

    Attributes
    ----------
    i : In(window_signature(elem, lanes, taps))
    o : Out(beat_signature(elem, lanes))
    latency : int
        Register stages (:func:`hwconv.cost.max_tree_stages`): one per
        ``levels_per_stage`` comparator levels and one after the last, then the output.
        A register holds its level's operands and comparison results; the selects
        follow it.
    """

    def __init__(self, elem, lanes, taps, levels_per_stage=1, *, credit=False):
        self._elem, self._lanes, self._taps = elem, lanes, taps
        self._lps, self._credit = levels_per_stage, bool(credit)
        super().__init__({"i": In(window_signature(elem, lanes, taps)),
                          "o": Out(beat_signature(elem, lanes))})

    @property
    def latency(self):
        return cost.max_tree_stages(self._taps, self._lps)

    def elaborate(self, platform):
        m = Module()
        out = UnitOutput(m, self, self.latency, self._credit)
        en, valid, last = out.en, out.valid, self.i.payload.last
        terms = [[self.i.payload.data[t][lane] for t in range(self._taps)]
                 for lane in range(self._lanes)]

        def register(rows, shape, tag, control=True):
            """``rows`` (per lane) registered; ``control``: valid and last too."""
            nonlocal valid, last
            regs = [[Signal(shape, name=f"{tag}_{lane}_{k}") for k in range(len(vals))]
                    for lane, vals in enumerate(rows)]
            with m.If(en):
                for r, vals in zip(regs, rows):
                    m.d.sync += [a.eq(b) for a, b in zip(r, vals)]
            if control:
                v, lst = Signal(name=f"valid_{tag}"), Signal(name=f"last_{tag}")
                with m.If(en):
                    m.d.sync += [v.eq(valid), lst.eq(last)]
                valid, last = v, lst
            return regs

        def select(rows, gts):
            """Each pair's winner by its comparison; an odd last term passes."""
            return [[Mux(gt[k // 2], vals[k], vals[k + 1])
                     for k in range(0, len(vals) - 1, 2)]
                    + ([vals[-1]] if len(vals) % 2 else []) for vals, gt in zip(rows, gts)]

        # A level is its comparisons; the selects that act on them open the next level.
        # So a register boundary cuts between a comparison's carry chain and its select,
        # and each cycle holds a select then a compare (one LUT before one chain) where
        # compare-then-select put two chains, a LUT and a mux in series: the critical
        # path of the pool stages on ECP5 (bench/fmax.py, issue 8).  Same register count
        # as registering the winners, so the same latency.
        gts, levels = None, cost.tree_levels(self._taps)
        for level in range(1, levels + 1):
            if gts is not None:
                terms = select(terms, gts)
            gts = [[_greater(vals[k], vals[k + 1]) for k in range(0, len(vals) - 1, 2)]
                   for vals in terms]
            # a register after the last level too: into a credit queue the last
            # comparison would otherwise meet the queue's own multiplexers
            if cost.tree_register_after(level, levels, self._lps):
                gts = register(gts, 1, f"gt_l{level}", control=False)
                terms = register(terms, self._elem, f"max_l{level}")
        if gts is not None:
            terms = select(terms, gts)
        out.write(valid, last, [vals[0] for vals in terms])
        return m


class PoolActivate(StageFigures, wiring.Component):
    """Max-pool (optional) then activation (optional) on a ``(H, W, C)`` stream.

    Parameters
    ----------
    pool : hwconv.ir.MaxPool or None
    act : hwconv.quant.QActivation or None
    in_shape : (H, W, C)
    lanes : int
        Channels per beat, in and out; divides ``C``.
    dtype : {"int8", "uint8"} or None
        Input type; taken from ``act.in_q`` when there is an activation, required
        otherwise.
    levels_per_stage : int
        Comparator levels between pipeline registers (0: combinational tree).
    skid : bool
        ``True`` (default, for fast clocks): the line buffer, comparator tree and
        activation each run free on the credits of a small output queue
        (:class:`~hwconv.hw.fifo.CreditQueue`), so no stall net spans the stage and the
        consumer's ``ready`` reaches none of its registers.  ``False``: they stall
        together on the consumer's ``ready`` (fewer flip-flops, for small parts).  The
        same latency, and one beat per cycle into a consumer that keeps up, either way.

    Attributes
    ----------
    i : In(beat_signature(in elem, lanes))
    o : Out(beat_signature(out elem, lanes))
    out_shape : tuple
    cycles_per_frame, latency, linebuffer_words
        As :func:`hwconv.cost.pool_activate`.
    multipliers : int
        0 (LeakyReLU's constant multipliers are shift-and-add logic).
    """

    def __init__(self, pool, act, in_shape, *, lanes=1, dtype=None, levels_per_stage=1,
                 skid=True):
        self._cost = cost.pool_activate(pool, act, in_shape, lanes=lanes, dtype=dtype,
                                        levels_per_stage=levels_per_stage)
        self._dtype = act.in_q.dtype if act is not None else dtype
        self._pool, self._act = pool, act
        self._in_shape, self._lanes, self._lps = tuple(in_shape), lanes, levels_per_stage
        self._skid = bool(skid)
        if pool is not None:
            self._geo = cost.window("PoolActivate", in_shape, pool.kernel, pool.stride,
                                    pool.padding, 1, lanes)
            self._out_shape = self._geo.out_shape
        else:
            self._geo, self._out_shape = None, self._in_shape
        out_dtype = act.out_q.dtype if act is not None else self._dtype
        super().__init__({
            "i": In(beat_signature(elem_shape(self._dtype), lanes)),
            "o": Out(beat_signature(elem_shape(out_dtype), lanes)),
        })

    @property
    def out_shape(self):
        return self._out_shape

    @property
    def multipliers(self):
        return 0

    @property
    def tail_beats(self):
        return self._geo.tail_beats if self._geo else 0

    def elaborate(self, platform):
        m = Module()
        src = wiring.flipped(self.i)
        if self._pool is not None:
            elem = elem_shape(self._dtype)
            m.submodules.window = lb = LineBuffer(self._pool, self._in_shape,
                                                  lanes=self._lanes, dtype=self._dtype,
                                                  pad_value=DTYPES[self._dtype][0],
                                                  credit=self._skid, lookahead=self._skid)
            taps = int(np.prod(self._pool.kernel))
            m.submodules.max = mx = WindowMax(elem, self._lanes, taps, self._lps,
                                              credit=self._skid)
            wiring.connect(m, src, lb.i)
            wiring.connect(m, lb.o, mx.i)
            src = mx.o
        if self._act is not None:
            m.submodules.act = au = ActivationUnit(self._act, self._lanes, credit=self._skid)
            wiring.connect(m, src, au.i)
            src = au.o
        wiring.connect(m, src, wiring.flipped(self.o))
        return m
