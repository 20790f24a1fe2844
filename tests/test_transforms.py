"""Property tests: every graph transform leaves the output bit for bit unchanged.

Float networks are checked on integer inputs with integer (or dyadic) parameters, where
float64 arithmetic is exact, so equality is exact and a wrong rewrite cannot hide behind
a tolerance.  Pool-before-activate is also checked on quantized networks through the
integer golden model.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hwconv import golden, quant, reference
from hwconv.ir import Activation, AvgPool, BatchNorm, Conv2D, MaxPool, Network
from hwconv.transforms import fold_batchnorm, fuse_linear_convs, pool_before_activate

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
acts = st.sampled_from([("relu", {}), ("relu6", {}), ("clip", {"lo": -1.0, "hi": 2.0}),
                        ("identity", {}), ("leaky_relu", {"alpha": 0.125}),
                        ("leaky_relu", {"alpha": 0.3})])


def int_x(rng, shape, lo=-8, hi=8, batch=3):
    return rng.integers(lo, hi + 1, (batch,) + shape).astype(np.float64)


@st.composite
def conv_act_pool(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    h, w, c, o = draw(st.integers(4, 9)), draw(st.integers(4, 9)), draw(st.integers(1, 3)), \
        draw(st.integers(1, 4))
    k = draw(st.integers(1, 3))
    pk = draw(st.integers(2, 3))
    ps = draw(st.integers(1, pk))
    pp = draw(st.integers(0, pk - 1))
    fn, kw = draw(acts)
    net = Network((h, w, c))
    x = net.add("conv", Conv2D(rng.integers(-3, 4, (o, k, k, c)), rng.integers(-4, 5, o),
                               padding="same"), net.input)
    x = net.add("act", Activation(fn, **kw), x)
    x = net.add("pool", MaxPool(pk, ps, pp), x)
    net.add("head", Conv2D(rng.integers(-3, 4, (2, 1, 1, o))), x)
    return net, rng


@SETTINGS
@given(conv_act_pool())
def test_pool_before_activate_float_exact(case):
    net, rng = case
    new, report = pool_before_activate(net)
    assert [c.applied for c in report] == [True]
    assert [n.name for n in new.nodes] == ["conv", "pool", "act", "head"]
    x = int_x(rng, net.input_shape)
    np.testing.assert_array_equal(reference.run(new, x), reference.run(net, x))


@SETTINGS
@given(conv_act_pool(), st.sampled_from(["int8", "uint8"]))
def test_pool_before_activate_integer_exact(case, dtype):
    net, rng = case
    cal = rng.normal(size=(8,) + net.input_shape) * 4
    qnet = quant.quantize(net, cal, act_dtype=dtype)
    new, report = pool_before_activate(qnet)
    assert [c.applied for c in report] == [True]
    q = qnet.input_q
    x = rng.integers(q.qmin, q.qmax + 1, (6,) + net.input_shape)
    np.testing.assert_array_equal(golden.run(new, x), golden.run(qnet, x))


def test_pool_before_activate_refusals_say_why():
    net = Network((6, 6, 2))
    a = net.add("relu", Activation("relu"), net.input)
    net.add("avg", AvgPool(2), a)
    _, report = pool_before_activate(net)
    assert not report[0].applied and "average pooling does not commute with relu" in \
        str(report[0])
    net = Network((6, 6, 2))
    a = net.add("leaky", Activation("leaky_relu", alpha=-0.5), net.input)
    net.add("pool", MaxPool(2), a)
    new, report = pool_before_activate(net)
    assert not report[0].applied and "not monotone" in report[0].reason
    assert [n.name for n in new.nodes] == ["leaky", "pool"]


def test_pool_before_activate_keeps_shared_activation():
    """An activation read by two layers is not moved (the other reader needs it)."""
    net = Network((6, 6, 2))
    a = net.add("relu", Activation("relu"), net.input)
    net.add("pool", MaxPool(2), a)
    net.add("other", Conv2D(np.ones((1, 1, 1, 2))), a)
    new, report = pool_before_activate(net)
    assert report == [] and [n.name for n in new.nodes] == ["relu", "pool", "other"]


@st.composite
def conv_bn(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    c, o, k = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    eps = 0.25
    # gamma = +-2^g and var + eps = 4^j make the BN scale an exact power of two
    g = rng.integers(-2, 3, o)
    j = rng.integers(0, 3, o)
    gamma = rng.choice([-1.0, 1.0], o) * 2.0 ** g
    var = 4.0 ** j - eps
    bn = BatchNorm(gamma, rng.integers(-4, 5, o), rng.integers(-4, 5, o), var, eps)
    net = Network((6, 5, c))
    x = net.add("conv", Conv2D(rng.integers(-3, 4, (o, k, k, c)), rng.integers(-4, 5, o),
                               draw(st.integers(1, 2)), "same"), net.input)
    x = net.add("bn", bn, x)
    net.add("relu", Activation("relu"), x)
    return net, rng


@SETTINGS
@given(conv_bn())
def test_fold_batchnorm_exact(case):
    net, rng = case
    new, report = fold_batchnorm(net)
    assert [n.name for n in new.nodes] == ["conv", "relu"]
    assert report[0].applied
    x = int_x(rng, net.input_shape)
    np.testing.assert_array_equal(reference.run(new, x), reference.run(net, x))


def test_fold_batchnorm_negative_gamma_keeps_scales_positive_and_pool_commuting():
    rng = np.random.default_rng(5)
    net = Network((6, 6, 2))
    x = net.add("conv", Conv2D(rng.normal(size=(3, 3, 3, 2)), padding="same"), net.input)
    x = net.add("bn", BatchNorm([-1.5, 0.7, -0.2], [0.1, 0.0, -0.3], [0.2, -0.1, 0.0],
                                [1.0, 0.5, 2.0]), x)
    x = net.add("relu", Activation("relu"), x)
    net.add("pool", MaxPool(2), x)
    folded, report = fold_batchnorm(net)
    assert "2 channel(s) with negative gamma flipped" in report[0].reason
    xin = rng.normal(size=(4, 6, 6, 2))
    np.testing.assert_allclose(reference.run(folded, xin), reference.run(net, xin),
                               rtol=1e-12, atol=1e-12)
    qnet = quant.quantize(folded, rng.normal(size=(16, 6, 6, 2)))
    assert np.all(qnet.node("conv").op.requant.multiplier > 0)
    moved, rep = pool_before_activate(qnet)
    assert rep[0].applied
    xq = rng.integers(-128, 128, (4, 6, 6, 2))
    np.testing.assert_array_equal(golden.run(moved, xq), golden.run(qnet, xq))


def test_standalone_batchnorm_becomes_depthwise_conv():
    net = Network((4, 4, 2))
    net.add("bn", BatchNorm([2.0, -0.5], [1.0, 0.0], [0.0, 2.0], [0.75, 0.0], eps=0.25),
            net.input)
    new, report = fold_batchnorm(net)
    assert isinstance(new.node("bn").op, Conv2D) and new.node("bn").op.groups == 2
    x = int_x(np.random.default_rng(0), (4, 4, 2))
    np.testing.assert_array_equal(reference.run(new, x), reference.run(net, x))


@st.composite
def conv_conv(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    c, m, o = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    k1, k2 = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    net = Network((draw(st.integers(5, 8)), draw(st.integers(5, 8)), c))
    x = net.add("c1", Conv2D(rng.integers(-3, 4, (m, k1, k1, c)), rng.integers(-4, 5, m),
                             1, draw(st.sampled_from(["valid", "same", 1]))), net.input)
    net.add("c2", Conv2D(rng.integers(-3, 4, (o, k2, k2, m)), rng.integers(-4, 5, o),
                         draw(st.integers(1, 2)), "valid"), x)
    return net, rng


@SETTINGS
@given(conv_conv())
def test_fuse_linear_convs_exact(case):
    net, rng = case
    new, report = fuse_linear_convs(net, when="always")
    assert report[0].applied and [n.name for n in new.nodes] == ["c2"]
    k1, k2 = net.node("c1").op.kernel[0], net.node("c2").op.kernel[0]
    assert new.node("c2").op.kernel == (k1 + k2 - 1,) * 2
    x = int_x(rng, net.input_shape)
    np.testing.assert_array_equal(reference.run(new, x), reference.run(net, x))


@pytest.mark.parametrize("c1,c2,why", [
    (dict(padding=0), dict(padding=1), "second conv is padded"),
    (dict(stride=2), dict(), "unit stride"),
    (dict(groups=2), dict(), "grouped"),
])
def test_fuse_linear_convs_refusals(c1, c2, why):
    net = Network((8, 8, 2))
    g = c1.get("groups", 1)
    x = net.add("c1", Conv2D(np.ones((2, 3, 3, 2 // g)), **c1), net.input)
    net.add("c2", Conv2D(np.ones((2, 3, 3, 2)), **c2), x)
    new, report = fuse_linear_convs(net, when="always")
    assert not report[0].applied and why in report[0].reason
    assert len(new.nodes) == 2


def test_fuse_only_when_it_pays():
    net = Network((16, 16, 8))
    x = net.add("c1", Conv2D(np.ones((64, 3, 3, 8))), net.input)
    net.add("c2", Conv2D(np.ones((4, 3, 3, 64))), x)
    _, report = fuse_linear_convs(net)
    assert report[0].applied               # 8->64->4: the fused 5x5x8->4 is cheaper
    net = Network((16, 16, 8))
    x = net.add("c1", Conv2D(np.ones((2, 3, 3, 8))), net.input)
    net.add("c2", Conv2D(np.ones((64, 3, 3, 2))), x)
    new, report = fuse_linear_convs(net)
    assert not report[0].applied and "does not pay" in report[0].reason
    assert len(new.nodes) == 2
