"""Elastic buffers between stages: StreamFifo (a row of beats) and RegisterSlice.

Windowed stages consume and produce in row-periodic bursts (a stride-2 pool emits only
on every other row; a line buffer emits a frame's bottom-padding windows in the next
frame's slots).  In a pipeline balanced so that every stage needs the same cycles per
frame, a stall caused by a burst is never caught up; a FIFO holding one row lets each
stage run at its own steady rate, so the pipeline reaches the slowest stage's rate.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..errors import HwconvError

__all__ = ["StreamFifo", "RegisterSlice", "CreditQueue", "PipelineEnd", "UnitOutput"]


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


class CreditQueue(wiring.Component):
    """The output queue of a free-running pipeline: flow control by credits instead of
    a stall.

    A pipeline whose registers all advance on one stall signal (``~o.valid | o.ready``)
    drives that signal to every flip-flop and multiplier clock enable of the stage: on
    an ECP5 its routing, not the logic, sets the clock (``bench/fmax.py``: 85 MHz for a
    144-multiplier conv stage).  A free-running pipeline never stops; instead, before
    it starts an item that will produce an output, it takes a credit (``reserve``, only
    while ``ok``), and the output lands in this queue (``w_en``, ``w_data``), which
    has room for every credit it gave (``depth`` = credits = flight + buffering); a
    credit comes back when the consumer takes a beat.  ``ok`` and ``i.ready`` upstream
    then come from this queue's counter, a few flip-flops, not from the consumer.

    With ``depth >= latency + 2`` (``latency``: edges from ``reserve`` to ``w_en``)
    a consumer that is always ready sees one beat per cycle.  ``o`` comes from
    flip-flops: an output register, loaded straight from ``w_data`` when the queue is
    empty (a beat written at one edge is on ``o`` after it, as from a pipeline's output
    register) and otherwise from a ``depth``-word memory written synchronously and
    read asynchronously (LUT RAM on ECP5 and Xilinx, flip-flops elsewhere), so the
    consumer's first logic never waits for a memory read; ``o.valid`` and the
    addresses are flip-flops too.

    Parameters
    ----------
    signature : stream.Signature
        Of the output ``o``.
    depth : int
        Credits (>= 2).

    Attributes
    ----------
    reserve : In(1)
        Take a credit this cycle (only while ``ok``).
    ok : Out(1)
        A credit is free.
    ok_next : Out(1)
        ``ok`` after this clock edge (logic: for a unit that registers a signal of
        ``ok``, see :meth:`PipelineEnd.ready`).
    w_en : In(1), w_data : In(payload)
        An output of the pipeline (never more than the credits taken).
    o : Out(signature)
    """

    def __init__(self, signature, depth):
        if not isinstance(depth, int) or depth < 2:
            raise HwconvError(f"CreditQueue: depth must be an integer >= 2, not {depth!r}")
        self._depth = depth
        layout = signature.members["payload"].shape
        super().__init__({"reserve": In(1), "ok": Out(1), "ok_next": Out(1), "w_en": In(1),
                          "w_data": In(layout), "o": Out(signature)})

    @classmethod
    def covering(cls, signature, latency):
        """The queue for a pipeline of ``latency`` edges from ``reserve`` to ``w_en``:
        ``latency + 2`` credits, the fewest that keep one beat per cycle."""
        return cls(signature, latency + 2)

    @property
    def depth(self):
        return self._depth

    def elaborate(self, platform):
        m = Module()
        d = self._depth
        # Counts are thermometer codes (bit i: count > i), so every flag below is one
        # flip-flop and every update a 3:1 multiplexer per bit: no carry chains.
        # `reserve` lands in a flip-flop first (`taken`) and reaches the credit count an
        # edge later, so the unit's issue logic, where `reserve` comes from, ends at
        # that flip-flop.  `ok` is ``used + 2 <= depth``: room for this cycle's credit
        # with `taken` counted as set, in a flip-flop of its own (not an inverter after
        # `used`), placed by its fan-out: the unit's issue logic and the upstream
        # queue's output enables.  It then depends neither on the issue logic (which
        # `ok` gates) nor on the consumer; it is one credit pessimistic only after a
        # cycle that took none, which a stream at full rate never has
        # (tests/test_hw_fifo.py: full rate at latency + 2).
        used = Signal(d, name="used")
        taken = Signal()
        pop = Signal()
        ok = Signal(init=1)
        m.d.comb += [pop.eq(self.o.valid & self.o.ready), self.ok.eq(ok)]
        used_next = _count(used, taken, pop)
        m.d.comb += self.ok_next.eq(~used_next[d - 2])
        m.d.sync += [taken.eq(self.reserve), used.eq(used_next), ok.eq(self.ok_next)]
        width = Shape.cast(self.w_data.shape()).width
        m.submodules.words = mem = Memory(shape=width, depth=d, init=[])
        wr, rd = mem.write_port(), mem.read_port(domain="comb")
        rp = Signal(range(d), name="rp")
        wp = Signal(range(d), name="wp")
        n = Signal(d, name="stored")        # words in the memory, thermometer code
        free = Signal()         # the output register is empty or handing its beat over
        bypass, refill = Signal(), Signal()
        od = Signal(width, name="out_data", reset_less=True)
        m.d.comb += [self.o.payload.as_value().eq(od),
                     free.eq(~self.o.valid | self.o.ready),
                     refill.eq(free & n[0]),
                     bypass.eq(free & ~n[0] & self.w_en),
                     rd.addr.eq(rp), wr.addr.eq(wp), wr.data.eq(self.w_data.as_value())]
        # The memory takes every output, also one that bypasses it: its write enable
        # is then the pipeline's `w_en` alone, not a function of the consumer's ready
        # (which would reach every LUT RAM's write enable, measured on the 3x3x32->32
        # conv as the critical path).  A bypassing word lands in the free slot at `wp`
        # (the memory is empty then) and is not counted: `wp` and `stored` move only
        # for a kept word.
        keep = Signal()
        m.d.comb += [keep.eq(self.w_en & ~bypass), wr.en.eq(self.w_en)]
        m.d.sync += n.eq(_count(n, keep, refill))
        # The output register loads on refill or bypass; which word it takes depends on
        # `stored` alone (a flip-flop), so the consumer's ready reaches only its enables.
        with m.If(refill | bypass):
            m.d.sync += [od.eq(Mux(n[0], rd.data, self.w_data.as_value())),
                         self.o.valid.eq(1)]
        with m.Elif(free):
            m.d.sync += self.o.valid.eq(0)
        with m.If(refill):
            m.d.sync += rp.eq(Mux(rp == d - 1, 0, rp + 1))
        with m.If(keep):
            m.d.sync += wp.eq(Mux(wp == d - 1, 0, wp + 1))
        return m


def _count(therm, up, down):
    """Next value of a thermometer-coded count (bit ``i``: count > ``i``) going up by
    ``up`` and down by ``down`` (never past its bounds)."""
    return Mux(up & ~down, Cat(Const(1, 1), therm[:-1]),
               Mux(down & ~up, Cat(therm[1:], Const(0, 1)), therm))


class PipelineEnd:
    """The end of a unit's pipeline: its output register, or (``credit``) a
    :class:`CreditQueue` standing in its place.  One piece of code for every unit that
    can run either way (a MAC array, a dense datapath, the simple units of
    :class:`UnitOutput`).

    Stall mode: every register of the unit advances on ``en = ~sink.valid |
    sink.ready``, and the result is registered into ``sink``.  Credit mode: the unit
    runs free (``en`` is constant); a step that will produce a result takes a credit
    (``reserve``, only while ``ok``), and the result is written into the queue, whose
    output drives ``sink``: the same latency, and the consumer's ``ready`` reaches no
    register of the unit.

    Parameters
    ----------
    m : Module
    sink : stream interface
        The stream the unit drives, seen from its consumer's side: ``wiring.flipped(o)``
        for the unit's own output port ``o``, or a submodule's input port.
    credit : bool
    name : str
        The queue's submodule name.

    Attributes
    ----------
    en : Value
        Advance the unit's registers (``Const(1)`` in credit mode).
    ok : Value
        A step that produces a result may start (credit mode: a credit is free; stall
        mode: ``en``).
    """

    def __init__(self, m, sink, credit, name="out_queue"):
        self._m, self._sink, self._credit, self._name = m, sink, bool(credit), name
        if self._credit:
            self.en = Const(1, 1)
            self.ok = Signal(name=f"{name}_ok")
            self._ok_next = Signal(name=f"{name}_ok_next")
        else:
            self.en = self.ok = Signal(name="en")
            m.d.comb += self.en.eq(~sink.valid | sink.ready)

    def go(self, produces):
        """A step may start: credit mode, a credit is free or the step produces
        nothing; stall mode, ``en``."""
        return (self.ok | ~produces) if self._credit else self.en

    def ready(self, name, produces, takes, nxt):
        """A unit's input ``ready``: ``takes`` (the step takes the input beat) when the
        step may start (:meth:`go`).

        Credit mode: one flip-flop, loaded with the same function of the next cycle's
        values (``nxt``: ``(produces, takes)`` of the counters' next state, and the
        queue's ``ok_next``), so the producer's register enables that ``ready`` drives
        (a 576-bit window for a 3x3x32 conv) are one LUT from flip-flops, not a chain of
        LUTs through two units.  ``produces`` and ``takes`` are then the unit's
        look-ahead flag flip-flops (:func:`hwconv.hw.dsp.position_flags`); the ready
        starts as ``takes`` does (``ok`` is set at reset).  Stall mode: logic.
        """
        if not self._credit:
            return self.go(produces) & takes
        r = Signal(name=name, init=takes.init)
        produces_n, takes_n = nxt
        self._m.d.sync += r.eq((self._ok_next | ~produces_n) & takes_n)
        return r

    def write(self, latency, reserve, valid, fill):
        """The last stage.

        Parameters
        ----------
        latency : int
            Edges from a step's ``reserve`` to the write of its result.
        reserve : Value
            Credit mode: a step that will produce a result starts (only while ``ok``).
        valid : Value
            A result is written this cycle.
        fill : callable
            ``fill(payload)``: the assignments of a result to ``payload`` (registered
            into ``sink``, or plain wires into the queue).
        """
        m, sink = self._m, self._sink
        if self._credit:
            q = CreditQueue.covering(sink.signature.flip(), latency)
            m.submodules[self._name] = q
            wiring.connect(m, q.o, sink)
            m.d.comb += [self.ok.eq(q.ok), self._ok_next.eq(q.ok_next),
                         q.reserve.eq(reserve), q.w_en.eq(valid)]
            m.d.comb += fill(q.w_data)
            return
        with m.If(self.en):
            m.d.sync += [sink.valid.eq(valid), *fill(sink.payload)]


class UnitOutput:
    """The end of a simple unit's pipeline, one beat in for one beat out (a
    :mod:`~hwconv.hw.stream` beat of lanes): a :class:`PipelineEnd` that takes a credit
    for every beat it admits.

    Stall mode: every register of the unit advances on ``en = ~o.valid | o.ready``,
    which is also ``i.ready``.  Credit mode: the unit runs free (``en`` is constant), a
    beat enters only with a credit (``i.ready`` is the queue's ``ok``, a flip-flop) and
    its result is written into the queue: the same latency, and the consumer's
    ``ready`` reaches no register of the unit.

    Parameters
    ----------
    m : Module
    unit : wiring.Component
        With stream ports ``i`` and ``o``.
    latency : int
        The unit's register stages from ``i`` to ``o`` (the last one is the output
        register or the queue).
    credit : bool

    Attributes
    ----------
    en : Value
        Advance the unit's registers (``Const(1)`` in credit mode).
    valid : Value
        A beat enters the pipeline this cycle (to carry down its valid flags).
    """

    def __init__(self, m, unit, latency, credit):
        self._end = end = PipelineEnd(m, wiring.flipped(unit.o), credit)
        self._latency = latency
        self.en = end.en
        if credit:
            self.valid = Signal(name="take")
            m.d.comb += self.valid.eq(end.ok & unit.i.valid)
        else:
            self.valid = unit.i.valid
        m.d.comb += unit.i.ready.eq(end.ok)

    def write(self, valid, last, values):
        """The last stage: ``valid``, ``last`` and the output beat's lane values
        (registered, or plain wires into the queue)."""
        self._end.write(self._latency - 1, self.valid, valid,
                        lambda p: [p.last.eq(last),
                                   *[p.data[k].eq(v) for k, v in enumerate(values)]])
