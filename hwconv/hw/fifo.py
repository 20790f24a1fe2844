"""Elastic buffers between stages: StreamFifo (a row of beats) and RegisterSlice.

Windowed stages consume and produce in row-periodic bursts (a stride-2 pool emits only
on every other row; a line buffer emits a frame's bottom-padding windows in the next
frame's slots).  In a pipeline balanced so that every stage needs the same cycles per
frame, a stall caused by a burst is never caught up; a FIFO holding one row lets each
stage run at its own steady rate, so the pipeline reaches the slowest stage's rate.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..errors import HwconvError

__all__ = ["StreamFifo", "RegisterSlice"]


class StreamFifo(wiring.Component):
    """A ``depth``-beat first-in first-out buffer for any stream signature.

    Parameters
    ----------
    signature : stream.Signature
    depth : int
        Beats held (>= 2); deep FIFOs become block RAM (``SyncFIFOBuffered``).
    """

    def __init__(self, signature, depth):
        if not isinstance(depth, int) or depth < 2:
            raise HwconvError(f"StreamFifo: depth must be an integer >= 2, not {depth!r}")
        self._depth = depth
        super().__init__({"i": In(signature), "o": Out(signature)})

    @property
    def depth(self):
        return self._depth

    def elaborate(self, platform):
        m = Module()
        width = self.i.payload.shape().size
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=width, depth=self._depth)
        m.d.comb += [fifo.w_data.eq(self.i.payload.as_value()), fifo.w_en.eq(self.i.valid),
                     self.i.ready.eq(fifo.w_rdy), self.o.payload.as_value().eq(fifo.r_data),
                     self.o.valid.eq(fifo.r_rdy), fifo.r_en.eq(self.o.ready)]
        return m


class RegisterSlice(wiring.Component):
    """A two-entry skid buffer: every output of it (``o.valid``, ``o.payload``,
    ``i.ready``) comes straight from a flip-flop, so neither the ready nor the valid
    path runs combinationally through it.

    A stage's ready depends on its consumer's ready through the stage's global stall; a
    slice after every stage ends those chains at the stage boundary, which keeps the
    clock independent of the pipeline's length.  Full throughput; one cycle of latency
    (:data:`hwconv.cost.SLICE_LATENCY`).

    With ``skid=False`` it is a plain pipeline register: the same latency and
    throughput, half the flip-flops and no output multiplexer, but ``i.ready`` follows
    ``o.ready`` combinationally (``~o.valid | o.ready``), so the ready chains run through
    it.  For slow clocks on small parts (a design's ``skid`` option, see
    :class:`hwconv.mapper.Plan`), where flip-flops cost logic cells and the chains are
    harmless.

    Parameters
    ----------
    signature : stream.Signature
    skid : bool
    """

    def __init__(self, signature, *, skid=True):
        self._skid = bool(skid)
        super().__init__({"i": In(signature), "o": Out(signature)})

    def elaborate(self, platform):
        m = Module()
        if not self._skid:
            m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
            with m.If(self.i.ready):
                m.d.sync += [self.o.payload.eq(self.i.payload),
                             self.o.valid.eq(self.i.valid)]
            return m
        skid = Signal.like(self.i.payload, name="skid")
        skid_valid = Signal()
        m.d.comb += self.i.ready.eq(~skid_valid)
        with m.If(~self.o.valid | self.o.ready):
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1),
                             skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload),
                             self.o.valid.eq(self.i.valid)]
        with m.Elif(self.i.valid & ~skid_valid):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m
