"""Random float networks covering every layer kind the ONNX front end supports.

Shared by the ONNX tests: each builder takes a seed and returns a float
:class:`~hwconv.ir.Network`; :func:`as_reshape` and :func:`as_matmul` rewrite an exported
model so that Reshape and MatMul appear too.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hwconv import zoo
from hwconv.ir import Activation, AvgPool, BatchNorm, Conv2D, Dense, Flatten, \
    GlobalAvgPool, MaxPool, Network


def _bn(rng, c):
    return BatchNorm(rng.uniform(0.5, 1.5, c) * rng.choice([-1, 1], c, p=[0.2, 0.8]),
                     rng.normal(0, 0.2, c), rng.normal(0, 0.2, c), rng.uniform(0.5, 1.5, c))


def _head(net, rng, x, classes=10):
    x = net.add("flat", Flatten(), x)
    n = net.shapes[x][0]
    return net.add("fc", Dense(rng.normal(0, np.sqrt(1 / n), (classes, n)),
                               rng.normal(0, 0.1, classes)), x)


def conv_zoo(seed):
    """Grouped, strided, dilated, padded, depthwise (multiplier 2) and pointwise convs.

    LeakyReLU has alpha 0.2: with alpha 0.1 at one scale, ``0.1 * d`` is an exact tie
    for every ``d = 5 (mod 10)``, which onnxruntime's float32 lookup table rounds either
    way (see ``test_onnx_agreement.test_leaky_relu_ties``).
    """
    rng = np.random.default_rng(seed)
    net = Network((11, 10, 4))
    w = zoo.conv_weight
    x = net.add("grouped", Conv2D(w(rng, 8, 3, 2), rng.normal(0, .1, 8), (2, 1),
                                  (1, 2, 0, 1), (1, 2), groups=2), net.input)
    x = net.add("relu", Activation("relu"), x)
    x = net.add("dw", Conv2D(w(rng, 16, 3, 1), rng.normal(0, .1, 16), 1, "same", groups=8), x)
    x = net.add("relu6", Activation("relu6"), x)
    x = net.add("pw", Conv2D(w(rng, 12, 1, 16), rng.normal(0, .1, 12)), x)
    x = net.add("leaky", Activation("leaky_relu", alpha=0.2), x)
    x = net.add("pool", MaxPool(3, 2, 1), x)
    x = net.add("clip", Activation("clip", lo=-0.5, hi=1.0), x)
    _head(net, rng, x)
    return net


def pools(seed):
    """Average pooling (strided and padded), global average pooling, max-pool stride 1.

    The average-pool windows have an odd number of taps: with a 2x2 window at one scale a
    quarter of the sums are exact ties.  Imported models round ties half to even as
    onnxruntime's int8 kernels do (``test_onnx_agreement.test_even_window_average_pool_ties``
    matches exactly), but its uint8 average pool computes in float, whose rounding error
    breaks some ties either way (measured: 0.9 % of a 2x2 layer's values 1 LSB off, up to
    5 LSB after a following conv).
    """
    rng = np.random.default_rng(seed)
    net = Network((13, 13, 3))
    x = net.add("conv", Conv2D(zoo.conv_weight(rng, 8, 3, 3), rng.normal(0, .1, 8)),
                net.input)
    x = net.add("relu", Activation("relu"), x)
    x = net.add("avg", AvgPool(3, 2), x)
    x = net.add("avg_pad", AvgPool(3, 1, 1), x)
    x = net.add("max", MaxPool(2, 1), x)
    x = net.add("conv2", Conv2D(zoo.conv_weight(rng, 6, 1, 8), rng.normal(0, .1, 6)), x)
    x = net.add("gap", GlobalAvgPool(), x)
    _head(net, rng, x, 5)
    return net


def batchnorms(seed):
    """BatchNorm after a conv (folded by pre-processing) and two that cannot be folded."""
    rng = np.random.default_rng(seed)
    net = Network((8, 8, 3))
    x = net.add("bn_in", _bn(rng, 3), net.input)
    x = net.add("conv", Conv2D(zoo.conv_weight(rng, 8, 3, 3), None, 1, "same"), x)
    x = net.add("conv_bn", _bn(rng, 8), x)
    x = net.add("relu", Activation("relu"), x)
    x = net.add("bn_after_relu", _bn(rng, 8), x)
    x = net.add("pool", MaxPool(2), x)
    _head(net, rng, x, 4)
    return net


def residual(seed):
    """Residual add of a conv path and its skip, with BatchNorm and a GAP head."""
    return zoo.residual_cnn(seed=seed, shape=(8, 8, 4))


def small(seed):
    """The digits-sized conv / depthwise+pointwise / dense network."""
    return zoo.small_cnn(seed=seed)


def mobilenet(seed):
    """One MobileNetV1 block with BatchNorm and ReLU6, stride 2."""
    return zoo.mobilenet_block(size=12, cin=8, cout=16, stride=2, seed=seed, bn=True)


def dense_only(seed):
    """A vector input through two dense layers (MatMul/Gemm without any conv)."""
    rng = np.random.default_rng(seed)
    net = Network((20,))
    x = net.add("fc1", Dense(rng.normal(0, .3, (16, 20)), rng.normal(0, .1, 16)), net.input)
    x = net.add("relu", Activation("relu"), x)
    net.add("fc2", Dense(rng.normal(0, .3, (6, 16)), rng.normal(0, .1, 6)), x)
    return net


NETWORKS = {f.__name__: f for f in (conv_zoo, pools, batchnorms, residual, small, mobilenet,
                                    dense_only)}


def inputs(net, n, seed):
    """``n`` random float32 inputs for ``net`` in ONNX layout (NCHW or NC)."""
    rng = np.random.default_rng(seed)
    shape = net.input_shape
    ext = (shape[2], shape[0], shape[1]) if len(shape) == 3 else shape
    return rng.uniform(-1, 1, (n, *ext)).astype(np.float32)


def _copy(model):
    return onnx.ModelProto.FromString(model.SerializeToString())


def as_reshape(model):
    """Replace every Flatten by ``Reshape(x, [0, -1])``."""
    model = _copy(model)
    g = model.graph
    for i, n in enumerate(g.node):
        if n.op_type == "Flatten":
            shape = f"{n.name}.shape"
            g.initializer.append(numpy_helper.from_array(np.array([0, -1], np.int64), shape))
            g.node[i].CopyFrom(helper.make_node("Reshape", [n.input[0], shape], list(n.output),
                                                name=n.name))
    return model


def as_matmul(model, bias=True):
    """Replace every ``Gemm(transB=1)`` by MatMul (+ Add of the bias with ``bias``)."""
    model = _copy(model)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    nodes = []
    for n in g.node:
        if n.op_type != "Gemm":
            nodes.append(n)
            continue
        w = numpy_helper.to_array(inits[n.input[1]])
        inits[n.input[1]].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w.T),
                                                           n.input[1]))
        if bias:
            mm = f"{n.name}.matmul"
            nodes.append(helper.make_node("MatMul", [n.input[0], n.input[1]], [mm], name=mm))
            nodes.append(helper.make_node("Add", [mm, n.input[2]], list(n.output),
                                          name=n.name))
        else:
            nodes.append(helper.make_node("MatMul", [n.input[0], n.input[1]], list(n.output),
                                          name=n.name))
    del g.node[:]
    g.node.extend(nodes)
    return model
