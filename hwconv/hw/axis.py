"""AXI4-Stream top level: flat ``s_axis_*`` / ``m_axis_*`` ports around a stream core.

Port names follow the AXI4-Stream convention (``tdata``, ``tvalid``, ``tready``,
``tlast``) so the generated Verilog drops into vendor block designs and cocotbext-axi
drives it unchanged.  ``tdata`` packs the beat's lanes little-endian: lane 0 in bits
``[7:0]``.  Reset is Amaranth's synchronous, active-high ``rst``.
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AxiStreamTop"]


class AxiStreamTop(wiring.Component):
    """Wrap ``core`` (stream ports ``i``/``o`` of the :mod:`hwconv.hw.stream` format).

    Parameters
    ----------
    core : wiring.Component
    in_width, out_width : int
        ``tdata`` widths in bits (lanes x value bits).
    """

    def __init__(self, core, in_width, out_width):
        self._core = core
        super().__init__({
            "s_axis_tdata": In(in_width), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(out_width), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        })

    @property
    def core(self):
        return self._core

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self._core
        m.d.comb += [
            core.i.payload.data.as_value().eq(self.s_axis_tdata),
            core.i.payload.last.eq(self.s_axis_tlast),
            core.i.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(core.i.ready),
            self.m_axis_tdata.eq(core.o.payload.data.as_value()),
            self.m_axis_tlast.eq(core.o.payload.last),
            self.m_axis_tvalid.eq(core.o.valid),
            core.o.ready.eq(self.m_axis_tready),
        ]
        return m
