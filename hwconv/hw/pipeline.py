"""Pipeline: the mapped stages of a :class:`~hwconv.mapper.Plan` wired into one stream
component, each stage's output through a :class:`~hwconv.hw.fifo.RegisterSlice`, with
lane converters where neighbouring stages' lanes differ, forks where a tensor has several
readers, and each residual Add's skip operand on its FIFO port.
"""

from __future__ import annotations

import re

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .add import Add
from .conv import Conv2D
from .dense import Dense
from .dwpw import DepthwisePointwise
from .fifo import RegisterSlice, StreamFifo
from .fork import Fork
from .gap import GlobalAvgPool
from .lanes import LaneConverter
from .pool import PoolActivate
from .stream import beat_signature, elem_shape

__all__ = ["Pipeline", "make_stage", "pipeline_top", "sanitize"]


def sanitize(name):
    """A Verilog-safe identifier from a model node name."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not s or not (s[0].isalpha() or s[0] == "_"):
        s = "n_" + s
    return s


def make_stage(spec, backend="generic", skid=True):
    """The Amaranth stage for a :class:`~hwconv.mapper.StageSpec`, its multiplies built
    by ``backend`` (:mod:`hwconv.hw.dsp`), its register slices with a skid entry or
    not (``skid``, :class:`~hwconv.hw.fifo.RegisterSlice`)."""
    f, ops = spec.folding, spec.ops
    if spec.kind == "conv":
        return Conv2D(ops["conv"], spec.in_shape, act=ops["act"], backend=backend,
                      skid=skid, **f)
    if spec.kind == "dwpw":
        return DepthwisePointwise(ops["dw"], ops["dw_act"], ops["pw"], ops["pw_act"],
                                  spec.in_shape, backend=backend, skid=skid, **f)
    if spec.kind == "pool_activate":
        return PoolActivate(ops["pool"], ops["act"], spec.in_shape, dtype=ops["dtype"],
                            skid=skid, **f)
    if spec.kind == "dense":
        return Dense(ops["dense"], spec.in_shape, backend=backend, skid=skid, **f)
    if spec.kind == "gap":
        return GlobalAvgPool(ops["gap"], spec.in_shape, backend=backend, skid=skid, **f)
    if spec.kind == "add":
        return Add(ops["add"], spec.in_shape, **f)
    raise ValueError(f"unknown stage kind {spec.kind!r}")


class Pipeline(wiring.Component):
    """All stages of a plan between one input stream ``i`` and one output stream ``o``.

    Parameters
    ----------
    plan : hwconv.mapper.Plan
    qparams : dict
        Tensor name -> :class:`~hwconv.numerics.QParams` (the integer network's).
    input_name : str
        The network's input tensor.
    in_lanes, out_lanes : int
        Values per beat on ``i`` and ``o``.
    """

    def __init__(self, plan, qparams, input_name, *, in_lanes, out_lanes):
        self._plan = plan
        self._qparams = qparams
        self._input = input_name
        self._stages = {s.name: make_stage(s, plan.backend, plan.skid)
                        for s in plan.stages}
        last = plan.stages[-1]
        self._in_lanes, self._out_lanes = in_lanes, out_lanes
        self._in_elem = elem_shape(qparams[input_name].dtype)
        self._out_elem = elem_shape(qparams[last.output].dtype)
        super().__init__({"i": In(beat_signature(self._in_elem, in_lanes)),
                          "o": Out(beat_signature(self._out_elem, out_lanes))})

    @property
    def stages(self):
        return dict(self._stages)

    def elaborate(self, platform):
        m = Module()
        plan = self._plan
        readers = {}
        for s in plan.stages:
            for t in s.inputs:
                readers[t] = readers.get(t, 0) + 1
        # tensor -> list of producer-side stream interfaces not yet consumed, and lanes
        avail = {}

        def publish(tensor, port, lanes, channels):
            n = readers.get(tensor, 0)
            if n > 1:
                elem = elem_shape(self._qparams[tensor].dtype)
                fork = Fork(beat_signature(elem, lanes), n)
                m.submodules[f"fork_{sanitize(tensor)}"] = fork
                wiring.connect(m, port, fork.i)
                avail[tensor] = [(getattr(fork, f"o{k}"), lanes, channels) for k in range(n)]
            else:
                avail[tensor] = [(port, lanes, channels)]

        def take(tensor, lanes, consumer, fifo=0):
            """The next reader's stream of ``tensor``: through an elastic FIFO of
            ``fifo`` beats (at the producer's lanes, so a burst leaves the producer at
            its own width), then a lane converter when the widths differ."""
            port, have, channels = avail[tensor].pop(0)
            elem = elem_shape(self._qparams[tensor].dtype)
            name = f"{sanitize(tensor)}_{sanitize(consumer)}"
            if fifo > 1:
                buf = StreamFifo(beat_signature(elem, have), fifo)
                m.submodules[f"fifo_{name}"] = buf
                wiring.connect(m, port, buf.i)
                port = buf.o
            if have != lanes:
                conv = LaneConverter(elem, channels, have, lanes)
                m.submodules[f"lanes_{name}"] = conv
                wiring.connect(m, port, conv.i)
                port = conv.o
            return port

        in_c = plan.stages[0].in_shape[-1]
        publish(self._input, wiring.flipped(self.i), self._in_lanes, in_c)
        for s in plan.stages:
            stage = self._stages[s.name]
            m.submodules[sanitize(s.name)] = stage
            if s.kind == "add":     # the mapper puts the skip operand first
                wiring.connect(m, take(s.inputs[0], s.in_lanes, s.name), stage.a)
                wiring.connect(m, take(s.inputs[1], s.in_lanes, s.name), stage.b)
            else:
                wiring.connect(m, take(s.inputs[0], s.in_lanes, s.name, s.in_fifo), stage.i)
            out = RegisterSlice(stage.o.signature, skid=plan.skid)
            m.submodules[f"slice_{sanitize(s.name)}"] = out
            wiring.connect(m, stage.o, out.i)
            publish(s.output, out.o, s.out_lanes, s.out_shape[-1])
        last = plan.stages[-1]
        wiring.connect(m, take(last.output, self._out_lanes, "output"),
                       wiring.flipped(self.o))
        return m


def pipeline_top(compiled):
    """The AXI4-Stream top level of a :class:`~hwconv.compiler.Compiled` model."""
    from .axis import AxiStreamTop

    core = Pipeline(compiled.plan, compiled.qnet.qparams, compiled.qnet.input_name,
                    in_lanes=compiled.in_lanes, out_lanes=compiled.out_lanes)
    return AxiStreamTop(core, 8 * compiled.in_lanes, 8 * compiled.out_lanes)
