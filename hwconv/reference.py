"""Float64 forward pass of a float :class:`~hwconv.ir.Network` (calibration, checks)."""

from __future__ import annotations

import numpy as np

from . import kernels
from .errors import HwconvError
from .ir import Activation, Add, AvgPool, BatchNorm, Conv2D, Dense, Flatten, GlobalAvgPool, \
    MaxPool


def activation(x, op):
    if op.fn == "leaky_relu":
        return np.where(x >= 0, x, op.alpha * x)
    lo = -np.inf if op.lo is None else op.lo
    hi = np.inf if op.hi is None else op.hi
    return np.clip(x, lo, hi)


def _apply(op, args):
    x = args[0]
    if isinstance(op, Conv2D):
        y = kernels.conv2d(x, op.weight, op.stride, op.padding, op.dilation, op.groups, 0.0)
        return y + op.bias
    if isinstance(op, Dense):
        return x @ op.weight.T + op.bias
    if isinstance(op, MaxPool):
        return kernels.max_pool(x, op.kernel, op.stride, op.padding, -np.inf)
    if isinstance(op, AvgPool):
        s = kernels.sum_pool(x, op.kernel, op.stride, op.padding, 0.0)
        return s / (op.kernel[0] * op.kernel[1])
    if isinstance(op, GlobalAvgPool):
        return x.mean(axis=(1, 2), keepdims=True)
    if isinstance(op, Activation):
        return activation(x, op)
    if isinstance(op, BatchNorm):
        return x * op.scale + op.shift
    if isinstance(op, Add):
        return args[0] + args[1]
    if isinstance(op, Flatten):
        return kernels.flatten(x)
    raise HwconvError(f"float reference has no rule for {type(op).__name__}")


def run(net, x, collect=False):
    """Run ``net`` on float input ``x`` of shape ``(B, *net.input_shape)``.

    Returns the output array, or with ``collect=True`` a dict of every tensor.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.shape[1:] != net.input_shape:
        raise HwconvError(f"input has shape {x.shape[1:]} per item, network expects "
                          f"{net.input_shape} (batch first, channels last)")
    env = {net.input_name: x}
    for n in net.nodes:
        env[n.name] = _apply(n.op, [env[i] for i in n.inputs])
    return env if collect else env[net.output]
