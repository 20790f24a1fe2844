"""Vectorized sliding-window kernels shared by the float reference and the golden model.

All functions take batch-first, channels-last arrays ``(B, H, W, C)``.  They loop over
kernel *taps* (K*K iterations, each a whole-tensor NumPy operation), never over pixels.

The golden model calls them with float64 arrays holding integers: every product and
partial sum is an integer below 2**53 (checked by the callers through the accumulator
bound), so float64 BLAS computes them exactly in any summation order.
"""

from __future__ import annotations

import numpy as np

from .ir import conv_out_size


def pad(x, padding, value):
    top, left, bottom, right = padding
    if not any(padding):
        return x
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def taps(xp, kernel, stride, dilation, out_hw):
    """Yield ``((i, j), view)`` for each kernel tap: the strided input each tap reads."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    for i in range(kh):
        for j in range(kw):
            r, c = i * dh, j * dw
            yield (i, j), xp[:, r:r + (oh - 1) * sh + 1:sh, c:c + (ow - 1) * sw + 1:sw, :]


def out_hw(shape, kernel, stride, padding, dilation=(1, 1)):
    h, w = shape[1], shape[2]
    top, left, bottom, right = padding
    return (conv_out_size(h, kernel[0], stride[0], top, bottom, dilation[0]),
            conv_out_size(w, kernel[1], stride[1], left, right, dilation[1]))


def conv2d(x, weight, stride, padding, dilation, groups, pad_value):
    """Grouped cross-correlation without bias; ``weight`` is ``(O, KH, KW, C/groups)``."""
    o, kh, kw, cg = weight.shape
    b, _, _, c = x.shape
    oh, ow = out_hw(x.shape, (kh, kw), stride, padding, dilation)
    xp = pad(x, padding, pad_value)
    og = o // groups
    acc = np.zeros((b, oh, ow, o), dtype=np.result_type(x.dtype, weight.dtype))
    tmp = np.empty_like(acc)
    for (i, j), v in taps(xp, (kh, kw), stride, dilation, (oh, ow)):
        wt = weight[:, i, j, :]                                   # (O, Cg)
        if groups == 1:
            acc += (v.reshape(-1, c) @ wt.T).reshape(acc.shape)
        elif cg == 1 and og == 1:                                 # depthwise
            acc += np.multiply(v, wt[:, 0], out=tmp)
        elif cg == 1:                                             # depthwise, multiplier
            acc += np.repeat(v, og, axis=3) * wt[:, 0]
        else:
            vg = v.reshape(-1, groups, cg).transpose(1, 0, 2)     # (G, N, Cg)
            wg = wt.reshape(groups, og, cg).transpose(0, 2, 1)    # (G, Cg, Og)
            acc += np.matmul(vg, wg).transpose(1, 0, 2).reshape(acc.shape)
    return acc


def max_pool(x, kernel, stride, padding, pad_value):
    oh, ow = out_hw(x.shape, kernel, stride, padding)
    xp = pad(x, padding, pad_value)
    out = None
    for _, v in taps(xp, kernel, stride, (1, 1), (oh, ow)):
        out = v.copy() if out is None else np.maximum(out, v)
    return out


def sum_pool(x, kernel, stride, padding, pad_value):
    oh, ow = out_hw(x.shape, kernel, stride, padding)
    xp = pad(x, padding, pad_value)
    out = np.zeros((x.shape[0], oh, ow, x.shape[3]), dtype=x.dtype)
    for _, v in taps(xp, kernel, stride, (1, 1), (oh, ow)):
        out += v
    return out


def flatten(x):
    """Channel-major flatten of ``(B, H, W, C)`` (ONNX/PyTorch order)."""
    if x.ndim == 2:
        return x
    return x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)
