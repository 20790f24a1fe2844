"""LaneConverter: bit-exact re-packing under gaps and stalls, full rate for gather/scatter."""

import numpy as np
import pytest
from amaranth.hdl import signed

from hwconv.errors import HwconvError
from hwconv.hw.lanes import LaneConverter
from hwconv.hw.stream import decode_beats, encode_frame
from hwconv.hw.testbench import run_streams


@pytest.mark.parametrize("c,lin,lout", [(12, 1, 4), (12, 4, 1), (12, 4, 6), (6, 2, 3),
                                        (8, 8, 2), (5, 5, 5)])
def test_lane_converter_repacks(c, lin, lout):
    rng = np.random.default_rng(c + lin * 7 + lout)
    frames = [rng.integers(-128, 128, (3, 2, c)) for _ in range(3)]
    beats = [b for f in frames for b in encode_frame(f, lin)]
    n_out = sum(f.size for f in frames) // lout
    run = run_streams(LaneConverter(signed(8), c, lin, lout), {"i": beats}, {"o": n_out},
                      valid_prob=0.7, ready_prob=0.6, seed=c)
    per = frames[0].size // lout
    for k, f in enumerate(frames):
        got = decode_beats(run.outputs["o"][k * per:(k + 1) * per], f.shape, lout)
        np.testing.assert_array_equal(got, f)


@pytest.mark.parametrize("lin,lout", [(1, 4), (4, 1), (2, 2)])
def test_lane_converter_full_rate(lin, lout):
    x = np.arange(64 * 4).reshape(8, 8, 4) % 100
    beats = encode_frame(x, lin)
    run = run_streams(LaneConverter(signed(8), 4, lin, lout), {"i": beats},
                      {"o": x.size // lout})
    busy = max(len(beats), x.size // lout)
    assert run.cycles <= busy + 3


def test_lane_converter_refuses_lanes_not_dividing():
    with pytest.raises(HwconvError, match="lanes=3 must divide the 8 channels"):
        LaneConverter(signed(8), 8, 3, 1)
