"""The float reference (hwconv.reference.run) agrees with onnxruntime on exported layers.

A parametrized sweep: for every layer kind, random configurations drawn from a seed are
exported to ONNX (hwconv.frontends.export_onnx) and run by onnxruntime in float32; the
float64 reference must agree to float32 tolerance.  This checks the reference, the ONNX
export (weight layout, padding order, channel-major Flatten) and the IR's shape rules at
once.
"""

import numpy as np
import pytest

from hwconv import reference
from hwconv.frontends import export_onnx
from hwconv.frontends import ort as hwort
from hwconv.ir import Activation, Add, AvgPool, BatchNorm, Conv2D, Dense, Flatten, \
    GlobalAvgPool, MaxPool, Network

SEEDS = range(12)


def _size(rng, kernel, stride, dilation, pad):
    """An input length giving 1..4 outputs for the window."""
    span = (kernel - 1) * dilation + 1
    return max(span - pad, 1) + stride * int(rng.integers(0, 4))


def _window(rng, max_kernel=4, dilate=False, pad_limit=None):
    kernel = tuple(int(k) for k in rng.integers(1, max_kernel + 1, 2))
    stride = tuple(int(s) for s in rng.integers(1, 4, 2))
    dilation = tuple(int(d) for d in rng.integers(1, 3, 2)) if dilate else (1, 1)
    limit = pad_limit or (lambda k: 3)
    pads = tuple(int(rng.integers(0, limit(kernel[i % 2]))) for i in range(4))
    h = _size(rng, kernel[0], stride[0], dilation[0], pads[0] + pads[2])
    w = _size(rng, kernel[1], stride[1], dilation[1], pads[1] + pads[3])
    return kernel, stride, dilation, pads, (h, w)


def conv(rng, kind):
    c = int(rng.integers(1, 7))
    if kind == "depthwise":
        groups, o = c, c * int(rng.integers(1, 3))
    elif kind == "grouped":
        groups = int(rng.choice([g for g in range(1, c + 1) if c % g == 0]))
        o = groups * int(rng.integers(1, 4))
    else:
        groups, o = 1, int(rng.integers(1, 9))
    if kind == "pointwise":
        kernel, stride, dilation, pads, hw = (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), (5, 4)
    else:
        kernel, stride, dilation, pads, hw = _window(rng, dilate=True)
    net = Network((*hw, c))
    weight = rng.normal(0, 1, (o, *kernel, c // groups))
    net.add("conv", Conv2D(weight, rng.normal(0, 1, o), stride, pads, dilation, groups),
            net.input)
    return net


def dense(rng):
    n, o = int(rng.integers(1, 41)), int(rng.integers(1, 13))
    net = Network((n,))
    net.add("fc", Dense(rng.normal(0, 1, (o, n)), rng.normal(0, 1, o)), net.input)
    return net


def pool(rng, layer):
    kernel, stride, _, pads, hw = _window(rng, 3, pad_limit=lambda k: k)
    net = Network((*hw, int(rng.integers(1, 5))))
    net.add("pool", layer(kernel, stride, pads), net.input)
    return net


def single(rng, layer, shape=None):
    net = Network(shape or (int(rng.integers(1, 6)), int(rng.integers(1, 6)),
                            int(rng.integers(1, 5))))
    net.add("layer", layer, net.input)
    return net


def activation(rng):
    fn = ["relu", "relu6", "clip", "leaky_relu", "identity"][int(rng.integers(0, 5))]
    lo, hi = sorted(rng.normal(0, 1, 2))
    lo = None if rng.random() < 0.2 else lo
    hi = None if rng.random() < 0.2 else hi
    return single(rng, Activation(fn, lo=lo, hi=hi, alpha=rng.uniform(0, 0.5)))


def batchnorm(rng):
    c = int(rng.integers(1, 6))
    bn = BatchNorm(rng.normal(0, 1, c), rng.normal(0, 1, c), rng.normal(0, 1, c),
                   rng.uniform(0.1, 2, c), eps=float(rng.uniform(1e-6, 1e-2)))
    return single(rng, bn, (3, 4, c))


def add(rng):
    c = int(rng.integers(1, 5))
    net = Network((int(rng.integers(1, 6)), int(rng.integers(1, 6)), c))
    y = net.add("conv", Conv2D(rng.normal(0, 1, (c, 3, 3, c)), None, padding="same"),
                net.input)
    net.add("add", Add(), net.input, y)
    return net


def flatten_dense(rng):
    """Flatten order matters only through the dense layer after it."""
    shape = (int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    net = Network(shape)
    x = net.add("flat", Flatten(), net.input)
    n = int(np.prod(shape))
    net.add("fc", Dense(rng.normal(0, 1, (3, n)), None), x)
    return net


BUILDERS = {
    "conv": lambda rng: conv(rng, "standard"),
    "conv_grouped": lambda rng: conv(rng, "grouped"),
    "conv_depthwise": lambda rng: conv(rng, "depthwise"),
    "conv_pointwise": lambda rng: conv(rng, "pointwise"),
    "dense": dense,
    "maxpool": lambda rng: pool(rng, MaxPool),
    "avgpool": lambda rng: pool(rng, AvgPool),
    "global_avgpool": lambda rng: single(rng, GlobalAvgPool()),
    "activation": activation,
    "batchnorm": batchnorm,
    "add": add,
    "flatten": lambda rng: single(rng, Flatten()),
    "flatten_dense": flatten_dense,
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_reference_matches_onnxruntime(kind, seed):
    rng = np.random.default_rng([seed, sorted(BUILDERS).index(kind)])
    net = BUILDERS[kind](rng)
    x = rng.normal(0, 1, (3, *net.input_shape))
    ref = reference.run(net, x)
    x_onnx = x.transpose(0, 3, 1, 2) if x.ndim == 4 else x
    got = hwort.run(export_onnx(net), x_onnx.astype(np.float32))
    got = got.transpose(0, 2, 3, 1) if got.ndim == 4 else got
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * max(np.abs(ref).max(), 1))


def test_every_exportable_kind_is_swept():
    kinds = {type(n.op) for b in BUILDERS.values() for n in b(np.random.default_rng(0)).nodes}
    assert kinds == {Conv2D, Dense, MaxPool, AvgPool, GlobalAvgPool, Activation, BatchNorm,
                     Add, Flatten}
