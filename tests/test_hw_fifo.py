"""StreamFifo and RegisterSlice: every beat once, in order, under gaps and stalls."""

import pytest
from amaranth.hdl import signed

from hwconv.errors import HwconvError
from hwconv.hw.fifo import RegisterSlice, StreamFifo
from hwconv.hw.stream import beat_signature
from hwconv.hw.testbench import run_streams

BEATS = [([v % 128, -(v % 97)], int(v % 13 == 12)) for v in range(200)]


@pytest.mark.parametrize("make", [lambda s: RegisterSlice(s), lambda s: StreamFifo(s, 5)],
                         ids=["slice", "fifo"])
@pytest.mark.parametrize("valid_prob,ready_prob", [(1.0, 1.0), (0.5, 0.5), (1.0, 0.3),
                                                   (0.3, 1.0)])
def test_every_beat_once_in_order(make, valid_prob, ready_prob):
    dut = make(beat_signature(signed(8), 2))
    run = run_streams(dut, {"i": BEATS}, {"o": len(BEATS)}, valid_prob=valid_prob,
                      ready_prob=ready_prob, seed=3)
    assert run.outputs["o"] == BEATS


def test_slice_full_throughput_one_cycle_latency():
    run = run_streams(RegisterSlice(beat_signature(signed(8), 2)), {"i": BEATS},
                      {"o": len(BEATS)})
    ins, outs = run.in_cycles["i"], run.out_cycles["o"]
    assert [o - i for i, o in zip(ins, outs)] == [1] * len(BEATS)
    assert outs[-1] - outs[0] == len(BEATS) - 1


def test_fifo_depth_error():
    with pytest.raises(HwconvError, match="depth must be an integer >= 2"):
        StreamFifo(beat_signature(signed(8), 1), 1)
