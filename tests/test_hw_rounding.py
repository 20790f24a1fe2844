"""Round half to even (imported onnxruntime models) in every hardware rescaler, on
ratios chosen so that exact ties are frequent: bit-exact with the golden model."""

import numpy as np
import pytest
from amaranth.hdl import signed
from window_cases import run_frames

from hwconv import golden
from hwconv.hw.add import Add
from hwconv.hw.pool import PoolActivate
from hwconv.hw.requant import Requantizer
from hwconv.hw.stream import decode_beats, encode_frame
from hwconv.hw.testbench import run_streams
from hwconv.ir import Activation, MaxPool
from hwconv.numerics import QParams, Requant, round_shift
from hwconv.quant import quantize_activation, quantize_add


@pytest.mark.parametrize("limbs", [1, 3])
@pytest.mark.parametrize("rounding", ["half_up", "half_even"])
def test_requantizer_ties(rounding, limbs):
    rq = Requant.from_ratio([0.5, 0.25, 0.125, 1 / 3], rounding=rounding)
    rng = np.random.default_rng(1)
    acc = rng.integers(-300, 300, (30, 4))
    ties = (acc[:, :3] * rq.multiplier[:3]) % (1 << rq.shift[:3]) == (1 << (rq.shift[:3] - 1))
    assert ties.mean() > 0.2
    beats = [{"acc": list(row[g * 2:(g + 1) * 2]), "group": g, "last": 0}
             for row in acc for g in range(2)]
    run = run_streams(Requantizer(rq, 4, 2, 12, 0, -128, 127, signed(8), limbs=limbs),
                      {"i": beats},
                      {"o": len(beats)}, valid_prob=0.7, ready_prob=0.6)
    got = np.array([v for vals, _ in run.outputs["o"] for v in vals]).reshape(30, 4)
    np.testing.assert_array_equal(got, np.clip(rq.apply(acc), -128, 127))
    if rounding == "half_even":
        assert not np.array_equal(got[:, :3], np.clip(
            Requant.from_ratio([0.5, 0.25, 0.125]).apply(acc[:, :3]), -128, 127))


def test_activation_unit_ties_half_even():
    q_in, q_out = QParams(0.1, -3, "int8"), QParams(0.2, 4, "int8")   # ratio 0.5: ties
    act = quantize_activation(Activation("leaky_relu", alpha=0.5), q_in, q_out,
                              rounding="half_even")
    xs = np.random.default_rng(2).integers(-128, 128, (3, 4, 5, 2))
    expect = np.stack([golden.pool_activate(x[None], None, act)[0] for x in xs])
    run_frames(PoolActivate(None, act, (4, 5, 2), lanes=2), xs, 2, expect, 2)
    pooled = MaxPool(2)
    expect = np.stack([golden.pool_activate(x[None], pooled, act)[0] for x in xs])
    run_frames(PoolActivate(pooled, act, (4, 5, 2), lanes=1), xs, 1, expect, 1)


def test_add_ties_half_even():
    a_q, b_q = QParams(0.1, 2, "int8"), QParams(0.1, -5, "int8")
    op = quantize_add(a_q, b_q, QParams(0.2, 1, "int8"), rounding="half_even")
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, (2, 3, 4, 2))
    b = rng.integers(-128, 128, (2, 3, 4, 2))
    v = (a - 2) * op.mult_a + (b + 5) * op.mult_b
    assert np.mean(v % (1 << op.shift) == 1 << (op.shift - 1)) > 0.3
    assert not np.array_equal(round_shift(v, op.shift, "half_even"), round_shift(v, op.shift))
    beats_a = [bt for x in a for bt in encode_frame(x, 2)]
    beats_b = [bt for x in b for bt in encode_frame(x, 2)]
    run = run_streams(Add(op, (3, 4, 2), lanes=2, skip_depth=4), {"a": beats_a, "b": beats_b},
                      {"o": len(beats_b)}, valid_prob=0.7, ready_prob=0.6)
    per = len(beats_b) // 2
    got = np.stack([decode_beats(run.outputs["o"][f * per:(f + 1) * per], (3, 4, 2), 2)
                    for f in range(2)])
    np.testing.assert_array_equal(got, golden.add(a, b, op))
