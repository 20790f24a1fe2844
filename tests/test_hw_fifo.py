"""StreamFifo, RegisterSlice and CreditQueue: every beat once, in order, under gaps and
stalls."""

import pytest
from amaranth import Module, Signal
from amaranth.hdl import signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hwconv.errors import HwconvError
from hwconv.hw.fifo import CreditQueue, RegisterSlice, StreamFifo
from hwconv.hw.stream import beat_signature
from hwconv.hw.testbench import run_streams

BEATS = [([v % 128, -(v % 97)], int(v % 13 == 12)) for v in range(200)]


@pytest.mark.parametrize("make", [lambda s: RegisterSlice(s),
                                  lambda s: RegisterSlice(s, skid=False),
                                  lambda s: StreamFifo(s, 5)],
                         ids=["slice", "plain_slice", "fifo"])
@pytest.mark.parametrize("valid_prob,ready_prob", [(1.0, 1.0), (0.5, 0.5), (1.0, 0.3),
                                                   (0.3, 1.0)])
def test_every_beat_once_in_order(make, valid_prob, ready_prob):
    dut = make(beat_signature(signed(8), 2))
    run = run_streams(dut, {"i": BEATS}, {"o": len(BEATS)}, valid_prob=valid_prob,
                      ready_prob=ready_prob, seed=3)
    assert run.outputs["o"] == BEATS


@pytest.mark.parametrize("skid", [True, False])
def test_slice_full_throughput_one_cycle_latency(skid):
    run = run_streams(RegisterSlice(beat_signature(signed(8), 2), skid=skid), {"i": BEATS},
                      {"o": len(BEATS)})
    ins, outs = run.in_cycles["i"], run.out_cycles["o"]
    assert [o - i for i, o in zip(ins, outs)] == [1] * len(BEATS)
    assert outs[-1] - outs[0] == len(BEATS) - 1


@pytest.mark.parametrize("skid,held", [(True, 2), (False, 1)])
def test_slice_ready_under_a_stalled_output(skid, held):
    """With its output stalled a skid slice takes one more beat (its skid entry), then
    its ready is low from a flip-flop; a plain one holds one beat, and its ready follows
    the output's ready in the same cycle."""
    dut = RegisterSlice(beat_signature(signed(8), 2), skid=skid)
    taken, comb = [], []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        for cycle in range(6):
            ctx.set(dut.i.payload.data[0], cycle)
            if ctx.get(dut.i.ready):
                taken.append(cycle)
            await ctx.tick()
        ctx.set(dut.o.ready, 1)         # the consumer frees the output: ready now?
        comb.append(ctx.get(dut.i.ready))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert taken == list(range(held))
    assert comb == [int(not skid)]


def test_fifo_depth_error():
    with pytest.raises(HwconvError, match="depth must be an integer >= 2"):
        StreamFifo(beat_signature(signed(8), 1), 1)


class _CreditPipe(wiring.Component):
    """A free-running delay line of ``latency`` registers into a CreditQueue: a beat
    enters only with a credit, as the credit-mode stages do."""

    def __init__(self, signature, latency, depth):
        self._latency, self._depth = latency, depth
        super().__init__({"i": In(signature), "o": Out(signature)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.q = q = CreditQueue(self.o.signature, self._depth)
        wiring.connect(m, q.o, wiring.flipped(self.o))
        take = self.i.valid & q.ok
        m.d.comb += [self.i.ready.eq(q.ok), q.reserve.eq(take)]
        valid, payload = take, self.i.payload
        for k in range(self._latency):
            v, p = Signal(name=f"v{k}"), Signal.like(self.i.payload, name=f"p{k}")
            m.d.sync += [v.eq(valid), p.eq(payload)]
            valid, payload = v, p
        m.d.comb += [q.w_en.eq(valid), q.w_data.eq(payload)]
        return m


@pytest.mark.parametrize("latency,depth", [(0, 2), (3, 5), (3, 2), (6, 8)])
@pytest.mark.parametrize("valid_prob,ready_prob", [(1.0, 1.0), (0.5, 0.5), (1.0, 0.3)])
def test_credit_queue_every_beat_once_in_order(latency, depth, valid_prob, ready_prob):
    """Whatever the depth (fewer credits than the flight only slows it down), no beat is
    lost, duplicated or reordered under gaps and stalls."""
    dut = _CreditPipe(beat_signature(signed(8), 2), latency, depth)
    run = run_streams(dut, {"i": BEATS}, {"o": len(BEATS)}, valid_prob=valid_prob,
                      ready_prob=ready_prob, seed=5)
    assert run.outputs["o"] == BEATS


@pytest.mark.parametrize("latency", [1, 2, 5])
def test_credit_queue_full_rate_at_latency_plus_two(latency):
    """``depth = latency + 2`` credits: one beat per cycle, a beat on ``o`` one edge
    after its write (``latency + 1`` after it entered); one credit fewer is not enough."""
    run = run_streams(_CreditPipe(beat_signature(signed(8), 2), latency, latency + 2),
                      {"i": BEATS}, {"o": len(BEATS)})
    ins, outs = run.in_cycles["i"], run.out_cycles["o"]
    assert [o - i for i, o in zip(ins, outs)] == [latency + 1] * len(BEATS)
    assert outs[-1] - outs[0] == len(BEATS) - 1
    slow = run_streams(_CreditPipe(beat_signature(signed(8), 2), latency, latency + 1),
                       {"i": BEATS}, {"o": len(BEATS)})
    assert slow.out_cycles["o"][-1] - slow.out_cycles["o"][0] > len(BEATS) - 1


def test_credit_queue_depth_checked():
    with pytest.raises(HwconvError, match="CreditQueue: depth must be an integer >= 2"):
        CreditQueue(beat_signature(signed(8), 2), 1)
