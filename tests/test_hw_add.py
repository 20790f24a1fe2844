"""Residual Add stage vs golden.add, and the skip FIFO depth rule under a late main path."""

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from window_cases import reduced

from hwconv import golden
from hwconv.errors import HwconvError
from hwconv.hw.add import Add, skip_fifo_depth
from hwconv.hw.stream import beat_signature, decode_beats, elem_shape, encode_frame
from hwconv.hw.testbench import run_streams
from hwconv.numerics import QParams
from hwconv.quant import QAdd, quantize_add


def make_add(a_dtype="int8", b_dtype="int8", out_dtype="int8", ratio=(0.7, 1.3)):
    a_q = QParams(0.04, 5 if a_dtype == "int8" else 120, a_dtype)
    b_q = QParams(0.04 * ratio[1] / ratio[0], -9 if b_dtype == "int8" else 135, b_dtype)
    out_q = QParams(0.04 / ratio[0], 3 if out_dtype == "int8" else 110, out_dtype)
    return quantize_add(a_q, b_q, out_q)


def frames_of(op, shape, frames, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(op.a_q.qmin, op.a_q.qmax + 1, (frames,) + shape)
    b = rng.integers(op.b_q.qmin, op.b_q.qmax + 1, (frames,) + shape)
    a[0], b[0] = op.a_q.qmax, op.b_q.qmax
    a[-1], b[-1] = op.a_q.qmin, op.b_q.qmin
    return a, b


def beats(xs, lanes):
    return [bt for x in xs for bt in encode_frame(x, lanes)]


def decode(out, shape, lanes, frames):
    per = int(np.prod(shape)) // lanes
    return np.stack([decode_beats(out[f * per:(f + 1) * per], shape, lanes)
                     for f in range(frames)])


@pytest.mark.parametrize("shape,lanes,dtypes,depth", [
    ((3, 13, 4), 2, ("int8", "int8", "int8"), 3),
    ((5, 5, 3), 3, ("uint8", "int8", "uint8"), 0),
    ((2, 3, 6), 1, ("int8", "uint8", "int8"), 1),
    ((4, 4, 8), 8, ("uint8", "uint8", "uint8"), 16),
    ((24,), 4, ("int8", "int8", "int8"), 5),
])
def test_add_bit_exact(shape, lanes, dtypes, depth):
    op = make_add(*dtypes)
    a, b = frames_of(op, shape, 3, seed=lanes + depth)
    dut = Add(op, shape, lanes=lanes, skip_depth=depth)
    n = len(beats(b, lanes))
    run = run_streams(dut, {"a": beats(a, lanes), "b": beats(b, lanes)}, {"o": n},
                      valid_prob={"a": 0.7, "b": 0.5}, ready_prob=0.6, seed=depth)
    np.testing.assert_array_equal(decode(run.outputs["o"], shape, lanes, 3),
                                  golden.add(a, b, op))


def test_add_one_sided_scale_saturates():
    """A large b/out ratio saturates often; the single rounding still matches."""
    op = make_add(ratio=(0.3, 1.9))
    a, b = frames_of(op, (4, 4, 2), 2, seed=3)
    dut = Add(op, (4, 4, 2), lanes=2)
    run = run_streams(dut, {"a": beats(a, 2), "b": beats(b, 2)}, {"o": 32},
                      valid_prob=0.8, ready_prob=0.7)
    np.testing.assert_array_equal(decode(run.outputs["o"], (4, 4, 2), 2, 2),
                                  golden.add(a, b, op))


@pytest.mark.parametrize("late", [40, 90])
def test_skip_fifo_absorbs_late_main_path(late):
    """b's first beat arrives ``late + 1`` edges after a's: a FIFO of the depth computed
    from that latency difference takes every a beat on arrival; a smaller one
    backpressures the skip producer (without losing a beat)."""
    op = make_add()
    shape = (4, 8, 2)
    a, b = frames_of(op, shape, 2, seed=late)
    n = len(beats(a, 1))
    streams = {"a": beats(a, 1), "b": beats(b, 1)}
    depth = skip_fifo_depth(late + 1)
    run = run_streams(Add(op, shape, skip_depth=depth), streams, {"o": n},
                      start={"b": late})
    np.testing.assert_array_equal(decode(run.outputs["o"], shape, 1, 2),
                                  golden.add(a, b, op))
    assert run.in_cycles["b"][0] - run.in_cycles["a"][0] == late + 1
    assert np.all(np.diff(run.in_cycles["a"]) == 1)            # never stalled
    small = 4
    run = run_streams(Add(op, shape, skip_depth=small), streams, {"o": n},
                      start={"b": late})
    np.testing.assert_array_equal(decode(run.outputs["o"], shape, 1, 2),
                                  golden.add(a, b, op))
    ac = run.in_cycles["a"]
    assert ac[small] >= late                                   # waited for b to start
    assert ac[small - 1] < late


class _Pipe(wiring.Component):
    """A main path that delays by ``stages`` registers (holds no beats beyond them)."""

    def __init__(self, elem, stages):
        self._stages = stages
        self.latency = stages
        super().__init__({"i": In(beat_signature(elem, 1)), "o": Out(beat_signature(elem, 1))})

    def elaborate(self, platform):
        m = Module()
        en = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(en)
        valid, payload = self.i.valid, self.i.payload
        for k in range(self._stages):
            v, p = (Signal(name=f"v{k}"), Signal.like(self.i.payload, name=f"p{k}")) \
                if k < self._stages - 1 else (self.o.valid, self.o.payload)
            with m.If(en):
                m.d.sync += [v.eq(valid), p.eq(payload)]
            valid, payload = v, p
        return m


class _Lag(wiring.Component):
    """A main path that emits beat k only once it holds beat k + lag (or the frame's
    end), as a line buffer does: with too small a skip FIFO the fork deadlocks."""

    def __init__(self, elem, lag):
        self._lag = lag
        self.latency = lag + 1
        super().__init__({"i": In(beat_signature(elem, 1)), "o": Out(beat_signature(elem, 1))})

    def elaborate(self, platform):
        m = Module()
        width = self.i.payload.shape().size
        m.submodules.q = q = SyncFIFO(width=width, depth=self._lag + 1)
        tails = Signal(range(self._lag + 2))
        put, get = self.i.valid & self.i.ready, self.o.valid & self.o.ready
        m.d.comb += [q.w_data.eq(self.i.payload), q.w_en.eq(self.i.valid),
                     self.i.ready.eq(q.w_rdy), self.o.payload.eq(q.r_data),
                     self.o.valid.eq(q.r_rdy & ((q.r_level == self._lag + 1) | (tails != 0))),
                     q.r_en.eq(self.o.ready & self.o.valid)]
        m.d.sync += tails.eq(tails + (put & self.i.payload.last) - (get & self.o.payload.last))
        return m


class _Residual(wiring.Component):
    """fork(i) -> (a: skip wire, b: main path) -> Add -> o, with a lockstep fork."""

    def __init__(self, op, shape, main, depth):
        self.add = Add(op, shape, skip_depth=depth)
        self.main = main
        sig = beat_signature(elem_shape(op.a_q.dtype), 1)
        super().__init__({"i": In(sig), "o": Out(self.add.o.signature.flip().flip())})

    def elaborate(self, platform):
        m = Module()
        m.submodules.add, m.submodules.main = add, main = self.add, self.main
        wiring.connect(m, main.o, add.b)
        wiring.connect(m, add.o, wiring.flipped(self.o))
        m.d.comb += [add.a.payload.eq(self.i.payload), main.i.payload.eq(self.i.payload),
                     add.a.valid.eq(self.i.valid & main.i.ready),
                     main.i.valid.eq(self.i.valid & add.a.ready),
                     self.i.ready.eq(add.a.ready & main.i.ready)]
        return m


_RESIDUAL_OP = QAdd(a_q=QParams(0.05, 4), b_q=QParams(0.05, 4), out_q=QParams(0.1, -2),
                   mult_a=23456, mult_b=9876, shift=16)


def residual_run(main, depth, frames=2, shape=(6, 6, 1)):
    op = _RESIDUAL_OP
    x = np.random.default_rng(depth).integers(-128, 128, (frames,) + shape)
    top = _Residual(op, shape, main, depth)
    run = run_streams(top, {"i": beats(x, 1)}, {"o": x.size})
    np.testing.assert_array_equal(decode(run.outputs["o"], shape, 1, frames),
                                  golden.add(x, x, op))
    return run


@pytest.mark.parametrize("stages", [2, 6, 15])
def test_skip_fifo_depth_keeps_full_rate(stages):
    """Full rate needs the main path at least as long as the FIFO's read latency (2);
    the rule's depth keeps the fork from ever stalling, one less does not."""
    main = _Pipe(elem_shape("int8"), stages)
    depth = skip_fifo_depth(main.latency)
    run = residual_run(main, depth)
    n = len(run.in_cycles["i"])
    assert run.in_cycles["i"][-1] - run.in_cycles["i"][0] == n - 1      # fork never stalls
    if depth > 3:
        slow = residual_run(_Pipe(elem_shape("int8"), stages), depth - 1)
        assert slow.in_cycles["i"][-1] - slow.in_cycles["i"][0] > n - 1


@pytest.mark.parametrize("lag", [3, 10, 20])
def test_skip_fifo_depth_avoids_deadlock(lag):
    main = _Lag(elem_shape("int8"), lag)
    residual_run(main, skip_fifo_depth(main.latency))
    # One beat short of the lag: the fork stops with the skip FIFO full while the main
    # path waits for more input; nothing ever comes out.
    top = _Residual(_RESIDUAL_OP, (6, 6, 1), _Lag(elem_shape("int8"), lag), lag)
    taken = []

    async def drive(ctx):
        ctx.set(top.o.ready, 1)
        ctx.set(top.i.valid, 1)
        for _ in range(300):
            _, _, ready, valid = await ctx.tick().sample(top.i.ready, top.o.valid)
            taken.append((int(ready), int(valid)))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(drive)
    sim.run()
    accepted = sum(r for r, _ in taken)
    assert accepted == lag and not any(v for _, v in taken)


def test_skip_fifo_depth_rule():
    assert skip_fifo_depth(0) == 3
    assert skip_fifo_depth(40) == 41
    assert skip_fifo_depth(40, 10) == 31
    assert skip_fifo_depth(41, cycles_per_beat=4) == 12
    with pytest.raises(HwconvError, match="latency_main_path"):
        skip_fifo_depth(-1)


def test_add_timing():
    op = make_add()
    shape = (4, 4, 4)
    a, b = frames_of(op, shape, 3, seed=0)
    dut = Add(op, shape, lanes=2, skip_depth=3)
    run = run_streams(dut, {"a": beats(a, 2), "b": beats(b, 2)}, {"o": 96})
    oc = run.out_cycles["o"]
    assert oc[-1] - oc[0] == 95 and dut.cycles_per_frame == 32
    assert oc[0] - run.in_cycles["a"][0] == dut.skip_latency
    late = run_streams(dut, {"a": beats(a, 2), "b": beats(b, 2)}, {"o": 96}, start={"b": 10})
    assert late.out_cycles["o"][0] - late.in_cycles["b"][0] == dut.latency
    assert dut.storage_words == 6 and dut.multipliers == 0 and dut.requant_multipliers == 4


def test_add_errors():
    op = make_add()
    with pytest.raises(HwconvError, match="lanes=3"):
        Add(op, (2, 2, 4), lanes=3)
    with pytest.raises(HwconvError, match="skip_depth"):
        Add(op, (2, 2, 4), skip_depth=-1)
    with pytest.raises(HwconvError, match="QAdd"):
        Add(object(), (2, 2, 4))


ADD_SWEEP = [(lanes, depth, dtypes) for lanes in (1, 2, 3, 6) for depth in (0, 1, 2, 7)
             for dtypes in (("int8", "int8", "int8"), ("uint8", "int8", "uint8"))]


@pytest.mark.slow
@pytest.mark.parametrize("lanes,depth,dtypes", reduced(ADD_SWEEP, 5))
def test_add_sweep(lanes, depth, dtypes):
    """Lanes, skip depths (0: direct join; 1: the FIFO's single-register case) and
    dtypes under harsh, uneven valid gaps and ready stalls."""
    op = make_add(*dtypes)
    shape = (3, 13, 6)
    a, b = frames_of(op, shape, 3, seed=lanes * 10 + depth)
    n = len(beats(b, lanes))
    run = run_streams(Add(op, shape, lanes=lanes, skip_depth=depth),
                      {"a": beats(a, lanes), "b": beats(b, lanes)}, {"o": n},
                      valid_prob={"a": 0.25, "b": 0.6}, ready_prob=0.3, seed=depth)
    np.testing.assert_array_equal(decode(run.outputs["o"], shape, lanes, 3),
                                  golden.add(a, b, op))
