"""The golden model against straightforward per-pixel loops (an independent spelling of
the same integer semantics), and its numeric building blocks."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hwconv import golden, quant, reference, zoo
from hwconv.errors import HwconvError
from hwconv.ir import MaxPool
from hwconv.numerics import QParams, Requant, round_shift
from hwconv.quant import QActivation, QConv2D


def naive_conv(x, op):
    """Per-pixel, per-tap loop: sum((x - zp) * w) + bias, requant, saturate."""
    b, h, w, c = x.shape
    o, kh, kw, cg = op.weight.shape
    top, left, _, _ = op.padding
    oh, ow = (golden.conv_acc(x[:1], op)).shape[1:3]
    og = o // op.groups
    out = np.zeros((b, oh, ow, o), dtype=np.int64)
    for n in range(b):
        for y in range(oh):
            for xx in range(ow):
                for oc in range(o):
                    g = oc // og
                    acc = int(op.bias[oc])
                    for i in range(kh):
                        for j in range(kw):
                            r = y * op.stride[0] + i * op.dilation[0] - top
                            s = xx * op.stride[1] + j * op.dilation[1] - left
                            for ci in range(cg):
                                if 0 <= r < h and 0 <= s < w:
                                    v = int(x[n, r, s, g * cg + ci]) - op.in_q.zero_point
                                else:
                                    v = 0
                                acc += v * int(op.weight[oc, i, j, ci])
                    m, sh = int(op.requant.multiplier[oc]), int(op.requant.shift[oc])
                    r_ = (acc * m + ((1 << (sh - 1)) if sh else 0)) >> sh
                    out[n, y, xx, oc] = min(max(op.out_q.zero_point + r_, op.out_q.qmin),
                                            op.out_q.qmax)
    return out


conv_cases = st.fixed_dictionaries({
    "h": st.integers(3, 7), "w": st.integers(3, 7), "groups": st.sampled_from([1, 2, 4]),
    "cg": st.integers(1, 2), "og": st.integers(1, 2), "k": st.integers(1, 3),
    "stride": st.integers(1, 2), "dil": st.integers(1, 2), "pad": st.integers(0, 2),
    "dtype": st.sampled_from(["int8", "uint8"]), "seed": st.integers(0, 2**31),
})


@settings(max_examples=40, deadline=None)
@given(conv_cases)
def test_conv_matches_per_pixel_loops(p):
    rng = np.random.default_rng(p["seed"])
    c, o = p["groups"] * p["cg"], p["groups"] * p["og"]
    span = (p["k"] - 1) * p["dil"] + 1
    if span > min(p["h"], p["w"]) + 2 * p["pad"]:
        return
    in_q = QParams(0.05, int(rng.integers(-20, 20)) + (128 if p["dtype"] == "uint8" else 0),
                   p["dtype"])
    out_q = QParams(0.1, 3, "int8")
    w = rng.integers(-127, 128, (o, p["k"], p["k"], p["cg"]))
    op = QConv2D(w, rng.integers(-5000, 5000, o), p["stride"], p["pad"], p["dil"],
                 p["groups"], in_q=in_q, out_q=out_q,
                 requant=Requant.from_ratio(rng.uniform(1e-4, 1e-2, o)))
    op.infer_shape("c", (p["h"], p["w"], c))
    x = rng.integers(in_q.qmin, in_q.qmax + 1, (2, p["h"], p["w"], c))
    np.testing.assert_array_equal(golden.conv2d(x, op), naive_conv(x, op))


def test_max_pool_padding_never_wins():
    x = np.full((1, 3, 3, 1), -128)
    x[0, 1, 1, 0] = -100
    y = golden.max_pool(x, MaxPool(3, 1, 1), qmin=-128)
    assert y.shape == (1, 3, 3, 1) and (y == -100).all()


@given(st.integers(-2**40, 2**40), st.integers(0, 40))
def test_round_shift_is_round_half_up(v, s):
    expect = math.floor(Fraction(v, 2**s) + Fraction(1, 2)) if s else v
    assert int(round_shift(v, s)) == expect


@given(st.integers(-2**40, 2**40), st.integers(0, 40))
def test_round_shift_half_even(v, s):
    assert int(round_shift(v, s, "half_even")) == round(Fraction(v, 2**s))


@given(st.floats(1e-9, 1e3))
def test_requant_multiplier_is_accurate(r):
    rq = Requant.from_ratio(r, 16)
    assert 0 <= rq.multiplier[0] < 1 << 16
    assert abs(rq.ratio[0] - r) <= r * 2**-15 + 2.0**-46


def test_requant_identity_is_exact():
    d = np.arange(-300, 300)
    np.testing.assert_array_equal(Requant.identity().apply(d), d)


def test_activation_relu_and_leaky():
    q = QParams(0.1, -10, "int8")
    relu = quant.quantize_activation(
        __import__("hwconv.ir", fromlist=["Activation"]).Activation("relu"), q, q)
    x = np.arange(-128, 128)
    np.testing.assert_array_equal(golden.activation(x, relu), np.maximum(x, -10))
    leaky = QActivation("leaky_relu", q, q, Requant.identity(), Requant.from_ratio(0.25),
                        -128, 127)
    y = golden.activation(x, leaky)
    np.testing.assert_array_equal(y[x >= -10], x[x >= -10])
    assert np.all(np.diff(y) >= 0)


def test_accumulator_width_holds_the_worst_case():
    """Drive every product of channel 0 to its extreme: the result fits ``acc_bits``."""
    rng = np.random.default_rng(0)
    for zp in (-128, 0, 127):
        in_q = QParams(0.1, zp, "int8")
        w = rng.integers(-127, 128, (2, 3, 3, 5))
        op = QConv2D(w, rng.integers(-1000, 1000, 2), in_q=in_q, out_q=in_q,
                     requant=Requant.from_ratio([1e-3, 1e-3]))
        op.infer_shape("c", (3, 3, 5))
        for sign in (1, -1):
            x = np.where(sign * w[0] >= 0, 127, -128)[None]
            acc = int(golden.conv_acc(x, op)[0, 0, 0, 0])
            assert abs(acc) <= op.acc_bound < 1 << (op.acc_bits - 1)
        assert op.acc_bits <= (op.acc_bound).bit_length() + 1


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_quantized_network_tracks_float(dtype):
    rng = np.random.default_rng(1)
    net = zoo.residual_cnn(seed=1)
    cal = rng.normal(size=(32,) + net.input_shape)
    qnet = quant.quantize(net, cal, act_dtype=dtype)
    x = rng.normal(size=(8,) + net.input_shape)
    ref = reference.run(net, x)
    out = golden.infer(qnet, x)
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()


def test_golden_refuses_bad_input():
    qnet = quant.quantize(zoo.small_cnn(), np.zeros((2, 8, 8, 1)) + 0.5)
    with pytest.raises(HwconvError, match="network expects"):
        golden.run(qnet, np.zeros((1, 8, 7, 1), dtype=np.int64))
    with pytest.raises(HwconvError, match="integers in int8 range"):
        golden.run(qnet, np.full((1, 8, 8, 1), 300))
    with pytest.raises(HwconvError, match="quantize it first"):
        golden.run(zoo.small_cnn(), np.zeros((1, 8, 8, 1), dtype=np.int64))


def test_dense_exact_beyond_float32_range():
    """A bound above 2**24 switches the exact BLAS path to float64; still exact."""
    from hwconv.quant import QDense

    rng = np.random.default_rng(2)
    n = 1500
    q = QParams(1.0, -128, "int8")
    w = rng.choice([-127, 127], (3, n))
    op = QDense(w, [7, -7, 0], in_q=q, out_q=q, requant=Requant.from_ratio([1e-6] * 3))
    op.infer_shape("d", (n,))
    assert op.acc_bound >= 1 << 24
    x = np.where(w[0] > 0, 127, -128)[None, :]
    acc = [sum((int(a) + 128) * int(b) for a, b in zip(x[0], w[c])) + [7, -7, 0][c]
           for c in range(3)]
    expect = [min(max(-128 + ((a * int(m) + (1 << (int(s) - 1))) >> int(s)), -128), 127)
              for a, m, s in zip(acc, op.requant.multiplier, op.requant.shift)]
    np.testing.assert_array_equal(golden.dense(x, op)[0], expect)
