"""Quantized (integer) layers and the float -> integer quantizer.

An integer network is a :class:`QNetwork`: the same DAG as :class:`~hwconv.ir.Network`
whose nodes are the integer layers below (``MaxPool`` and ``Flatten`` are shared with the
float IR: they compute the same on integers).  Each integer layer carries the
:class:`~hwconv.numerics.QParams` of its input(s) and output, so a stage can be generated
from the layer alone.

Integer semantics (the golden model implements exactly these; see :mod:`hwconv.golden`):

* ``QConv2D`` / ``QDense``: ``acc = sum((x - zp_in) * w) + bias`` (padding with
  ``zp_in``), then ``y = sat(zp_out + requant_c(acc))`` per output channel ``c``.
* ``QActivation``: ``d = x - zp_in``; ``r = pos(d)`` if ``d >= 0`` else ``neg(d)``;
  ``y = clamp(zp_out + r, lo, hi)``.  ReLU has ``neg`` = 0, Clip/identity ``neg = pos``,
  LeakyReLU ``neg = alpha * pos``.  Monotone non-decreasing iff both multipliers >= 0,
  which they always are here unless alpha < 0.
* ``QAvgPool`` / ``QGlobalAvgPool``: ``y = sat(zp_out + requant(sum(x - zp_in)))``.
* ``QAdd``: ``y = sat(zp_out + round_shift((a - zp_a) * Ma + (b - zp_b) * Mb, s))``,
  one rounding for the sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import reference
from .errors import HwconvError, LayerError
from .ir import Activation, Add, AvgPool, BatchNorm, Conv2D, Dense, Flatten, GlobalAvgPool, \
    MaxPool, Network, _Layer
from .numerics import MULT_BITS, QParams, Requant, signed_bits

__all__ = ["QConv2D", "QDense", "QActivation", "QAvgPool", "QGlobalAvgPool", "QAdd",
           "QNetwork", "quantize", "quantize_weights"]


def quantize_weights(w, bits=8):
    """Per-output-channel symmetric quantization of ``w`` (first axis = channel).

    Returns ``(q, scales)`` with ``q`` in ``[-(2**(bits-1)-1), 2**(bits-1)-1]``.
    """
    if not 2 <= bits <= 8:
        raise HwconvError(f"weight bits must be 2..8, not {bits}")
    qmax = (1 << (bits - 1)) - 1
    flat = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    scales = np.where(flat > 0, flat / qmax, 1.0)
    shape = (-1,) + (1,) * (w.ndim - 1)
    q = np.clip(np.rint(w / scales.reshape(shape)), -qmax, qmax).astype(np.int64)
    return q, scales


def _x_bound(q):
    return max(q.zero_point - q.qmin, q.qmax - q.zero_point)


@dataclass(eq=False)
class _MAC:
    """Shared parts of the integer conv and dense layers: quantization fields, integer
    weights and bias, the accumulator bound."""

    in_q: QParams = None
    out_q: QParams = None
    requant: Requant = None
    weight_bits: int = 8

    def __post_init__(self):
        w = np.asarray(self.weight)
        b = np.zeros(w.shape[0], np.int64) if self.bias is None else self.bias
        super().__post_init__()             # the float layer's own checks
        self.weight = w.astype(np.int64)
        self.bias = np.asarray(b).astype(np.int64)

    def infer_shape(self, name, shape):
        out = super().infer_shape(name, shape)
        self._check_quant(name)
        return out

    def _check_quant(self, name):
        lim = 1 << (self.weight_bits - 1)
        if self.weight.min() < -lim or self.weight.max() >= lim:
            self._fail(name, f"weights exceed {self.weight_bits} bits")
        if np.abs(self.bias).max(initial=0) >= 1 << 31:
            self._fail(name, "bias exceeds int32")
        self.requant.check_range(self.acc_bound, name)

    @property
    def acc_bound(self):
        """Worst-case ``|acc|`` over all inputs, from the actual weights and bias."""
        w = np.abs(self.weight.reshape(self.weight.shape[0], -1)).sum(axis=1)
        return int((w * _x_bound(self.in_q) + np.abs(self.bias)).max())

    @property
    def acc_bits(self):
        """Accumulator width (two's complement) derived from :attr:`acc_bound`."""
        return signed_bits(self.acc_bound)


@dataclass(eq=False)
class QConv2D(_MAC, Conv2D):
    """Integer convolution (see module docstring).  ``weight``/``bias`` are integers."""

    kind = "QConv2D"


@dataclass(eq=False)
class QDense(_MAC, Dense):
    """Integer matrix-vector layer (see module docstring)."""

    kind = "QDense"


@dataclass(eq=False)
class QActivation(_Layer):
    """Integer element-wise activation (see module docstring)."""

    fn: str
    in_q: QParams
    out_q: QParams
    pos: Requant
    neg: Requant
    lo: int
    hi: int
    kind = "QActivation"

    @property
    def monotone(self):
        return bool(np.all(self.pos.multiplier >= 0) and np.all(self.neg.multiplier >= 0))

    @property
    def is_clamp(self):
        """True when the activation is a pure clamp (same scale in and out)."""
        ident = Requant.identity(1, self.pos.mult_bits)
        same = self.in_q == self.out_q and np.array_equal(self.pos.ratio, ident.ratio)
        return same and (np.array_equal(self.neg.ratio, ident.ratio)
                         or (np.all(self.neg.multiplier == 0)))

    def infer_shape(self, name, shape):
        if self.lo > self.hi:
            self._fail(name, f"clamp range [{self.lo}, {self.hi}] is empty")
        return shape


@dataclass(eq=False)
class QAvgPool(AvgPool):
    in_q: QParams = None
    out_q: QParams = None
    requant: Requant = None
    kind = "QAvgPool"


@dataclass(eq=False)
class QGlobalAvgPool(GlobalAvgPool):
    in_q: QParams = None
    out_q: QParams = None
    requant: Requant = None
    kind = "QGlobalAvgPool"


@dataclass(eq=False)
class QAdd(Add):
    a_q: QParams = None
    b_q: QParams = None
    out_q: QParams = None
    mult_a: int = 0
    mult_b: int = 0
    shift: int = 0
    rounding: str = "half_up"
    kind = "QAdd"


@dataclass(eq=False)
class QNetwork(Network):
    """An integer network: a :class:`Network` of integer layers plus tensor QParams."""

    qparams: dict = None

    def rebuilt(self, nodes, output=None):
        net = QNetwork(self.input_shape, self.input_name, qparams={})
        for n in nodes:
            net.add(n.name, n.op, *n.inputs)
        if output is not None:
            net.output = output
        net.qparams = {t: self.qparams[t] for t in net.shapes}
        return net

    @property
    def input_q(self):
        return self.qparams[self.input_name]

    @property
    def output_q(self):
        return self.qparams[self.output]


# -- the quantizer --------------------------------------------------------------------

_CLAMPS = ("relu", "relu6", "clip", "identity")


def _ties(net):
    """Map each tensor to the tensor whose calibrated range sets its QParams.

    A value passing through max-pool, flatten or a clamping activation keeps its scale
    (the layer is then pure integer max/clamp); the producer is quantized with the range
    seen *after* those layers, as TFLite and onnxruntime fold a ReLU into the range.
    """
    rep = {t: t for t in net.shapes}
    for n in reversed(net.nodes):
        op = n.op
        passthrough = isinstance(op, (MaxPool, Flatten)) or \
            (isinstance(op, Activation) and op.fn in _CLAMPS)
        src = n.inputs[0]
        if passthrough and src != net.input_name and len(net.consumers(src)) == 1:
            rep[src] = rep[n.name]
    return rep


def quantize(net, calibration, act_dtype="int8", weight_bits=8, mult_bits=MULT_BITS,
             symmetric=False):
    """Quantize a float network with calibration inputs.

    Parameters
    ----------
    net : Network
        Float network; BatchNorm is folded first (:func:`hwconv.transforms.fold_batchnorm`).
    calibration : ndarray, shape (B, *net.input_shape)
        Representative float inputs; per-tensor ranges are their min/max.
    act_dtype : {"int8", "uint8"}
    weight_bits : int
        Per-channel symmetric weight width, 2..8.
    mult_bits : int
        Requantization multiplier width.
    symmetric : bool
        Symmetric activation ranges (zero point 0 for int8).

    Returns
    -------
    QNetwork
    """
    from .transforms import fold_batchnorm

    if any(isinstance(n.op, BatchNorm) for n in net.nodes):
        net, _ = fold_batchnorm(net)
    calibration = np.asarray(calibration, dtype=np.float64)
    if calibration.ndim != len(net.input_shape) + 1 or calibration.shape[0] == 0:
        raise HwconvError(f"calibration data must be a non-empty batch of "
                          f"{net.input_shape} inputs, got shape {calibration.shape}")
    env = reference.run(net, calibration, collect=True)
    rep = _ties(net)
    qp = {t: QParams.from_range(env[rep[t]].min(), env[rep[t]].max(), act_dtype, symmetric)
          for t in net.shapes}
    qnet = QNetwork(net.input_shape, net.input_name, qparams=qp)
    for n in net.nodes:
        ins = [qp[i] for i in n.inputs]
        out = qp[n.name]
        op = _quantize_op(n.name, n.op, ins, out, net.shapes[n.inputs[0]], weight_bits,
                          mult_bits)
        qnet.add(n.name, op, *n.inputs)
    return qnet


def _quantize_op(name, op, ins, out, in_shape, weight_bits, mult_bits, rounding="half_up"):
    in_q = ins[0]
    if isinstance(op, (Conv2D, Dense)):
        w, ws = quantize_weights(op.weight, weight_bits)
        bias = np.rint(op.bias / (in_q.scale * ws)).astype(np.int64)
        if np.abs(bias).max(initial=0) >= 1 << 31:
            raise LayerError(name, op.kind, "bias does not fit int32 at this input scale")
        rq = Requant.from_ratio(in_q.scale * ws / out.scale, mult_bits, rounding)
        if isinstance(op, Conv2D):
            return QConv2D(w, bias, op.stride, op.padding, op.dilation, op.groups,
                           in_q=in_q, out_q=out, requant=rq, weight_bits=weight_bits)
        return QDense(w, bias, in_q=in_q, out_q=out, requant=rq, weight_bits=weight_bits)
    if isinstance(op, (MaxPool, Flatten)):
        if in_q != out:
            raise LayerError(name, op.kind, "input and output quantization must match")
        return op
    if isinstance(op, Activation):
        return quantize_activation(op, in_q, out, mult_bits, rounding)
    if isinstance(op, AvgPool):
        k = op.kernel[0] * op.kernel[1]
        rq = Requant.from_ratio(in_q.scale / (out.scale * k), mult_bits, rounding)
        return QAvgPool(op.kernel, op.stride, op.padding, in_q=in_q, out_q=out, requant=rq)
    if isinstance(op, GlobalAvgPool):
        rq = Requant.from_ratio(in_q.scale / (out.scale * in_shape[0] * in_shape[1]),
                                mult_bits, rounding)
        return QGlobalAvgPool(in_q=in_q, out_q=out, requant=rq)
    if isinstance(op, Add):
        return quantize_add(ins[0], ins[1], out, mult_bits, rounding)
    raise LayerError(name, op.kind, "cannot be quantized")


def quantize_activation(op, in_q, out_q, mult_bits=MULT_BITS, rounding="half_up"):
    """Integer form of a float :class:`~hwconv.ir.Activation` between two QParams."""
    ratio = in_q.scale / out_q.scale
    pos = Requant.from_ratio(ratio, mult_bits, rounding)
    if op.fn == "relu" or op.fn == "relu6":
        neg = Requant.from_ratio(0.0, mult_bits, rounding)
    elif op.fn == "leaky_relu":
        if op.alpha < 0:
            raise HwconvError(f"LeakyReLU alpha={op.alpha} < 0 is not supported: the "
                              f"fixed-point form needs a non-negative multiplier")
        neg = Requant.from_ratio(ratio * op.alpha, mult_bits, rounding)
    else:
        neg = pos
    lo, hi = out_q.qmin, out_q.qmax
    if op.lo is not None:
        lo = int(np.clip(out_q.quantize(op.lo), out_q.qmin, out_q.qmax))
    if op.hi is not None:
        hi = int(np.clip(out_q.quantize(op.hi), out_q.qmin, out_q.qmax))
    return QActivation(op.fn, in_q, out_q, pos, neg, lo, hi)


def quantize_add(a_q, b_q, out_q, mult_bits=MULT_BITS, rounding="half_up"):
    """Integer residual add with one shared shift (single rounding)."""
    ra, rb = a_q.scale / out_q.scale, b_q.scale / out_q.scale
    e = int(np.floor(np.log2(max(ra, rb))))
    shift = mult_bits - 1 - e
    if shift < 0:
        raise HwconvError(f"Add scale ratio {max(ra, rb):.3g} is too large")
    ma, mb = int(round(ra * 2 ** shift)), int(round(rb * 2 ** shift))
    return QAdd(a_q=a_q, b_q=b_q, out_q=out_q, mult_a=ma, mult_b=mb, shift=shift,
                rounding=rounding)
