"""Dense stage vs golden.dense: folding sweep, flattened feature maps, timing, errors."""

import numpy as np
import pytest
from window_cases import reduced

from hwconv import golden
from hwconv.errors import HwconvError
from hwconv.hw.dense import Dense, flatten_order
from hwconv.hw.stream import decode_beats, encode_frame
from hwconv.hw.testbench import run_streams
from hwconv.numerics import QParams, Requant
from hwconv.quant import QDense


def make_dense(o, n, seed, in_dtype="int8", out_dtype="int8", weight_bits=8, extreme=False):
    rng = np.random.default_rng(seed)
    lim = (1 << (weight_bits - 1)) - 1
    w = rng.integers(-lim, lim + 1, (o, n))
    if extreme:
        w[0] = lim
        w[-1] = -lim - 1
    in_q = QParams(0.05, 7 if in_dtype == "int8" else 131, in_dtype)
    out_q = QParams(0.1, -5 if out_dtype == "int8" else 20, out_dtype)
    spread = 3 * np.sqrt(n) * lim * 80
    op = QDense(w, rng.integers(-3000, 3000, o), in_q=in_q, out_q=out_q,
                requant=Requant.from_ratio(rng.uniform(0.5, 2, o) * 128 / spread),
                weight_bits=weight_bits)
    op.infer_shape("dense", (n,))
    return op


def random_input(op, shape, frames, seed, extreme=False):
    rng = np.random.default_rng(seed)
    q = op.in_q
    x = rng.integers(q.qmin, q.qmax + 1, (frames,) + tuple(shape))
    if extreme:
        x[0] = q.qmax
        x[1] = q.qmin
    return x


def check(dut, op, xs, lanes_in, lanes_out, expect, seed=0, valid_prob=0.6, ready_prob=0.5):
    beats = [b for x in xs for b in encode_frame(x, lanes_in)]
    per_frame = expect.shape[1] // lanes_out
    run = run_streams(dut, {"i": beats}, {"o": per_frame * len(xs)}, valid_prob=valid_prob,
                      ready_prob=ready_prob, seed=seed)
    out = run.outputs["o"]
    got = np.stack([decode_beats(out[f * per_frame:(f + 1) * per_frame], expect.shape[1:],
                                 lanes_out) for f in range(len(xs))])
    np.testing.assert_array_equal(got, expect)
    return run


@pytest.mark.parametrize("o,n,pe,simd,in_dtype,out_dtype,lps", [
    (6, 12, 1, 1, "int8", "int8", 1),
    (6, 12, 2, 3, "uint8", "int8", 1),
    (6, 12, 3, 4, "int8", "uint8", 0),
    (6, 12, 6, 12, "int8", "int8", 2),
    (5, 13, 5, 13, "uint8", "uint8", 1),
    (4, 8, 1, 8, "int8", "int8", 1),
    (10, 7, 2, 7, "int8", "int8", 3),
])
def test_dense_bit_exact(o, n, pe, simd, in_dtype, out_dtype, lps):
    op = make_dense(o, n, seed=o * 100 + n, in_dtype=in_dtype, out_dtype=out_dtype,
                    extreme=True)
    dut = Dense(op, (n,), pe=pe, simd=simd, levels_per_stage=lps)
    xs = random_input(op, (n,), 5, seed=pe + simd, extreme=True)
    check(dut, op, xs, simd, pe, golden.dense(xs, op), seed=pe * simd)


def test_dense_narrow_weights():
    op = make_dense(4, 6, seed=3, weight_bits=4, extreme=True)
    dut = Dense(op, (6,), pe=2, simd=2)
    xs = random_input(op, (6,), 4, seed=3, extreme=True)
    check(dut, op, xs, 2, 2, golden.dense(xs, op))


@pytest.mark.parametrize("shape,pe,simd", [((3, 5, 4), 2, 2), ((2, 13, 1), 3, 1),
                                           ((4, 4, 3), 1, 3)])
def test_dense_streams_flattened_map(shape, pe, simd):
    """The stage reads the channels-last feature map and computes Dense(Flatten(x))."""
    n = int(np.prod(shape))
    op = make_dense(6, n, seed=n, in_dtype="uint8")
    dut = Dense(op, shape, pe=pe, simd=simd)
    xs = random_input(op, shape, 3, seed=n)
    expect = golden.dense(golden.flatten(xs), op)
    check(dut, op, xs, simd, pe, expect, seed=n)


def test_flatten_order_matches_golden_flatten():
    x = np.arange(2 * 3 * 5 * 4).reshape(2, 3, 5, 4)
    np.testing.assert_array_equal(golden.flatten(x)[:, flatten_order((3, 5, 4))],
                                  x.reshape(2, -1))


def test_dense_explicit_input_order():
    op = make_dense(4, 6, seed=9)
    order = np.array([5, 0, 3, 1, 4, 2])
    dut = Dense(op, (6,), pe=2, simd=3, input_order=order)
    xs = random_input(op, (6,), 3, seed=9)
    streamed = np.empty_like(xs)
    streamed[:] = xs[:, order]
    check(dut, op, streamed, 3, 2, golden.dense(xs, op))


@pytest.mark.parametrize("pe,simd,lps,backend", [(1, 1, 1, "generic"), (2, 4, 1, "ecp5"),
                                                (4, 8, 1, "ice40"), (1, 8, 0, "xilinx"),
                                                (2, 8, 2, "generic")])
def test_dense_timing(pe, simd, lps, backend):
    """Folded: exactly (N/simd)*(O/pe) cycles per vector back to back; latency as stated."""
    op = make_dense(4, 8, seed=1)
    dut = Dense(op, (8,), pe=pe, simd=simd, levels_per_stage=lps, backend=backend)
    frames = 4
    xs = random_input(op, (8,), frames, seed=1)
    run = check(dut, op, xs, simd, pe, golden.dense(xs, op), valid_prob=1, ready_prob=1)
    oc, ic = run.out_cycles["o"], run.in_cycles["i"]
    per = 4 // pe
    assert dut.cycles_per_frame == (8 // simd) * (4 // pe)
    assert (oc[-1] - oc[per - 1]) == (frames - 1) * dut.cycles_per_frame
    assert oc[0] - ic[0] == dut.latency
    assert dut.multipliers == pe * simd
    assert dut.storage_words == (8 if pe < 4 else 0) and dut.weight_words == 32


def test_dense_errors():
    op = make_dense(6, 12, seed=0)
    with pytest.raises(HwconvError, match="pe=4"):
        Dense(op, (12,), pe=4)
    with pytest.raises(HwconvError, match="simd=5"):
        Dense(op, (12,), simd=5)
    with pytest.raises(HwconvError, match="in_shape"):
        Dense(op, (13,))
    with pytest.raises(HwconvError, match="simd"):
        Dense(op, (2, 2, 3), simd=2)       # 2 does not divide C=3
    with pytest.raises(HwconvError, match="input_order"):
        Dense(op, (12,), input_order=[0] * 12)
    with pytest.raises(HwconvError, match="QDense"):
        Dense(object(), (12,))
    with pytest.raises(HwconvError, match="unknown multiplier back end"):
        Dense(op, (12,), backend="dsp99")


DENSE_SWEEP = [(pe, simd, dt, lps) for pe in (1, 2, 3, 6) for simd in (1, 2, 3, 4, 6, 12)
               for dt, lps in (("int8", 1), ("uint8", 0))]


@pytest.mark.slow
@pytest.mark.parametrize("pe,simd,dtype,lps", reduced(DENSE_SWEEP, 6))
def test_dense_folding_sweep(pe, simd, dtype, lps):
    """Every (pe, simd) dividing (O, N) = (6, 12), harsh valid gaps and ready stalls."""
    op = make_dense(6, 12, seed=pe * 13 + simd, in_dtype=dtype, out_dtype=dtype,
                    extreme=True)
    dut = Dense(op, (12,), pe=pe, simd=simd, levels_per_stage=lps)
    xs = random_input(op, (12,), 6, seed=pe + 17 * simd, extreme=True)
    check(dut, op, xs, simd, pe, golden.dense(xs, op), seed=simd, valid_prob=0.3,
          ready_prob=0.3)
