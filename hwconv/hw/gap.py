"""Global average pooling stage: per-channel sums over a frame, then the shared requantizer.

The ``C / lanes`` channel groups' accumulators form a rotating bank: each input beat adds
to the word at the head and moves it to the tail, so the bank needs no address decoding
(Yosys can map it to shift-register LUTs).  On a frame's last pixel the finished sum goes
to the requantizer and the head restarts, so frames follow back to back at one beat per
cycle.  The input zero point is folded into the restart value:
``sum(x - zp) == -H*W*zp + sum(x)``.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.hdl import signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import cost
from ..errors import HwconvError
from ..numerics import signed_bits
from ..quant import QGlobalAvgPool
from .requant import Requantizer
from .figures import StageFigures
from .stream import beat_signature, elem_shape

__all__ = ["GlobalAvgPool"]


class GlobalAvgPool(StageFigures, wiring.Component):
    """Stage for a :class:`~hwconv.quant.QGlobalAvgPool`: ``(H, W, C)`` to ``(1, 1, C)``.

    Parameters
    ----------
    op : hwconv.quant.QGlobalAvgPool
    in_shape : (H, W, C)
    lanes : int
        Channels per beat in and out; divides ``C``.

    Attributes
    ----------
    i : In(beat_signature(in elem, lanes))
    o : Out(beat_signature(out elem, lanes))
    cycles_per_frame : int
        ``H * W * C / lanes`` (one input beat per cycle).
    latency : int
        Clock edges from a frame's first input beat to its first output beat, no stalls.
    multipliers : int
        0 (the requantizer has ``lanes``, see ``requant_multipliers``).
    storage_words : int
        ``C`` accumulators.
    cost : hwconv.cost.StageCost
        All of these, from :func:`hwconv.cost.global_avg_pool`.
    acc_bits : int
    backend : str
        Multiplier back end of the requantizer (:mod:`hwconv.hw.dsp`).
    skid : bool
        The requantizer runs free on credits of its output queue, or stalls and ends in
        a plain register (:class:`~hwconv.hw.requant.Requantizer`).
    """

    def __init__(self, op, in_shape, *, lanes=1, backend="generic", skid=True):
        if not isinstance(op, QGlobalAvgPool):
            raise HwconvError(f"GlobalAvgPool: op must be a QGlobalAvgPool, "
                              f"not {type(op).__name__}")
        self._cost = cost.global_avg_pool(op, in_shape, lanes, backend=backend)
        self._backend, self._skid = backend, skid
        in_shape = tuple(int(d) for d in in_shape)
        h, w, c = in_shape
        self._op, self._in_shape, self._lanes = op, in_shape, lanes
        self._groups = c // lanes
        self._pixels = h * w
        zp = op.in_q.zero_point
        self._restart = -self._pixels * zp
        self._acc_bound = self._pixels * (max(abs(op.in_q.qmin), abs(op.in_q.qmax)) + abs(zp))
        self._in_elem = elem_shape(op.in_q.dtype)
        self._out_elem = elem_shape(op.out_q.dtype)
        super().__init__({
            "i": In(beat_signature(self._in_elem, lanes)),
            "o": Out(beat_signature(self._out_elem, lanes)),
        })

    @property
    def acc_bits(self):
        return signed_bits(self._acc_bound)

    @property
    def storage_words(self):
        return self._cost.buffer_words

    def elaborate(self, platform):
        m = Module()
        op, lanes, groups = self._op, self._lanes, self._groups
        acc_bits = self.acc_bits

        m.submodules.requant = rq = Requantizer(
            op.requant, self._in_shape[2], lanes, acc_bits, op.out_q.zero_point,
            op.out_q.qmin, op.out_q.qmax, self._out_elem, backend=self._backend,
            skid=self._skid)
        wiring.connect(m, rq.o, wiring.flipped(self.o))

        en = Signal()
        m.d.comb += [en.eq(~rq.i.valid | rq.i.ready), self.i.ready.eq(en)]

        pixel = Signal(range(self._pixels), name="pixel")
        group = Signal(range(groups), name="group")
        frame_end = Signal()
        m.d.comb += frame_end.eq(pixel == self._pixels - 1)

        bank = [[Signal(signed(acc_bits), name=f"acc_g{g}_l{lane}", init=self._restart)
                 for lane in range(lanes)] for g in range(groups)]
        take = self.i.valid & self.i.ready
        with m.If(en):
            m.d.sync += rq.i.valid.eq(take & frame_end)
        with m.If(take):
            m.d.sync += [group.eq(Mux(group == groups - 1, 0, group + 1)),
                         rq.i.payload.group.eq(group),
                         rq.i.payload.last.eq(frame_end & (group == groups - 1))]
            with m.If(group == groups - 1):
                m.d.sync += pixel.eq(Mux(frame_end, 0, pixel + 1))
            for lane in range(lanes):
                total = bank[0][lane] + self.i.payload.data[lane]
                m.d.sync += [rq.i.payload.acc[lane].eq(total),
                             bank[-1][lane].eq(Mux(frame_end, self._restart, total))]
                for g in range(groups - 1):
                    m.d.sync += bank[g][lane].eq(bank[g + 1][lane])
        return m
