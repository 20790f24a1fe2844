"""Residual Add stage with a skip FIFO, and the FIFO depth rule.

``a`` is the skip operand: it reaches the join through a FIFO (``SyncFIFOBuffered``, so
block RAM when deep) because the main path ``b`` holds many beats in flight (a conv's line
buffer, pipelines).  The join takes one beat of each when both are present; then
``y = sat(zp_out + round_shift((a - zp_a) * Ma + (b - zp_b) * Mb, s))`` in three register
stages, with the zero points folded into one constant and the rounding (half up, or half
to even for imported models) applied at the end.

The skip FIFO's depth is a constructor parameter; :func:`hwconv.cost.skip_fifo_depth`
(re-exported here) gives it from the latency difference of the two paths, with the
bound explained there.
"""

from __future__ import annotations

from amaranth import Const, Module, Signal
from amaranth.hdl import signed
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .. import cost
from ..cost import SKIP_FIFO_READ_LATENCY, skip_fifo_depth
from ..errors import HwconvError
from ..numerics import signed_bits
from ..quant import QAdd
from .requant import clamp, round_shift_const
from .figures import StageFigures
from .stream import beat_signature, elem_shape

__all__ = ["Add", "skip_fifo_depth"]


class Add(StageFigures, wiring.Component):
    """Residual join for a :class:`~hwconv.quant.QAdd`.

    Parameters
    ----------
    op : hwconv.quant.QAdd
    in_shape : tuple
        Shape of each operand, channels last.
    lanes : int
        Channels per beat on ``a``, ``b`` and ``o``; divides the channels.
    skip_depth : int
        Skip FIFO depth in beats on ``a`` (see :func:`skip_fifo_depth`); 0 joins ``a``
        directly.

    Attributes
    ----------
    a : In(beat_signature(a elem, lanes))
        Skip operand (its ``last`` is not used; frames come from ``b``).
    b : In(beat_signature(b elem, lanes))
        Main-path operand.
    o : Out(beat_signature(out elem, lanes))
    cycles_per_frame : int
        One beat per cycle: ``H * W * C / lanes``.
    latency : int
        Clock edges from the join of ``b``'s first beat (``a``'s already waiting) to the
        first output beat.
    skip_latency : int
        The same from ``a``'s first beat with ``b``'s waiting (adds the FIFO's).
    multipliers : int
        0 (no MAC array); the ``2 * lanes`` constant multipliers that rescale the
        operands are ``requant_multipliers``.
    storage_words : int
        ``skip_depth * lanes`` values in the skip FIFO.
    cost : hwconv.cost.StageCost
        All of these, from :func:`hwconv.cost.add`.
    """

    def __init__(self, op, in_shape, *, lanes=1, skip_depth=SKIP_FIFO_READ_LATENCY + 1):
        if not isinstance(op, QAdd):
            raise HwconvError(f"Add: op must be a QAdd, not {type(op).__name__}")
        self._cost = cost.add(op, in_shape, lanes, skip_depth)
        if op.mult_a < 0 or op.mult_b < 0 or op.shift < 0:
            raise HwconvError(f"Add: multipliers ({op.mult_a}, {op.mult_b}) and shift "
                              f"{op.shift} must be >= 0")
        self._op, self._in_shape, self._lanes = op, tuple(in_shape), lanes
        self._skip_depth = skip_depth
        self._a_elem = elem_shape(op.a_q.dtype)
        self._b_elem = elem_shape(op.b_q.dtype)
        self._out_elem = elem_shape(op.out_q.dtype)
        super().__init__({
            "a": In(beat_signature(self._a_elem, lanes)),
            "b": In(beat_signature(self._b_elem, lanes)),
            "o": Out(beat_signature(self._out_elem, lanes)),
        })

    @property
    def skip_latency(self):
        return self.latency + (SKIP_FIFO_READ_LATENCY if self._skip_depth else 0)

    @property
    def storage_words(self):
        return self._cost.buffer_words

    @property
    def skip_depth(self):
        return self._skip_depth

    def elaborate(self, platform):
        m = Module()
        op, lanes = self._op, self._lanes
        en = Signal()
        m.d.comb += en.eq(~self.o.valid | self.o.ready)

        if self._skip_depth:
            width = self.a.payload.data.shape().size
            m.submodules.skip = fifo = SyncFIFOBuffered(width=width, depth=self._skip_depth)
            m.d.comb += [fifo.w_data.eq(self.a.payload.data), fifo.w_en.eq(self.a.valid),
                         self.a.ready.eq(fifo.w_rdy)]
            a_valid, a_data = fifo.r_rdy, self.a.payload.data.shape()(fifo.r_data)
        else:
            fifo = None
            a_valid, a_data = self.a.valid, self.a.payload.data
        join = Signal()
        m.d.comb += [join.eq(a_valid & self.b.valid & en),
                     self.b.ready.eq(a_valid & en)]
        if fifo is not None:
            m.d.comb += fifo.r_en.eq(self.b.valid & en)
        else:
            m.d.comb += self.a.ready.eq(self.b.valid & en)

        # (a - zp_a) * Ma + (b - zp_b) * Mb == a * Ma + b * Mb + k; rounding at the end
        half = (1 << (op.shift - 1)) if op.shift else 0
        k = - op.a_q.zero_point * op.mult_a - op.b_q.zero_point * op.mult_b
        bound_a = 256 * op.mult_a
        bound_b = 256 * op.mult_b
        bound_sum = bound_a + bound_b + abs(k) + half
        v1, v2 = Signal(), Signal()
        last1, last2 = Signal(), Signal()
        with m.If(en):
            m.d.sync += [v1.eq(join), v2.eq(v1), self.o.valid.eq(v2),
                         last1.eq(self.b.payload.last), last2.eq(last1),
                         self.o.payload.last.eq(last2)]
        for lane in range(lanes):
            pa = Signal(signed(signed_bits(bound_a)), name=f"pa{lane}")
            pb = Signal(signed(signed_bits(bound_b)), name=f"pb{lane}")
            total = Signal(signed(signed_bits(bound_sum)), name=f"sum{lane}")
            with m.If(en):
                m.d.sync += [
                    pa.eq(a_data[lane] * Const(op.mult_a)),
                    pb.eq(self.b.payload.data[lane] * Const(op.mult_b)),
                    total.eq(pa + pb + k),
                    self.o.payload.data[lane].eq(
                        clamp(round_shift_const(total, op.shift, op.rounding)
                              + op.out_q.zero_point, op.out_q.qmin, op.out_q.qmax)),
                ]
        return m
