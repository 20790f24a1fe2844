"""LaneConverter: re-pack a pixel stream from ``lanes_in`` to ``lanes_out`` values per beat.

Stages choose their lanes from their folding (a conv's output lanes are its PE, the next
stage's input lanes its SIMD); the mapper puts a converter between two stages whose lanes
differ.  Both lane counts divide the channel count, so their least common multiple does
too, and the converter only ever holds ``lcm(lanes_in, lanes_out)`` values: it collects
``lcm / lanes_in`` input beats, then emits ``lcm / lanes_out`` output beats.  The first
beat of the next group is accepted in the cycle the last output beat leaves, so a pure
gather (``lanes_out = k * lanes_in``) or scatter runs at full rate; mixed ratios lose one
cycle per group.
"""

from __future__ import annotations

import math

from amaranth import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .stream import beat_signature, check_lanes

__all__ = ["LaneConverter"]


class LaneConverter(wiring.Component):
    """Stream width converter between two lane counts dividing ``channels``.

    Parameters
    ----------
    elem : Shape
        Value shape (``signed(8)`` / ``unsigned(8)``).
    channels : int
    lanes_in, lanes_out : int

    Attributes
    ----------
    i : In(beat_signature(elem, lanes_in))
    o : Out(beat_signature(elem, lanes_out))
    """

    def __init__(self, elem, channels, lanes_in, lanes_out):
        check_lanes(channels, lanes_in, "LaneConverter input")
        check_lanes(channels, lanes_out, "LaneConverter output")
        self._elem, self._lin, self._lout = elem, lanes_in, lanes_out
        self._lcm = math.lcm(lanes_in, lanes_out)
        super().__init__({"i": In(beat_signature(elem, lanes_in)),
                          "o": Out(beat_signature(elem, lanes_out))})

    @property
    def latency(self):
        return self._lcm // self._lin

    def elaborate(self, platform):
        m = Module()
        nin, nout = self._lcm // self._lin, self._lcm // self._lout
        if nin == 1 and nout == 1:
            wiring.connect(m, wiring.flipped(self.i), wiring.flipped(self.o))
            return m
        buf = Signal(data.ArrayLayout(self._elem, self._lcm))
        last = Signal()
        wr = Signal(range(max(nin, 2)))
        rd = Signal(range(max(nout, 2)))
        full = Signal()
        take_out = self.o.valid & self.o.ready
        drained = take_out & (rd == nout - 1)
        # The next group may start arriving in the cycle the last output beat leaves.
        m.d.comb += [self.o.valid.eq(full), self.i.ready.eq(~full | drained)]
        for k in range(nout):
            with m.If(rd == k):
                for lane in range(self._lout):
                    m.d.comb += self.o.payload.data[lane].eq(buf[k * self._lout + lane])
        m.d.comb += self.o.payload.last.eq(last & (rd == nout - 1))
        with m.If(take_out):
            m.d.sync += rd.eq(Mux(rd == nout - 1, 0, rd + 1))
            with m.If(rd == nout - 1):
                m.d.sync += full.eq(0)
        with m.If(self.i.valid & self.i.ready):
            for k in range(nin):
                with m.If(wr == k):
                    for lane in range(self._lin):
                        m.d.sync += buf[k * self._lin + lane].eq(self.i.payload.data[lane])
            m.d.sync += last.eq(self.i.payload.last)
            m.d.sync += wr.eq(Mux(wr == nin - 1, 0, wr + 1))
            with m.If(wr == nin - 1):
                m.d.sync += full.eq(1)
        return m
