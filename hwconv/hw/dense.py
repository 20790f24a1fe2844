"""Dense (matrix-vector) stage: ``PE x SIMD`` multipliers, weights in ROM, shared requantizer.

The input vector arrives in ``N / SIMD`` beats of ``SIMD`` lanes and is kept in a small
buffer; the stage then sweeps ``O / PE`` output groups over it, ``PE x SIMD`` products per
cycle, so a vector takes exactly ``(N / SIMD) * (O / PE)`` cycles (the first sweep reads
the beats as they arrive, later sweeps read the buffer).  Each output group leaves as one
beat of ``PE`` lanes through the shared :class:`~hwconv.hw.requant.Requantizer`.

Dataflow: input-buffered, unlike :class:`~hwconv.hw.mac.MacArray` (which holds each
input beat for ``O / PE`` cycles into ``O`` rotating accumulators).  The buffer costs
``N`` 8-bit values in one block RAM and ``PE`` accumulators; the accumulator bank would
cost ``O`` accumulators of ~20-30 bits in registers.  A head after global pooling
(``N`` = channels, ``O`` = classes, often ``O >= N``) favours the buffer; a very wide
flattened input with few classes would favour the bank.

Bit-exactness: the golden accumulator is ``sum((x - zp_in) * w) + bias``; the stage
computes ``sum(x * w) + (bias - zp_in * sum(w))``, the same integer, with 8-bit
multiplier operands.

A Dense that follows a ``Flatten`` can take the feature map stream directly: Flatten is
channel-major (C, H, W) while the stream is channels-last (H, W, C), so the stage permutes
its weight columns at construction (``in_shape`` of rank 3, or an explicit
``input_order``).
"""

from __future__ import annotations

import numpy as np
from amaranth import Array, Const, Module, Mux, Signal
from amaranth.hdl import signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .. import cost
from ..errors import HwconvError
from ..numerics import signed_bits
from ..quant import QDense
from . import dsp
from ..cost import mul_latency
from .fifo import PipelineEnd, RegisterSlice
from .rom import WeightRom
from .requant import Requantizer
from .figures import StageFigures
from .stream import beat_signature, elem_shape

__all__ = ["Dense", "flatten_order", "adder_tree", "group_bias", "start_register"]


def flatten_order(shape):
    """Stream-to-vector permutation of a channels-last ``(H, W, C)`` map under Flatten.

    Element ``k`` of the raster stream (``k = (h * W + w) * C + c``) is element
    ``order[k] = c * H * W + h * W + w`` of ``Flatten(x)``.
    """
    h, w, c = shape
    return np.arange(h * w * c).reshape(c, h, w).transpose(1, 2, 0).ravel()


def _value_bound(q):
    return max(abs(q.qmin), abs(q.qmax))


def group_bias(values, shape, group):
    """An accumulator's start value for output group ``group``: ``values[group]``, a
    constant when all are equal, else a table lookup."""
    if len(set(values)) == 1:
        return Const(values[0], shape)
    return Array(Const(v, shape) for v in values)[group]


def start_register(m, en, value, name):
    """The accumulator's other operand, registered: ``value`` is what the *next* step
    adds its products to, computed one edge early from the next step's control and
    the accumulator state as this edge leaves it, so only the adder lies between
    registers on the accumulator's path (the choice between bias and running sum
    happens beside it).  Advances when ``en``."""
    return dsp.delay(m, en, value, 1, name, reset_less=True)


def adder_tree(m, terms, bounds, en, levels_per_stage, name):
    """Pairwise sum of ``terms`` (each with a magnitude bound), pipelined.

    A register bank (advancing when ``en``) follows every ``levels_per_stage`` adder levels
    and the last level, so the accumulator after the tree adds a register to a register
    (its add and the tree's last level in one cycle were two carry chains in series, the
    digits pipeline's critical path on ECP5, bench/fmax.py); ``0`` means combinational.

    Returns ``(sum, bound, registers)``: the sum value, its bound and the number of
    register stages inserted.
    """
    terms, bounds = list(terms), list(bounds)
    level = regs = 0
    levels = cost.tree_levels(len(terms))
    while len(terms) > 1:
        pairs = range(0, len(terms) - 1, 2)
        sums = [terms[k] + terms[k + 1] for k in pairs]
        sum_bounds = [bounds[k] + bounds[k + 1] for k in pairs]
        if len(terms) % 2:
            sums.append(terms[-1])
            sum_bounds.append(bounds[-1])
        terms, bounds = sums, sum_bounds
        level += 1
        if cost.tree_register_after(level, levels, levels_per_stage):
            regs += 1
            staged = []
            for k, (t, b) in enumerate(zip(terms, bounds)):
                r = Signal(signed(signed_bits(b)), name=f"{name}_l{level}_{k}")
                m.d.sync += r.eq(Mux(en, t, r))
                staged.append(r)
            terms = staged
    return terms[0], bounds[0], regs


class Dense(StageFigures, wiring.Component):
    """Matrix-vector stage for a :class:`~hwconv.quant.QDense`.

    Parameters
    ----------
    op : hwconv.quant.QDense
        Weights ``(O, N)``, bias, quantization and requantizer.
    in_shape : tuple
        ``(N,)`` for a vector, or ``(H, W, C)`` with ``H * W * C == N`` for a feature map
        streamed channels-last that the layer sees through ``Flatten``.
    pe : int
        Output channels computed in parallel; divides ``O``; output beats have ``pe``
        lanes.
    simd : int
        Input values per cycle; divides ``N`` (and ``C`` for a feature map); input beats
        have ``simd`` lanes.
    input_order : sequence of int, optional
        Stream position ``k`` carries vector element ``input_order[k]``.  Defaults to the
        identity for a vector and :func:`flatten_order` for a feature map.
    levels_per_stage : int
        Adder-tree levels between pipeline registers (0: combinational tree).
    backend : str
        Multiplier back end (:mod:`hwconv.hw.dsp`).
    skid : bool
        ``True`` (default, for fast clocks): an input register slice with a skid entry,
        and a datapath and requantizer that run free on credits of small queues
        (:class:`~hwconv.hw.fifo.CreditQueue`).  ``False``: a plain input register and
        a global stall (the same cycles, fewer cells).

    Attributes
    ----------
    i : In(beat_signature(in elem, simd))
    o : Out(beat_signature(out elem, pe))
    cycles_per_frame : int
        ``(N / simd) * (O / pe)``: cycles per vector in steady state.
    latency : int
        Clock edges from the transfer of a vector's first input beat to that of its
        first output beat, without stalls.
    multipliers : int
        ``pe * simd`` (the requantizer adds ``pe`` more, see ``requant_multipliers``).
    storage_words : int
        Input buffer values (``N`` when ``O > pe``, else 0); ``weight_words`` is ``O * N``.
    cost : hwconv.cost.StageCost
        All of these, from :func:`hwconv.cost.dense`.
    acc_bits : int
        Accumulator width (bound of ``sum(x * w) + bias'`` over every partial sum).
    """

    def __init__(self, op, in_shape, *, pe=1, simd=1, input_order=None, levels_per_stage=1,
                 backend="generic", skid=True):
        if not isinstance(op, QDense):
            raise HwconvError(f"Dense: op must be a QDense, not {type(op).__name__}")
        self._cost = cost.dense(op, in_shape, pe, simd, levels_per_stage=levels_per_stage,
                                backend=backend)
        o, n = op.weight.shape
        in_shape = tuple(int(d) for d in in_shape)
        if input_order is None:
            order = flatten_order(in_shape) if len(in_shape) == 3 else np.arange(n)
        else:
            order = np.asarray(input_order)
            if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
                raise HwconvError(f"Dense: input_order must be a permutation of range({n})")
        self._op, self._in_shape = op, in_shape
        self._o, self._n, self._pe, self._simd = o, n, pe, simd
        self._ni, self._no = n // simd, o // pe
        self._levels_per_stage, self._backend = levels_per_stage, backend
        self._skid = skid
        # Stream position k multiplies column order[k]; the input zero point folds into
        # the bias: sum((x - zp) * w) + b == sum(x * w) + (b - zp * sum(w)).
        self._weight = op.weight[:, order]
        self._bias = op.bias - op.in_q.zero_point * op.weight.sum(axis=1)
        xb = _value_bound(op.in_q)
        self._acc_bound = int((np.abs(self._weight).sum(axis=1) * xb
                               + np.abs(self._bias)).max())
        self._in_elem = elem_shape(op.in_q.dtype)
        self._out_elem = elem_shape(op.out_q.dtype)
        super().__init__({
            "i": In(beat_signature(self._in_elem, simd)),
            "o": Out(beat_signature(self._out_elem, pe)),
        })

    @property
    def acc_bits(self):
        return signed_bits(self._acc_bound)

    @property
    def storage_words(self):
        return self._cost.buffer_words

    def _rom_init(self):
        pe, simd = self._pe, self._simd
        w = self._weight.reshape(self._no, pe, self._ni, simd).transpose(0, 2, 1, 3)
        return w.reshape(-1, pe * simd)

    def elaborate(self, platform):
        m = Module()
        # Input register slice: the ready this unit gives upstream comes from a flip-flop,
        # so stall chains end here.
        m.submodules.in_slice = src = RegisterSlice(self.i.signature.flip(), skid=self._skid)
        wiring.connect(m, wiring.flipped(self.i), src.i)
        src = src.o
        op = self._op
        pe, simd, ni, no = self._pe, self._simd, self._ni, self._no
        wbits = op.weight_bits

        m.submodules.requant = rq = Requantizer(
            op.requant, self._o, pe, self.acc_bits, op.out_q.zero_point, op.out_q.qmin,
            op.out_q.qmax, self._out_elem, backend=self._backend, skid=self._skid,
            limbs=cost.requant_limbs(op.requant, self._o, ni, self._backend))
        wiring.connect(m, rq.o, wiring.flipped(self.o))

        # skid=False: a global-stall pipeline, every register advances when the
        # accumulator output is free or being taken by the requantizer.  skid=True: the
        # registers run free and a step that completes an output group first takes a
        # credit of a CreditQueue in front of the requantizer (the same latency).
        out = PipelineEnd(m, rq.i, self._skid, name="acc_queue")
        en = out.en

        # Stage 0: step sequencer over (output group og, input chunk ic).
        og = Signal(range(no), name="og")
        ic = Signal(range(ni), name="ic")
        widx = Signal(range(no * ni), name="widx")
        # Two flags of the position: `first_sweep` (og == 0: the beats come from the
        # stream) and `closes` (ic == ni - 1: the step completes an output group).
        # With skid (fast clocks): flip-flops loaded from the counters' next state, so
        # `i.ready` and `go` are one LUT of flip-flops; without: logic on the counters.
        og_n, ic_n = Signal.like(og), Signal.like(ic)
        m.d.comb += [og_n.eq(og), ic_n.eq(ic)]
        m.d.sync += [og.eq(og_n), ic.eq(ic_n)]
        def flags(og, ic):
            return og == 0, ic == ni - 1

        (first_sweep, closes), (sweep_n, closes_n) = dsp.position_flags(
            m, self._skid, flags, (og, ic), (og_n, ic_n), ("first_sweep", "closes"))
        go = out.go(closes)
        m.d.comb += src.ready.eq(out.ready("i_ready", closes, first_sweep,
                                           (closes_n, sweep_n)))
        step = Signal()
        m.d.comb += step.eq(go & (~first_sweep | src.valid))
        with m.If(step):
            m.d.comb += ic_n.eq(Mux(closes, 0, ic + 1))
            m.d.sync += widx.eq(Mux(widx == no * ni - 1, 0, widx + 1))
            with m.If(closes):
                m.d.comb += og_n.eq(Mux(og == no - 1, 0, og + 1))

        m.submodules.weights = rom_rd = WeightRom(self._rom_init(), wbits)
        m.d.comb += [rom_rd.addr.eq(widx), rom_rd.en.eq(en)]

        # Stage 1-2: weights arrive from the ROM (WeightRom.latency); x from the stream
        # (first sweep) or the vector buffer (later sweeps), delayed alike.
        x_in = dsp.delay(m, en, src.payload.data, WeightRom.latency, "x_in")
        from_stream = dsp.delay(m, en, first_sweep, WeightRom.latency, "from_stream")
        if no > 1:
            # no_rw_check: the first sweep writes and reads word ic in the same cycle,
            # but uses the stream's value (from_stream), never the colliding read
            m.submodules.vector = buf = Memory(shape=src.payload.data.shape(), depth=ni,
                                               init=[], attrs={"no_rw_check": 1})
            wr, rd = buf.write_port(), buf.read_port()
            m.d.comb += [wr.addr.eq(ic), wr.data.eq(src.payload.data),
                         wr.en.eq(src.valid & src.ready),
                         rd.addr.eq(ic), rd.en.eq(en)]
            x_buf = dsp.delay(m, en, rd.data, WeightRom.latency - 1, "x_buf",
                                reset_less=True)
            x = Mux(from_stream, x_in, x_buf)
            x = data.View(src.payload.data.shape(), x)
        else:
            x = x_in

        ctrl = data.StructLayout({"valid": 1, "first": 1, "done": 1, "og": og.shape(),
                                  "last": 1})
        c0 = Signal(ctrl)
        m.d.comb += [c0.valid.eq(step), c0.first.eq(ic == 0), c0.done.eq(closes),
                     c0.og.eq(og), c0.last.eq(closes & (og == no - 1))]
        c1 = dsp.delay(m, en, c0, WeightRom.latency, "ctrl_s1")

        # Stage 3: PE x SIMD products (the back end's mul_latency registers).
        xb = _value_bound(op.in_q)
        wmax = 1 << (wbits - 1)
        pbits = signed_bits(xb * wmax)
        prods = [[dsp.multiply(m, x[s], rom_rd.data[p * simd + s], en, self._backend,
                               f"mul_{p}_{s}")[:pbits].as_signed()
                  for s in range(simd)] for p in range(pe)]

        # Adder tree per PE lane, then the accumulator.
        sums = []
        regs = 0
        for p in range(pe):
            total, _, regs = adder_tree(m, prods[p], [xb * wmax] * simd, en,
                                        self._levels_per_stage, f"tree{p}")
            sums.append(total)
        # ct: the control of the products' sums (c1 delayed by the products and the
        # tree); ct_pre is ct one edge earlier, the step whose start value is chosen
        # now (start_register)
        ct_pre = dsp.delay(m, en, c1, mul_latency(self._backend) + regs - 1, "ctrl_s2")
        ct = dsp.delay(m, en, ct_pre, 1, "ctrl_acc")

        # The accumulators double as the result registers: the output register or
        # queue reads them an edge after the sum (the queue's multiplexers stay off
        # the adder), with the flags registered alike (`res`).
        acc_bits = self.acc_bits
        acc = [Signal(signed(acc_bits), name=f"acc{p}") for p in range(pe)]
        bias = [int(b) for b in self._bias]
        res = Signal(data.StructLayout({"valid": 1, "group": ct.og.shape(), "last": 1}),
                     name="res")
        with m.If(en):
            m.d.sync += [res.valid.eq(ct.valid & ct.done), res.group.eq(ct.og),
                         res.last.eq(ct.last)]
        for p in range(pe):
            new = Signal(signed(acc_bits), name=f"acc_next{p}")
            lane_bias = [bias[g * pe + p] for g in range(no)]
            if self._skid:      # the next step's start, registered (start_register)
                b = group_bias(lane_bias, signed(acc_bits), ct_pre.og)
                start = start_register(m, en, Mux(ct_pre.first, b,
                                                  Mux(ct.valid, new, acc[p])), f"start{p}")
            else:
                start = Mux(ct.first, group_bias(lane_bias, signed(acc_bits), ct.og), acc[p])
            m.d.comb += new.eq(start + sums[p])
            with m.If(en & ct.valid):
                m.d.sync += acc[p].eq(new)
        out.write(WeightRom.latency + mul_latency(self._backend) + regs + 1,
                  step & closes, res.valid,
                  lambda p: [p.group.eq(res.group), p.last.eq(res.last),
                             *[p.acc[k].eq(acc[k]) for k in range(pe)]])
        return m
