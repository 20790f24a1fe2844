"""Fork: one stream to several consumers (a tensor read by two layers, e.g. a residual
skip path).  A beat leaves the input once every output has taken it; each output keeps
its own "taken" flag, so consumers may accept in different cycles.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..errors import HwconvError

__all__ = ["Fork"]


class Fork(wiring.Component):
    """Broadcast ``i`` to ``o0 .. o{n-1}`` without loss or duplication.

    Parameters
    ----------
    signature : stream.Signature
        The stream's signature (every port has it).
    n : int
        Number of consumers (>= 2).
    """

    latency = 0

    def __init__(self, signature, n=2):
        if n < 2:
            raise HwconvError(f"Fork needs at least 2 outputs, not {n}")
        self._n = n
        super().__init__({"i": In(signature), **{f"o{k}": Out(signature) for k in range(n)}})

    def elaborate(self, platform):
        m = Module()
        outs = [getattr(self, f"o{k}") for k in range(self._n)]
        taken = [Signal(name=f"taken{k}") for k in range(self._n)]
        done = [Signal(name=f"done{k}") for k in range(self._n)]
        for o, t, d in zip(outs, taken, done):
            m.d.comb += [o.payload.eq(self.i.payload), o.valid.eq(self.i.valid & ~t),
                         d.eq(t | o.ready)]
        all_done = Signal()
        m.d.comb += [all_done.eq(Cat(*done).all()), self.i.ready.eq(all_done)]
        for o, t in zip(outs, taken):
            with m.If(self.i.valid & all_done):
                m.d.sync += t.eq(0)
            with m.Elif(o.valid & o.ready):
                m.d.sync += t.eq(1)
        return m
