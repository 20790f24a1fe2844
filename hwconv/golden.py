"""The NumPy golden model: the numeric spec every piece of RTL must match bit for bit.

Integers only (int64 arrays; exact float64 BLAS where the accumulator bound allows it,
see :mod:`hwconv.kernels`), vectorized over pixels.  One function per layer kind, named
as the hardware stage that implements it, plus :func:`run` for a whole
:class:`~hwconv.quant.QNetwork` and :func:`infer` for float in / float out.

Arrays are batch-first, channels-last: ``(B, H, W, C)`` or ``(B, N)``.
"""

from __future__ import annotations

import numpy as np

from . import kernels
from .errors import HwconvError
from .ir import Flatten, MaxPool
from .numerics import round_shift
from .quant import QActivation, QAdd, QAvgPool, QConv2D, QDense, QGlobalAvgPool, QNetwork

def _exact_float(bound, what):
    """The narrowest float type in which every partial sum below ``bound`` is exact.

    Products and partial sums are integers; any integer below 2**24 (float32) or 2**53
    (float64) is exact, so BLAS computes the sum exactly in any order and with FMA.
    """
    if bound < 1 << 24:
        return np.float32
    if bound < 1 << 53:
        return np.float64
    raise HwconvError(f"{what}: accumulator bound {bound} exceeds 2**53")


def _requant_out(acc, requant, out_q):
    r = requant.apply(acc)
    r += out_q.zero_point
    return np.clip(r, out_q.qmin, out_q.qmax, out=r)


def conv_acc(x, op):
    """The conv accumulator ``sum((x - zp_in) * w) + bias`` (int64), padding with zp."""
    ft = _exact_float(op.acc_bound, op.kind)
    xz = np.asarray(x, dtype=ft) - ft(op.in_q.zero_point)
    acc = kernels.conv2d(xz, op.weight.astype(ft), op.stride, op.padding,
                         op.dilation, op.groups, ft(0))
    acc = acc.astype(np.int64)      # exact: every partial sum is an integer < 2**53
    acc += op.bias
    return acc


def conv2d(x, op):
    """:class:`~hwconv.quant.QConv2D`: accumulate, requantize per channel, saturate."""
    return _requant_out(conv_acc(x, op), op.requant, op.out_q)


def dense(x, op):
    """:class:`~hwconv.quant.QDense` on ``(B, N)`` integer vectors."""
    ft = _exact_float(op.acc_bound, op.kind)
    xz = np.asarray(x, dtype=ft) - ft(op.in_q.zero_point)
    acc = (xz @ op.weight.T.astype(ft)).astype(np.int64) + op.bias
    return _requant_out(acc, op.requant, op.out_q)


def max_pool(x, op, qmin=None):
    """Integer max-pool; padding never wins (pads with the smallest value present)."""
    x = np.asarray(x, dtype=np.int64)
    pad_value = int(x.min()) if qmin is None else qmin
    return kernels.max_pool(x, op.kernel, op.stride, op.padding, pad_value)


def activation_table(op):
    """The activation's output for every input code ``qmin..qmax`` of its input type."""
    d = np.arange(op.in_q.qmin, op.in_q.qmax + 1, dtype=np.int64) - op.in_q.zero_point
    r = np.where(d >= 0, op.pos.apply(d), op.neg.apply(d))
    return np.clip(op.out_q.zero_point + r, op.lo, op.hi)


def activation(x, op):
    """:class:`~hwconv.quant.QActivation`: piecewise requantize, then clamp.

    Inputs are 8-bit codes, so the function is evaluated once per code
    (:func:`activation_table`) and looked up.
    """
    return activation_table(op)[np.asarray(x, dtype=np.int64) - op.in_q.qmin]


def pool_activate(x, pool, act):
    """The pool-then-activate stage: max-pool first, the activation on pooled values."""
    y = x if pool is None else max_pool(x, pool)
    return y if act is None else activation(y, act)


def avg_pool(x, op):
    """:class:`~hwconv.quant.QAvgPool`: window sum of ``x - zp`` (pads count as zp)."""
    xz = np.asarray(x, dtype=np.int64) - op.in_q.zero_point
    s = kernels.sum_pool(xz, op.kernel, op.stride, op.padding, 0)
    return _requant_out(s, op.requant, op.out_q)


def global_avg_pool(x, op):
    """:class:`~hwconv.quant.QGlobalAvgPool`: sum over H, W then requantize."""
    xz = np.asarray(x, dtype=np.int64) - op.in_q.zero_point
    s = xz.sum(axis=(1, 2), keepdims=True)
    return _requant_out(s, op.requant, op.out_q)


def add(a, b, op):
    """:class:`~hwconv.quant.QAdd`: both operands rescaled, summed, rounded once."""
    v = (np.asarray(a, np.int64) - op.a_q.zero_point) * op.mult_a + \
        (np.asarray(b, np.int64) - op.b_q.zero_point) * op.mult_b
    return np.clip(op.out_q.zero_point + round_shift(v, op.shift, op.rounding),
                   op.out_q.qmin, op.out_q.qmax)


def depthwise_pointwise(x, dw, dw_act, pw, pw_act=None):
    """The depthwise/pointwise engine: depthwise conv (+ activation) then 1x1 conv."""
    y = conv2d(x, dw)
    if dw_act is not None:
        y = activation(y, dw_act)
    y = conv2d(y, pw)
    return y if pw_act is None else activation(y, pw_act)


def flatten(x):
    return kernels.flatten(np.asarray(x, dtype=np.int64))


def _apply(op, args, qmin):
    x = args[0]
    if isinstance(op, QConv2D):
        return conv2d(x, op)
    if isinstance(op, QDense):
        return dense(x, op)
    if isinstance(op, MaxPool):
        return max_pool(x, op, qmin)
    if isinstance(op, QActivation):
        return activation(x, op)
    if isinstance(op, QAvgPool):
        return avg_pool(x, op)
    if isinstance(op, QGlobalAvgPool):
        return global_avg_pool(x, op)
    if isinstance(op, QAdd):
        return add(args[0], args[1], op)
    if isinstance(op, Flatten):
        return flatten(x)
    raise HwconvError(f"golden model has no integer rule for {op.kind}; "
                      f"quantize the network first")


def run(qnet, x, collect=False):
    """Run integer network ``qnet`` on integer input ``x`` of shape ``(B, *input_shape)``.

    Returns the integer output (int64), or every tensor with ``collect=True``.
    """
    if not isinstance(qnet, QNetwork):
        raise HwconvError("golden model has no integer rule for a float network; "
                          "quantize it first (hwconv.quant.quantize)")
    x = np.asarray(x)
    if x.shape[1:] != qnet.input_shape:
        raise HwconvError(f"input has shape {x.shape[1:]} per item, network expects "
                          f"{qnet.input_shape} (batch first, channels last)")
    q = qnet.input_q
    if not np.issubdtype(x.dtype, np.integer) or x.min() < q.qmin or x.max() > q.qmax:
        raise HwconvError(f"golden input must be integers in {q.dtype} range")
    env = {qnet.input_name: x.astype(np.int64)}
    for n in qnet.nodes:
        qmin = qnet.qparams[n.inputs[0]].qmin
        env[n.name] = _apply(n.op, [env[i] for i in n.inputs], qmin)
    return env if collect else env[qnet.output]


def infer(qnet, x):
    """Float in, float out: quantize ``x``, run the integer model, dequantize."""
    xq = qnet.input_q.quantize(x)
    return qnet.output_q.dequantize(run(qnet, xq))
