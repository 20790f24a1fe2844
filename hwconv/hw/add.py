"""Residual Add stage with a skip FIFO, and the FIFO depth rule.

``a`` is the skip operand: it reaches the join through a FIFO (``SyncFIFOBuffered``, so
block RAM when deep) because the main path ``b`` holds many beats in flight (a conv's line
buffer, pipelines).  The join takes one beat of each when both are present; then
``y = sat(zp_out + round_shift((a - zp_a) * Ma + (b - zp_b) * Mb, s))`` in three register
stages, with the zero points and the rounding half folded into one constant.

Skip FIFO depth (:func:`skip_fifo_depth`): a fork feeding both paths can only hand beat
``k + D`` to the main path while the skip FIFO still holds beat ``k`` if the FIFO has room
for ``D + 1`` beats.  A main path that needs ``D`` beats beyond ``k`` before it emits beat
``k`` (a line buffer) deadlocks with less; one that merely delays by ``L`` cycles runs at
full rate only with ``L + 1``.  Both ``D`` and the beats passed in ``L`` cycles are at most
``latency_main_path / cycles_per_beat``, hence the rule.  The skip FIFO itself takes
``SKIP_FIFO_READ_LATENCY`` edges from write to read, so a main path shorter than that
(never the case with a conv on it) makes ``b`` wait and halves the rate.
"""

from __future__ import annotations

import math

from amaranth import Const, Module, Signal
from amaranth.hdl import signed
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..errors import HwconvError
from ..numerics import signed_bits
from ..quant import QAdd
from .requant import clamp
from .stream import beat_signature, check_lanes, elem_shape

__all__ = ["Add", "skip_fifo_depth", "SKIP_FIFO_READ_LATENCY"]

#: Clock edges from a write into an empty ``SyncFIFOBuffered`` to the read of that entry.
SKIP_FIFO_READ_LATENCY = 2


def skip_fifo_depth(latency_main_path, latency_skip_path=0, *, cycles_per_beat=1):
    """Skip FIFO depth for a residual Add fed by a fork.

    Parameters
    ----------
    latency_main_path : int
        Clock edges from a beat leaving the fork to the main path's output beat that
        depends on it reaching ``b`` (sum of the stages' ``latency``), without stalls.
    latency_skip_path : int
        The same for the skip path up to ``a`` (0 for a plain wire).
    cycles_per_beat : int
        Cycles between beats leaving the fork (1 at full rate; a folded path's rate).

    Returns
    -------
    int
        ``max(ceil((Lm - Ls) / cycles_per_beat), SKIP_FIFO_READ_LATENCY) + 1``: beats the
        skip operand waits for its partner, plus the one being written.  Guarantees
        no deadlock for any main path that holds at most ``Lm / cycles_per_beat`` beats
        (every stage here), and no throughput loss at the given rate.
    """
    for name, v in (("latency_main_path", latency_main_path),
                    ("latency_skip_path", latency_skip_path),
                    ("cycles_per_beat", cycles_per_beat)):
        if not isinstance(v, int) or v < 0:
            raise HwconvError(f"skip_fifo_depth: {name} must be an integer >= 0, not {v!r}")
    if cycles_per_beat < 1:
        raise HwconvError("skip_fifo_depth: cycles_per_beat must be >= 1")
    lag = math.ceil(max(latency_main_path - latency_skip_path, 0) / cycles_per_beat)
    return max(lag, SKIP_FIFO_READ_LATENCY) + 1


class Add(wiring.Component):
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
        ``2 * lanes`` constant multipliers.
    storage_words : int
        ``skip_depth * lanes`` values in the skip FIFO.
    """

    latency = 3

    def __init__(self, op, in_shape, *, lanes=1, skip_depth=SKIP_FIFO_READ_LATENCY + 1):
        if not isinstance(op, QAdd):
            raise HwconvError(f"Add: op must be a QAdd, not {type(op).__name__}")
        in_shape = tuple(int(d) for d in in_shape)
        if not in_shape or min(in_shape) < 1:
            raise HwconvError(f"Add: in_shape {in_shape} must be a non-empty shape")
        if not isinstance(lanes, int):
            raise HwconvError(f"Add: lanes must be an integer, not {lanes!r}")
        check_lanes(in_shape[-1], lanes, "Add")
        if not isinstance(skip_depth, int) or skip_depth < 0:
            raise HwconvError(f"Add: skip_depth={skip_depth!r} must be an integer >= 0")
        if op.mult_a < 0 or op.mult_b < 0 or op.shift < 0:
            raise HwconvError(f"Add: multipliers ({op.mult_a}, {op.mult_b}) and shift "
                              f"{op.shift} must be >= 0")
        self._op, self._in_shape, self._lanes = op, in_shape, lanes
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
    def cycles_per_frame(self):
        return math.prod(self._in_shape) // self._lanes

    @property
    def skip_latency(self):
        return self.latency + (SKIP_FIFO_READ_LATENCY if self._skip_depth else 0)

    @property
    def multipliers(self):
        return 2 * self._lanes

    @property
    def storage_words(self):
        return self._skip_depth * self._lanes

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

        # (a - zp_a) * Ma + (b - zp_b) * Mb + half == a * Ma + b * Mb + k
        half = (1 << (op.shift - 1)) if op.shift else 0
        k = half - op.a_q.zero_point * op.mult_a - op.b_q.zero_point * op.mult_b
        bound_a = 256 * op.mult_a
        bound_b = 256 * op.mult_b
        bound_sum = bound_a + bound_b + abs(k)
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
                        clamp((total >> op.shift) + op.out_q.zero_point, op.out_q.qmin,
                              op.out_q.qmax)),
                ]
        return m
