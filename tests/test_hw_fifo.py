"""StreamFifo and RegisterSlice: every beat once, in order, under gaps and stalls."""

import pytest
from amaranth.hdl import signed
from amaranth.sim import Simulator

from hwconv.errors import HwconvError
from hwconv.hw.fifo import RegisterSlice, StreamFifo
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
