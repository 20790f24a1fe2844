"""GlobalAvgPool stage vs golden.global_avg_pool: shapes, lanes, dtypes, timing, errors."""

import numpy as np
import pytest
from window_cases import reduced

from hwconv import golden
from hwconv.errors import HwconvError
from hwconv.hw.gap import GlobalAvgPool
from hwconv.hw.stream import decode_beats, encode_frame
from hwconv.hw.testbench import run_streams
from hwconv.numerics import QParams, Requant
from hwconv.quant import QGlobalAvgPool


def make_gap(shape, in_dtype="int8", out_dtype="int8", scale_out=0.05):
    in_q = QParams(0.05, 9 if in_dtype == "int8" else 140, in_dtype)
    out_q = QParams(scale_out, -3 if out_dtype == "int8" else 128, out_dtype)
    rq = Requant.from_ratio(in_q.scale / (out_q.scale * shape[0] * shape[1]))
    return QGlobalAvgPool(in_q=in_q, out_q=out_q, requant=rq)


def run_gap(op, shape, lanes, frames, seed, valid_prob=0.6, ready_prob=0.5, extreme=False,
            backend="generic"):
    rng = np.random.default_rng(seed)
    q = op.in_q
    xs = rng.integers(q.qmin, q.qmax + 1, (frames,) + shape)
    if extreme:
        xs[0] = q.qmax
        xs[1] = q.qmin
    dut = GlobalAvgPool(op, shape, lanes=lanes, backend=backend)
    beats = [b for x in xs for b in encode_frame(x, lanes)]
    per = shape[2] // lanes
    run = run_streams(dut, {"i": beats}, {"o": per * frames}, valid_prob=valid_prob,
                      ready_prob=ready_prob, seed=seed)
    out = run.outputs["o"]
    got = np.stack([decode_beats(out[f * per:(f + 1) * per], (1, 1, shape[2]), lanes)
                    for f in range(frames)])
    np.testing.assert_array_equal(got, golden.global_avg_pool(xs, op))
    return dut, run


@pytest.mark.parametrize("shape,lanes,in_dtype,out_dtype", [
    ((3, 13, 4), 1, "int8", "int8"),
    ((5, 5, 6), 2, "uint8", "int8"),
    ((4, 3, 6), 6, "int8", "uint8"),
    ((1, 1, 3), 3, "uint8", "uint8"),
    ((2, 7, 8), 4, "int8", "int8"),
])
def test_gap_bit_exact(shape, lanes, in_dtype, out_dtype):
    op = make_gap(shape, in_dtype, out_dtype)
    run_gap(op, shape, lanes, frames=4, seed=sum(shape) + lanes, extreme=True)


def test_gap_saturates():
    """A tiny output scale drives most outputs into saturation; still bit-exact."""
    op = make_gap((3, 3, 4), scale_out=0.002)
    run_gap(op, (3, 3, 4), 2, frames=3, seed=5, extreme=True)


@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_gap_timing(lanes):
    shape = (3, 5, 4)
    frames = 4
    dut, run = run_gap(make_gap(shape), shape, lanes, frames, seed=1, valid_prob=1,
                       ready_prob=1)
    oc, ic = run.out_cycles["o"], run.in_cycles["i"]
    per = 4 // lanes
    assert dut.cycles_per_frame == 15 * per
    assert oc[-1] - oc[per - 1] == (frames - 1) * dut.cycles_per_frame
    assert ic[-1] - ic[0] == frames * dut.cycles_per_frame - 1     # never stalls the input
    assert oc[0] - ic[0] == dut.latency
    assert dut.storage_words == 4 and dut.multipliers == 0


@pytest.mark.parametrize("backend", ["ecp5", "ice40", "xilinx"])
def test_gap_multiplier_backends(backend):
    shape = (3, 5, 4)
    dut, run = run_gap(make_gap(shape, "uint8", "int8"), shape, 2, 3, seed=2, valid_prob=1,
                       ready_prob=1, backend=backend)
    assert run.out_cycles["o"][0] - run.in_cycles["i"][0] == dut.latency


def test_gap_errors():
    op = make_gap((4, 4, 6))
    with pytest.raises(HwconvError, match="lanes=4"):
        GlobalAvgPool(op, (4, 4, 6), lanes=4)
    with pytest.raises(HwconvError, match="in_shape"):
        GlobalAvgPool(op, (16, 6))
    with pytest.raises(HwconvError, match="QGlobalAvgPool"):
        GlobalAvgPool(object(), (4, 4, 6))


GAP_SWEEP = [(shape, lanes, dt) for shape in ((1, 13, 6), (7, 5, 6), (16, 16, 6))
             for lanes in (1, 2, 3, 6) for dt in ("int8", "uint8")]


@pytest.mark.slow
@pytest.mark.parametrize("shape,lanes,dtype", reduced(GAP_SWEEP, 5))
def test_gap_sweep(shape, lanes, dtype):
    op = make_gap(shape, dtype, "int8" if dtype == "uint8" else "uint8")
    run_gap(op, shape, lanes, frames=3, seed=lanes + shape[0], valid_prob=0.3,
            ready_prob=0.4, extreme=True)
