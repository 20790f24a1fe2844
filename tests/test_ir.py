"""Network IR: shape inference and clear one-line errors for impossible layers."""

import numpy as np
import pytest

from hwconv.errors import HwconvError, LayerError
from hwconv.ir import Activation, Add, AvgPool, BatchNorm, Conv2D, Dense, Flatten, \
    GlobalAvgPool, MaxPool, Network, depthwise, normalize_padding, pointwise
from hwconv.numerics import QParams


def test_shapes_inferred_through_a_dag():
    net = Network((13, 11, 4))
    a = net.add("c", Conv2D(np.ones((8, 3, 3, 4)), stride=2, padding="same"), net.input)
    assert net.shapes[a] == (7, 6, 8)
    b = net.add("dw", depthwise(np.ones((16, 3, 3, 1)), padding=1), a)
    assert net.shapes[b] == (7, 6, 16)
    assert net.node("dw").op.groups == 8
    c = net.add("pw", pointwise(np.ones((8, 16))), b)
    d = net.add("add", Add(), a, c)
    e = net.add("pool", MaxPool(3, 2, 1), d)
    assert net.shapes[e] == (4, 3, 8)
    f = net.add("avg", AvgPool(2), e)
    g = net.add("gap", GlobalAvgPool(), f)
    h = net.add("flat", Flatten(), g)
    i = net.add("fc", Dense(np.ones((10, 8))), h)
    assert net.output == i and net.output_shape == (10,)
    assert [n.name for n in net.consumers(a)] == ["dw", "add"]


@pytest.mark.parametrize("k,d,expect", [(3, 1, (1, 1, 1, 1)), (2, 1, (0, 0, 1, 1)),
                                        (4, 1, (1, 1, 2, 2)), (3, 2, (2, 2, 2, 2))])
def test_same_padding(k, d, expect):
    assert normalize_padding("same", (k, k), (d, d)) == expect


def test_same_padding_keeps_size_for_even_kernels():
    net = Network((9, 9, 1))
    net.add("c", Conv2D(np.ones((1, 4, 4, 1)), padding="same"), net.input)
    assert net.output_shape == (9, 9, 1)


BAD = [
    ("groups", lambda: Conv2D(np.ones((6, 3, 3, 2)), groups=3), (5, 5, 5),
     "groups=3 does not divide the 5 input channels"),
    ("weight", lambda: Conv2D(np.ones((6, 3, 3, 3))), (5, 5, 4), "input channels per group"),
    ("big", lambda: Conv2D(np.ones((1, 7, 7, 1))), (5, 5, 1), "larger than the padded input"),
    ("stride", lambda: Conv2D(np.ones((1, 1, 1, 1)), stride=0), (5, 5, 1), "stride"),
    ("dense", lambda: Dense(np.ones((3, 7))), (8,), "expects 7 inputs, got 8"),
    ("densemap", lambda: Dense(np.ones((3, 7))), (2, 2, 2), "needs a vector input"),
    ("pool", lambda: MaxPool(2, 1, 2), (5, 5, 1), "must be smaller than the kernel"),
    ("bn", lambda: BatchNorm(np.ones(3), np.ones(3), np.ones(3), -np.ones(3)), (4, 4, 3),
     "var + eps must be positive"),
    ("bnc", lambda: BatchNorm(np.ones(2), np.ones(2), np.ones(2), np.ones(2)), (4, 4, 3),
     "input has 3 channels"),
    ("gap", lambda: GlobalAvgPool(), (9,), "needs a feature map"),
]


@pytest.mark.parametrize("name,make,shape,msg", BAD, ids=[b[0] for b in BAD])
def test_impossible_layers_name_layer_and_reason(name, make, shape, msg):
    net = Network(shape)
    with pytest.raises(LayerError) as e:
        net.add(name, make(), net.input)
    text = str(e.value)
    assert f"layer {name!r}" in text and msg in text and "\n" not in text


def test_add_shape_mismatch():
    net = Network((4, 4, 2))
    a = net.add("a", Conv2D(np.ones((3, 1, 1, 2))), net.input)
    with pytest.raises(LayerError, match="operand shapes differ"):
        net.add("add", Add(), a, net.input)


@pytest.mark.parametrize("bad", [
    lambda n: n.add("x", Activation("relu"), "nope"),
    lambda n: n.add("input", Activation("relu"), "input"),
    lambda n: n.add("bad name", Activation("relu"), "input"),
    lambda n: n.add("y", Add(), "input"),
    lambda n: Activation("swish"),
    lambda n: Conv2D(np.ones((3, 3))),
    lambda n: Network((0, 3, 3)),
    lambda n: Conv2D(np.ones((1, 3, 3, 1)), padding="full"),
])
def test_bad_graph_construction(bad):
    with pytest.raises(HwconvError):
        bad(Network((4, 4, 2)))


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf")])
def test_zero_or_negative_scale_refused(scale):
    with pytest.raises(HwconvError, match="scale must be positive"):
        QParams(scale, 0, "int8")


def test_zero_point_outside_type():
    with pytest.raises(HwconvError, match="outside uint8"):
        QParams(0.1, -1, "uint8")
