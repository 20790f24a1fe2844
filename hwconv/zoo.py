"""Synthetic networks with random weights (tests, benchmarks, demos).

Every builder takes a ``seed`` and returns a float :class:`~hwconv.ir.Network`;
weights are He-scaled so activations keep a sensible range through depth.
"""

from __future__ import annotations

import numpy as np

from .ir import Activation, Add, BatchNorm, Conv2D, Dense, Flatten, GlobalAvgPool, MaxPool, \
    Network

__all__ = ["conv_weight", "small_cnn", "mobilenet_block", "mobilenet_v1", "residual_cnn"]


def conv_weight(rng, o, k, c):
    return rng.normal(0, np.sqrt(2.0 / (k * k * c)), size=(o, k, k, c))


def _bn(rng, c):
    return BatchNorm(rng.uniform(0.5, 1.5, c) * rng.choice([-1, 1], c, p=[0.1, 0.9]),
                     rng.normal(0, 0.1, c), rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c))


def small_cnn(seed=0, shape=(8, 8, 1), classes=10):
    """Conv-ReLU-MaxPool, a depthwise+pointwise block and a dense head (digits-sized)."""
    rng = np.random.default_rng(seed)
    h, w, c = shape
    net = Network(shape)
    x = net.add("conv1", Conv2D(conv_weight(rng, 8, 3, c), rng.normal(0, .1, 8),
                                padding="same"), net.input)
    x = net.add("relu1", Activation("relu"), x)
    x = net.add("pool1", MaxPool(2), x)
    x = net.add("dw2", Conv2D(conv_weight(rng, 8, 3, 1), rng.normal(0, .1, 8), padding="same",
                              groups=8), x)
    x = net.add("relu2", Activation("relu"), x)
    x = net.add("pw2", Conv2D(conv_weight(rng, 16, 1, 8), rng.normal(0, .1, 16)), x)
    x = net.add("relu3", Activation("relu"), x)
    x = net.add("pool2", MaxPool(2), x)
    x = net.add("flat", Flatten(), x)
    n = net.shapes[x][0]
    net.add("fc", Dense(rng.normal(0, np.sqrt(1 / n), (classes, n)), np.zeros(classes)), x)
    return net


def mobilenet_block(size=224, cin=32, cout=64, stride=1, seed=0, bn=False):
    """One MobileNetV1 block: depthwise 3x3 -> ReLU6 -> pointwise 1x1 -> ReLU6."""
    rng = np.random.default_rng(seed)
    net = Network((size, size, cin))
    x = net.add("dw", Conv2D(conv_weight(rng, cin, 3, 1), None, stride, "same", groups=cin),
                net.input)
    if bn:
        x = net.add("dw_bn", _bn(rng, cin), x)
    x = net.add("dw_relu", Activation("relu6"), x)
    x = net.add("pw", Conv2D(conv_weight(rng, cout, 1, cin)), x)
    if bn:
        x = net.add("pw_bn", _bn(rng, cout), x)
    net.add("pw_relu", Activation("relu6"), x)
    return net


def mobilenet_v1(size=224, alpha=1.0, classes=1000, seed=0, bn=True):
    """MobileNetV1 (Howard et al. 2017) topology with random weights."""
    rng = np.random.default_rng(seed)
    ch = lambda c: max(8, int(c * alpha))  # noqa: E731
    net = Network((size, size, 3))
    x = net.add("conv0", Conv2D(conv_weight(rng, ch(32), 3, 3), None, 2, "same"), net.input)
    if bn:
        x = net.add("conv0_bn", _bn(rng, ch(32)), x)
    x = net.add("conv0_relu", Activation("relu6"), x)
    cfg = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + \
          [(1024, 2), (1024, 1)]
    c = ch(32)
    for i, (co, s) in enumerate(cfg, 1):
        co = ch(co)
        x = net.add(f"dw{i}", Conv2D(conv_weight(rng, c, 3, 1), None, s, "same", groups=c), x)
        if bn:
            x = net.add(f"dw{i}_bn", _bn(rng, c), x)
        x = net.add(f"dw{i}_relu", Activation("relu6"), x)
        x = net.add(f"pw{i}", Conv2D(conv_weight(rng, co, 1, c)), x)
        if bn:
            x = net.add(f"pw{i}_bn", _bn(rng, co), x)
        x = net.add(f"pw{i}_relu", Activation("relu6"), x)
        c = co
    x = net.add("gap", GlobalAvgPool(), x)
    x = net.add("flat", Flatten(), x)
    net.add("fc", Dense(rng.normal(0, np.sqrt(1 / c), (classes, c))), x)
    return net


def residual_cnn(seed=0, shape=(16, 16, 8)):
    """A stride-2 stem and one residual block with a skip path (for Add/FIFO tests)."""
    rng = np.random.default_rng(seed)
    h, w, c = shape
    net = Network(shape)
    x = net.add("stem", Conv2D(conv_weight(rng, 16, 3, c), rng.normal(0, .1, 16), 2, "same"),
                net.input)
    x = net.add("stem_relu", Activation("relu"), x)
    y = net.add("res_a", Conv2D(conv_weight(rng, 16, 3, 16), None, 1, "same"), x)
    y = net.add("res_a_bn", _bn(rng, 16), y)
    y = net.add("res_a_relu", Activation("relu"), y)
    y = net.add("res_b", Conv2D(conv_weight(rng, 16, 3, 16), None, 1, "same"), y)
    x = net.add("res_add", Add(), x, y)
    x = net.add("res_relu", Activation("relu"), x)
    x = net.add("gap", GlobalAvgPool(), x)
    x = net.add("flat", Flatten(), x)
    net.add("fc", Dense(rng.normal(0, .25, (10, 16))), x)
    return net


def every_stage_net(seed=0, shape=(12, 12, 3)):
    """A small network that maps to every stage kind and needs every transform.

    stride-2 conv + BatchNorm (folded) + ReLU -> max-pool (moved before the ReLU) ->
    3x3 conv then 1x1 conv with nothing between (fused into one 3x3 conv) -> ReLU ->
    depthwise 3x3 + pointwise (one engine) -> residual Add with the pooled map ->
    ReLU6 -> global average pool -> dense head.
    """
    rng = np.random.default_rng(seed)
    h, w, c = shape
    net = Network(shape)
    x = net.add("stem", Conv2D(conv_weight(rng, 8, 3, c), rng.normal(0, .1, 8), 2, "same"),
                net.input)
    x = net.add("stem_bn", _bn(rng, 8), x)
    x = net.add("stem_relu", Activation("relu"), x)
    x = net.add("pool", MaxPool(2, 1), x)
    y = net.add("wide", Conv2D(conv_weight(rng, 32, 3, 8), None, 1, "same"), x)
    y = net.add("narrow", Conv2D(conv_weight(rng, 8, 1, 32), rng.normal(0, .1, 8)), y)
    y = net.add("mid_relu", Activation("relu"), y)
    y = net.add("dw", Conv2D(conv_weight(rng, 8, 3, 1), None, 1, "same", groups=8), y)
    y = net.add("dw_relu", Activation("relu"), y)
    y = net.add("pw", Conv2D(conv_weight(rng, 8, 1, 8)), y)
    x = net.add("res", Add(), x, y)
    x = net.add("res_relu", Activation("relu6"), x)
    x = net.add("gap", GlobalAvgPool(), x)
    x = net.add("flat", Flatten(), x)
    net.add("fc", Dense(rng.normal(0, .3, (10, 8)), np.zeros(10)), x)
    return net
