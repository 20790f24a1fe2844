"""StreamFifo: an elastic buffer between two stages.

Windowed stages consume and produce in row-periodic bursts (a stride-2 pool emits only
on every other row; a line buffer emits a frame's bottom-padding windows in the next
frame's slots).  In a pipeline balanced so that every stage needs the same cycles per
frame, a stall caused by a burst is never caught up; a FIFO holding one row lets each
stage run at its own steady rate, so the pipeline reaches the slowest stage's rate.
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..errors import HwconvError

__all__ = ["StreamFifo"]


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
