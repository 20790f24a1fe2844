"""Import an ONNX model (float, or QDQ-quantized by onnxruntime) into hwconv.

A float model becomes a float :class:`~hwconv.ir.Network`.  A QDQ model (as written by
:func:`onnxruntime.quantization.quantize_static` with ``QuantFormat.QDQ``) becomes both
a float network (weights dequantized) and the integer :class:`~hwconv.quant.QNetwork`
the golden model runs, built from the model's own integer weights, biases, scales and
zero points, so that it computes what onnxruntime's quantized kernels compute.

Supported operators: Conv (2-D; groups, strides, pads, auto_pad, dilations), Relu, Clip,
LeakyRelu, MaxPool, AveragePool, GlobalAveragePool, BatchNormalization, Add, Flatten,
Reshape to ``(batch, features)``, Gemm, MatMul (``+ Add`` of a constant as its bias),
QuantizeLinear, DequantizeLinear, Identity and Constant.

How a QDQ model maps to integer layers:

* ``QuantizeLinear`` of an activation sets that tensor's :class:`~hwconv.numerics.QParams`
  (per-tensor, int8 or uint8); ``DequantizeLinear`` of a constant gives the integer
  weights (symmetric: zero point 0; per-tensor or per-output-channel scales) or the int32
  bias.  Every layer between ``DequantizeLinear`` inputs and a ``QuantizeLinear`` output
  becomes one integer layer.
* onnxruntime's quantizer drops a Relu/Clip that follows a conv, dense, add or batch
  norm into that layer's output range: the zero point sits at the bottom of the integer
  range, so saturation clamps at real 0.  The importer makes that activation explicit as
  a ReLU node ``<layer>.relu`` (exact: it changes no value), so that pool-before-activate
  and the pool-activate stage see it.  Where the dropped Clip's range lands on a
  max-pool instead, an identity activation ``<pool>.requant`` rescales after the pool.
* A BatchNormalization that was not folded into a conv is computed in float by
  onnxruntime; hwconv makes it a depthwise 1x1 conv with one exact weight per channel.

Layout: ONNX tensors are NCHW (or ``(N, K)``) and batch first; hwconv is NHWC.
:class:`Imported` records the model's layouts and converts at the boundary.

Errors are :class:`~hwconv.errors.HwconvError` with one line naming the ONNX node, its op
and the reason (:class:`OnnxError`), or the file (unreadable or invalid models).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .. import golden
from ..errors import HwconvError, LayerError, UnsupportedError
from ..ir import Activation, Add, AvgPool, BatchNorm, Conv2D, Dense, Flatten, GlobalAvgPool, \
    MaxPool, Network, Node
from ..numerics import QParams, Requant
from ..quant import QConv2D, QDense, QNetwork, _quantize_op

__all__ = ["SUPPORTED_OPS", "IMPORT_MULT_BITS", "OnnxError", "Imported", "load_model",
           "import_onnx", "is_quantized"]

SUPPORTED_OPS = ("Conv", "Relu", "Clip", "LeakyRelu", "MaxPool", "AveragePool",
                 "GlobalAveragePool", "BatchNormalization", "Add", "Flatten", "Reshape",
                 "Gemm", "MatMul", "QuantizeLinear", "DequantizeLinear", "Identity",
                 "Constant")

#: Requantization multiplier width of imported QDQ models.  onnxruntime requantizes in
#: float32 (24-bit mantissa); with 24-bit multipliers the golden model matched it on
#: 100% of the digits model's values, against 99.5% of its outputs with 16 bits.
IMPORT_MULT_BITS = 24
#: onnxruntime's integer kernels round ties to even (nearbyint); imported models do too,
#: so a tie (common in average pools and equal-scale rescales) gives the same integer.
ROUNDING = "half_even"

_QDQ = ("QuantizeLinear", "DequantizeLinear")
_ONNX_DTYPES = {np.dtype(np.int8): "int8", np.dtype(np.uint8): "uint8"}
#: Layers whose output can go negative: a zero point at the range floor means a ReLU.
_SIGNED_OUTPUT = (Conv2D, Dense, Add, BatchNorm)


class OnnxError(UnsupportedError):
    """An ONNX node hwconv cannot import: names the node, its op and the reason."""

    def __init__(self, node, op, reason):
        self.node, self.op, self.reason = node, op, reason
        super().__init__(f"node {node!r} ({op}): {reason}")


def _one_line(text, limit=300):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def load_model(source):
    """Read and validate an ONNX model.

    Parameters
    ----------
    source : str, path-like or onnx.ModelProto

    Returns
    -------
    onnx.ModelProto

    Raises
    ------
    HwconvError
        The file is missing, is not a protobuf ONNX model (for example truncated), or
        fails :func:`onnx.checker.check_model`; one line naming the file.
    """
    if isinstance(source, onnx.ModelProto):
        model, where = source, "model"
    else:
        where = str(source)
        if not Path(source).is_file():
            raise HwconvError(f"{where}: no such model file")
        try:
            model = onnx.load(source)
        except Exception as e:  # protobuf raises its own DecodeError, and others
            raise HwconvError(f"{where}: not a readable ONNX model (truncated or "
                              f"corrupt?): {_one_line(e)}") from None
    if not model.graph.node:
        raise HwconvError(f"{where}: the ONNX model has no nodes (empty or truncated file)")
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise HwconvError(f"{where}: invalid ONNX model: {_one_line(e)}") from None
    return model


def is_quantized(model):
    """True when ``model`` (a ModelProto) holds QuantizeLinear/DequantizeLinear nodes."""
    return any(n.op_type in _QDQ for n in model.graph.node)


@dataclass
class _Const:
    """A constant tensor: ``value`` as stored (ints stay ints) or dequantized.

    ``q`` is ``(ints, scale, zero_point)`` broadcast to ``value``'s shape when the value
    came out of a DequantizeLinear; layout changes go through :meth:`map` so that the
    integer weights and their scales move together.
    """

    value: np.ndarray
    q: tuple | None = None

    def map(self, fn):
        return _Const(fn(self.value), None if self.q is None else tuple(fn(a) for a in self.q))


@dataclass
class _Act:
    """An activation: hwconv tensor ``name``; ``integer`` after a QuantizeLinear."""

    name: str
    integer: bool = False


@dataclass
class Imported:
    """An imported ONNX model.

    Attributes
    ----------
    network : Network
        Float network (for a QDQ model, with its dequantized weights).
    qnetwork : QNetwork or None
        Integer network the golden model runs; ``None`` for a float model.
    input_name, output_name : str
        ONNX names of the model's input and output.
    input_layout, output_layout : {"NCHW", "NC"}
        External layouts; hwconv is NHWC internally.
    batch : int or None
        The model's fixed batch size, or ``None`` when the batch dimension is symbolic.
    origin : dict
        hwconv node name -> ONNX node it came from.
    onnx_tensors : dict
        hwconv tensor name -> ONNX tensor holding the same integers (a QuantizeLinear
        output), for layer-by-layer comparison with onnxruntime.
    """

    network: Network
    qnetwork: QNetwork | None
    input_name: str
    output_name: str
    input_layout: str
    output_layout: str
    batch: int | None = None
    origin: dict = field(default_factory=dict)
    onnx_tensors: dict = field(default_factory=dict)

    @property
    def input_shape(self):
        """Per-item input shape as the ONNX model has it (``(C, H, W)`` or ``(K,)``)."""
        return _to_external_shape(self.network.input_shape)

    @property
    def output_shape(self):
        """Per-item output shape as the ONNX model has it."""
        return _to_external_shape(self.network.output_shape)

    def to_internal(self, x):
        """Check a batch of model inputs (batch first, ONNX layout) and make it NHWC."""
        x = np.asarray(x)
        if x.ndim != len(self.input_shape) + 1 or x.shape[1:] != self.input_shape:
            dims = ", ".join(str(d) for d in self.input_shape)
            raise HwconvError(f"input has shape {x.shape}; the model expects "
                              f"(batch, {dims}) ({self.input_layout})")
        if not np.issubdtype(x.dtype, np.floating):
            raise HwconvError(f"input must be float32, not {x.dtype}")
        if not np.all(np.isfinite(x)):
            raise HwconvError("input holds NaN or infinite values")
        return _nhwc(x)

    def to_internal_ints(self, t):
        """An integer tensor of the ONNX model (NCHW or NC) in hwconv's NHWC layout."""
        return _nhwc(np.asarray(t, dtype=np.int64))

    def to_external(self, y):
        """Convert a batch of hwconv outputs (NHWC) to the model's output layout."""
        y = np.asarray(y)
        return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y

    def infer(self, x):
        """Golden model, float in and float out, both in the model's own layout.

        Parameters
        ----------
        x : ndarray
            Float inputs shaped like the ONNX model's input, batch first.

        Returns
        -------
        ndarray of float32
            What the quantized model outputs, dequantized, shaped like its output.
        """
        if self.qnetwork is None:
            raise HwconvError("a float model has no integer golden model: quantize it "
                              "first (hwconv.frontends.ort.quantize_model)")
        return self.to_external(golden.infer(self.qnetwork, self.to_internal(x)))


def _nhwc(x):
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def _to_external_shape(shape):
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)


def _attrs(node):
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _broadcast(param, shape, axis):
    """Broadcast a per-tensor or per-axis quantization parameter to ``shape``."""
    param = np.asarray(param)
    if param.size == 1:
        return np.broadcast_to(param.reshape(()), shape)
    axis = axis % len(shape)
    if param.ndim != 1 or param.shape[0] != shape[axis]:
        raise HwconvError(f"parameter of shape {param.shape} does not match axis {axis} "
                          f"of a {shape} tensor")
    view = [1] * len(shape)
    view[axis] = -1
    return np.broadcast_to(param.reshape(view), shape)


def _per_channel(scale):
    """The per-output-channel scales of a weight whose first axis is the channel."""
    flat = np.asarray(scale, dtype=np.float64).reshape(scale.shape[0], -1)
    if np.any(flat != flat[:, :1]):
        raise HwconvError("weight scales vary within an output channel")
    return flat[:, 0]


def _same_pads(auto_pad, size, kernel, stride, dilation):
    """Explicit ``(top, left, bottom, right)`` padding for auto_pad SAME_UPPER/LOWER."""
    before, after = [], []
    for n, k, s, d in zip(size, kernel, stride, dilation):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        small = total // 2
        big = total - small
        before.append(small if auto_pad == "SAME_UPPER" else big)
        after.append(big if auto_pad == "SAME_UPPER" else small)
    return (before[0], before[1], after[0], after[1])


class _Importer:
    """One pass over the ONNX graph, in its (topological) node order."""

    def __init__(self, model, mult_bits):
        self.graph = model.graph
        self.mult_bits = mult_bits
        self.opset = next((o.version for o in model.opset_import
                           if o.domain in ("", "ai.onnx")), 1)
        self.values = {}
        self.qp = {}
        self.weights = {}
        self.origin = {}
        self.onnx_tensors = {}
        self.used = set()
        self.fused_adds = set()
        self.users = {}
        for n in self.graph.node:
            for i in n.input:
                self.users.setdefault(i, []).append(n)
        self.graph_outputs = {o.name for o in self.graph.output}
        self.node = None
        for init in self.graph.initializer:
            self.values[init.name] = _Const(self._initializer(init))

    # -- errors and lookups ----------------------------------------------------------

    def fail(self, reason):
        """Raise :class:`OnnxError` for the node being imported."""
        raise OnnxError(self.node.name or self.node.output[0], self.node.op_type, reason)

    @staticmethod
    def _initializer(tensor):
        try:
            return numpy_helper.to_array(tensor)
        except Exception as e:
            raise HwconvError(f"initializer {tensor.name!r}: unreadable tensor data "
                              f"(truncated file?): {_one_line(e)}") from None

    def _input(self, i, what):
        ins = self.node.input
        if i >= len(ins) or not ins[i]:
            self.fail(f"missing {what}")
        if ins[i] not in self.values:
            self.fail(f"{what} {ins[i]!r} is not defined before this node")
        return self.values[ins[i]]

    def const(self, i, what):
        v = self._input(i, what)
        if isinstance(v, _Act):
            self.fail(f"{what} {self.node.input[i]!r} is not a constant: only constant "
                      f"(initializer) weights and parameters are supported")
        return v

    def optional_const(self, i, what):
        ins = self.node.input
        return self.const(i, what) if i < len(ins) and ins[i] else None

    def act(self, i=0, integer_ok=False):
        v = self._input(i, "input")
        if isinstance(v, _Const):
            self.fail(f"input {self.node.input[i]!r} is a constant; an activation tensor "
                      f"is needed")
        if v.integer and not integer_ok:
            self.fail("reads an integer tensor directly: only float and QDQ-format "
                      "models are supported (QOperator format is not)")
        return v

    def shape(self, act):
        return self.net.shapes[act.name]

    def feature_map(self, act):
        shape = self.shape(act)
        if len(shape) != 3:
            self.fail(f"needs an NCHW feature map input, got a vector of {shape[0]}")
        return shape

    # -- building ----------------------------------------------------------------------

    def hw_name(self, label, op_type=None):
        """A unique hwconv name for an ONNX label (PyTorch's ``/conv1/Conv`` -> ``conv1``)."""
        label = label.lstrip("/")
        if op_type and label.endswith("/" + op_type):
            label = label[:-len(op_type) - 1]
        base = re.sub(r"[^A-Za-z0-9_.\-/:]", "_", label) or "node"
        if not re.match(r"[A-Za-z_]", base):
            base = "n" + base
        name, i = base, 2
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name

    def add(self, layer, inputs, integer=False):
        """Append ``layer`` for the current node; its first output becomes an activation."""
        node = self.node
        name = self.hw_name(node.name or node.output[0], node.op_type)
        try:
            self.net.add(name, layer, *(a.name for a in inputs))
        except LayerError as e:
            self.fail(e.reason)
        except HwconvError as e:
            self.fail(str(e))
        self.origin[name] = node.name or node.output[0]
        self.values[node.output[0]] = _Act(name, integer)
        if integer:
            self.qp[name] = self.qp[inputs[0].name]
        return name

    def alias(self, act):
        self.values[self.node.output[0]] = act

    def run(self):
        self._input_tensor()
        for node in self.graph.node:
            self.node = node
            if node.domain not in ("", "ai.onnx"):
                self.fail(f"operator from domain {node.domain!r} is not supported")
            handler = getattr(self, f"op_{node.op_type}", None)
            if handler is None:
                self.fail(f"unsupported operator; hwconv supports {', '.join(SUPPORTED_OPS)}")
            extra = [o for o in node.output[1:] if o]
            if extra:
                self.fail(f"optional output {extra[0]!r} is not supported")
            handler(_attrs(node))
        return self._output_tensor()

    def _input_tensor(self):
        inputs = [i for i in self.graph.input if i.name not in self.values]
        if len(inputs) != 1:
            raise HwconvError(f"the model has {len(inputs)} inputs; hwconv supports exactly "
                              f"one")
        vi = inputs[0]
        self.input_name = vi.name
        t = vi.type.tensor_type
        if t.elem_type != onnx.TensorProto.FLOAT:
            raise OnnxError(vi.name, "input", f"must be float32, not "
                            f"{onnx.TensorProto.DataType.Name(t.elem_type).lower()}")
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in t.shape.dim]
        if not t.HasField("shape") or len(dims) not in (2, 4):
            raise OnnxError(vi.name, "input", f"shape {dims or 'unknown'} is not "
                            f"(N, C, H, W) or (N, K)")
        if any(not isinstance(d, int) or d < 1 for d in dims[1:]):
            raise OnnxError(vi.name, "input", f"dynamic shape {dims}: only the batch "
                            f"dimension may be symbolic")
        self.batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
        shape = (dims[2], dims[3], dims[1]) if len(dims) == 4 else (dims[1],)
        name = self.hw_name(vi.name)
        self.net = Network(shape, name)
        self.values[vi.name] = _Act(name)

    def _output_tensor(self):
        if len(self.graph.output) != 1:
            raise HwconvError(f"the model has {len(self.graph.output)} outputs; hwconv "
                              f"supports exactly one")
        out = self.graph.output[0].name
        v = self.values.get(out)
        if not isinstance(v, _Act) or v.name == self.net.input_name:
            raise OnnxError(out, "output", "is not computed from the input by any layer")
        self.net.output = v.name
        declared = [d.dim_value if d.HasField("dim_value") else None
                    for d in self.graph.output[0].type.tensor_type.shape.dim][1:]
        inferred = _to_external_shape(self.net.output_shape)
        if declared and (len(declared) != len(inferred) or
                         any(d not in (None, 0, i) for d, i in zip(declared, inferred))):
            raise OnnxError(out, "output", f"declared shape {declared} differs from the "
                            f"inferred {list(inferred)}")
        return out

    # -- quantization nodes ---------------------------------------------------------------

    def qparams(self):
        scale = self.const(1, "scale").value
        if scale.size != 1:
            self.fail("per-axis quantization of an activation is not supported")
        zp = self.optional_const(2, "zero point")
        if zp is None:
            dtype, zero = "uint8", 0
        else:
            dtype = _ONNX_DTYPES.get(zp.value.dtype)
            if dtype is None or zp.value.size != 1:
                self.fail(f"only 8-bit per-tensor activations are supported, not "
                          f"{zp.value.dtype} of shape {zp.value.shape}")
            zero = int(zp.value.reshape(-1)[0])
        try:
            return QParams(float(scale.reshape(-1)[0]), zero, dtype)
        except HwconvError as e:
            self.fail(str(e))

    def _const_qparams(self, shape, attrs):
        if attrs.get("block_size", 0):
            self.fail("blocked quantization is not supported")
        axis = attrs.get("axis", 1)
        scale = self.const(1, "scale").value.astype(np.float64)
        zp = self.optional_const(2, "zero point")
        try:
            return (_broadcast(scale, shape, axis),
                    _broadcast(0 if zp is None else zp.value.astype(np.int64), shape, axis),
                    np.uint8 if zp is None else zp.value.dtype)
        except HwconvError as e:
            self.fail(str(e))

    def op_QuantizeLinear(self, attrs):
        x = self._input(0, "input")
        if isinstance(x, _Const):
            scale, zp, dtype = self._const_qparams(x.value.shape, attrs)
            info = np.iinfo(dtype)
            q = np.clip(np.rint(x.value / scale) + zp, info.min, info.max)
            self.values[self.node.output[0]] = _Const(q.astype(dtype))
            return
        self._bind(self.act(0), self.node.output[0], integer=True)

    def op_DequantizeLinear(self, attrs):
        x = self._input(0, "input")
        if isinstance(x, _Const):
            if not np.issubdtype(x.value.dtype, np.integer):
                self.fail(f"dequantizes a {x.value.dtype} constant; integers are needed")
            ints = x.value.astype(np.int64)
            scale, zp, _ = self._const_qparams(ints.shape, attrs)
            self.values[self.node.output[0]] = _Const((ints - zp) * scale, (ints, scale, zp))
            return
        self._bind(self.act(0, integer_ok=True), self.node.input[0], integer=False)

    def _bind(self, x, integer_tensor, integer):
        """Give activation ``x`` the current Q/DQ node's parameters (they must agree)."""
        qp = self.qparams()
        known = self.qp.setdefault(x.name, qp)
        if known != qp:
            self.fail(f"parameters {qp} differ from those tensor {x.name!r} already has "
                      f"({known})")
        self.onnx_tensors.setdefault(x.name, integer_tensor)
        self.alias(_Act(x.name, integer))

    # -- layers -----------------------------------------------------------------------

    def _pads(self, attrs, shape, kernel, stride, dilation):
        auto = attrs.get("auto_pad", "NOTSET")
        if auto in ("NOTSET", ""):
            pads = tuple(attrs.get("pads", (0, 0, 0, 0)))
            if len(pads) != 4:
                self.fail(f"pads {list(pads)} must have 4 values (2-D only)")
            return pads
        if auto == "VALID":
            return (0, 0, 0, 0)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            return _same_pads(auto, shape[:2], kernel, stride, dilation)
        self.fail(f"unknown auto_pad {auto!r}")

    def _pair_attr(self, attrs, key, default=(1, 1)):
        v = tuple(attrs.get(key, default))
        if len(v) != 2:
            self.fail(f"{key} {list(v)} must have 2 values (2-D only)")
        return v

    def op_Conv(self, attrs):
        x = self.act()
        w = self.const(1, "weight")
        if w.value.ndim != 4:
            self.fail(f"only 2-D convolution is supported (weight is {w.value.ndim}-D)")
        b = self.optional_const(2, "bias")
        kernel = w.value.shape[2:]
        if tuple(attrs.get("kernel_shape", kernel)) != kernel:
            self.fail(f"kernel_shape {attrs['kernel_shape']} differs from the weight's "
                      f"{list(kernel)}")
        stride = self._pair_attr(attrs, "strides")
        dilation = self._pair_attr(attrs, "dilations")
        pads = self._pads(attrs, self.feature_map(x), kernel, stride, dilation)
        w = w.map(lambda a: np.transpose(a, (0, 2, 3, 1)))
        layer = Conv2D(w.value, None if b is None else b.value, stride, pads, dilation,
                       attrs.get("group", 1))
        self.weights[self.add(layer, [x])] = (w, b)

    def _dense(self, x, w, b):
        if len(self.shape(x)) != 1:
            self.fail(f"needs a (batch, features) input; flatten the {self.shape(x)} "
                      f"feature map first")
        if b is not None:
            o = w.value.shape[0]
            if b.value.size not in (1, o):
                self.fail(f"bias of shape {b.value.shape} is not one value per output")
            b = b.map(lambda a: np.broadcast_to(a, (1, o)).reshape(o) if a.size == 1
                      else a.reshape(o))
        name = self.add(Dense(w.value, None if b is None else b.value), [x])
        self.weights[name] = (w, b)
        return name

    def op_Gemm(self, attrs):
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or \
                attrs.get("beta", 1.0) != 1.0:
            self.fail("only transA=0, alpha=1, beta=1 is supported")
        x = self.act()
        w = self.const(1, "weight")
        if w.value.ndim != 2:
            self.fail(f"weight must be 2-D, not {w.value.shape}")
        if not attrs.get("transB", 0):
            w = w.map(np.transpose)
        self._dense(x, w, self.optional_const(2, "bias"))

    def op_MatMul(self, attrs):
        x = self.act()
        w = self.const(1, "weight")
        if w.value.ndim != 2:
            self.fail(f"weight must be 2-D, not {w.value.shape}")
        bias = None
        out = self.node.output[0]
        users = self.users.get(out, [])
        if len(users) == 1 and users[0].op_type == "Add" and out not in self.graph_outputs:
            other = [i for i in users[0].input if i != out]
            if len(other) == 1 and isinstance(self.values.get(other[0]), _Const):
                bias = self.values[other[0]]
                self.fused_adds.add(id(users[0]))
        self._dense(x, w.map(np.transpose), bias)

    def op_Add(self, attrs):
        if id(self.node) in self.fused_adds:
            self.alias(self.values[next(i for i in self.node.input
                                        if isinstance(self.values[i], _Act))])
            return
        if any(isinstance(self._input(i, "input"), _Const) for i in (0, 1)):
            self.fail("adding a constant is supported only as the bias of a MatMul that "
                      "feeds nothing else (run quant_pre_process before quantizing)")
        self.add(Add(), [self.act(0), self.act(1)])

    def _activation(self, layer):
        self.add(layer, [self.act()])

    def op_Relu(self, attrs):
        self._activation(Activation("relu"))

    def op_LeakyRelu(self, attrs):
        self._activation(Activation("leaky_relu", alpha=attrs.get("alpha", 0.01)))

    def op_Clip(self, attrs):
        if self.opset < 11:
            lo, hi = attrs.get("min"), attrs.get("max")
        else:
            lo, hi = (self.optional_const(i, f"{w} bound") for i, w in ((1, "min"), (2, "max")))
            lo, hi = (None if v is None else float(v.value.reshape(-1)[0]) for v in (lo, hi))
        lo, hi = (None if v is None or not np.isfinite(v) else float(v) for v in (lo, hi))
        if lo == 0.0 and hi in (None, 6.0):
            self._activation(Activation("relu" if hi is None else "relu6"))
        else:
            self._activation(Activation("clip", lo=lo, hi=hi))

    def _window(self, attrs, x):
        if "kernel_shape" not in attrs:
            self.fail("kernel_shape is missing")
        kernel = self._pair_attr(attrs, "kernel_shape")
        stride = self._pair_attr(attrs, "strides")
        if self._pair_attr(attrs, "dilations") != (1, 1):
            self.fail("dilated pooling is not supported")
        shape = self.feature_map(x)
        pads = self._pads(attrs, shape, kernel, stride, (1, 1))
        if attrs.get("ceil_mode", 0):
            for n, k, s, p0, p1 in zip(shape[:2], kernel, stride, pads[:2], pads[2:]):
                if (n + p0 + p1 - k) % s:
                    self.fail("ceil_mode=1 changes the output size here; only floor mode "
                              "is supported")
        return kernel, stride, pads

    def op_MaxPool(self, attrs):
        x = self.act(integer_ok=True)
        self.add(MaxPool(*self._window(attrs, x)), [x], integer=x.integer)

    def op_AveragePool(self, attrs):
        x = self.act()
        kernel, stride, pads = self._window(attrs, x)
        if any(pads) and not attrs.get("count_include_pad", 0):
            self.fail("count_include_pad=0 with padding is not supported (hwconv divides "
                      "by the full window)")
        self.add(AvgPool(kernel, stride, pads), [x])

    def op_GlobalAveragePool(self, attrs):
        x = self.act()
        self.feature_map(x)
        self.add(GlobalAvgPool(), [x])

    def op_BatchNormalization(self, attrs):
        if attrs.get("training_mode", 0):
            self.fail("training_mode=1 is not supported")
        x = self.act()
        params = [self.const(i, what).value.astype(np.float64)
                  for i, what in enumerate(("scale", "bias", "mean", "var"), 1)]
        self.add(BatchNorm(*params, eps=attrs.get("epsilon", 1e-5)), [x])

    def _flatten_or_alias(self, x):
        if len(self.shape(x)) == 1:
            self.alias(x)
        else:
            self.add(Flatten(), [x], integer=x.integer)

    def op_Flatten(self, attrs):
        x = self.act(integer_ok=True)
        if attrs.get("axis", 1) not in (1, -len(self.shape(x))):
            self.fail(f"axis={attrs['axis']}: only flattening to (batch, features) "
                      f"(axis=1) is supported")
        self._flatten_or_alias(x)

    def op_Reshape(self, attrs):
        x = self.act(integer_ok=True)
        target = [int(v) for v in self.const(1, "shape").value.reshape(-1)]
        features = int(np.prod(self.shape(x)))
        if len(target) != 2 or not (target[0] in (0, -1) or target[0] == self.batch) or \
                not (target[1] == features or (target[1] == -1 and target[0] != -1)):
            self.fail(f"Reshape to {target} is not a flatten to (batch, {features})")
        self._flatten_or_alias(x)

    def op_Identity(self, attrs):
        self.alias(self._input(0, "input"))

    def op_Constant(self, attrs):
        if "value" in attrs:
            value = numpy_helper.to_array(attrs["value"])
        else:
            keys = [k for k in ("value_float", "value_floats", "value_int", "value_ints")
                    if k in attrs]
            if not keys:
                self.fail(f"constant attribute {sorted(attrs)} is not supported")
            value = np.asarray(attrs[keys[0]],
                               dtype=np.float32 if "float" in keys[0] else np.int64)
        self.values[self.node.output[0]] = _Const(value)

    # -- the integer network ----------------------------------------------------------

    def explicit_activations(self):
        """Make activations that a QDQ model folded into quantization ranges explicit.

        * A conv, dense, add or batch norm whose output zero point is the bottom of the
          integer range clamps at real 0: ``<layer>.relu`` follows it.
        * A max-pool or flatten whose output is quantized differently from its input
          (onnxruntime moved a Clip's range onto it) keeps its input's parameters and
          ``<layer>.requant``, an identity activation, rescales after it (exact for
          max-pooling: a non-decreasing requantization commutes with max).
        """
        net, nodes, rename = self.net, [], {}
        for n in net.nodes:
            n = Node(n.name, n.op, tuple(rename.get(i, i) for i in n.inputs))
            nodes.append(n)
            q = self.qp.get(n.name)
            in_q = self.qp.get(n.inputs[0])
            if isinstance(n.op, (MaxPool, Flatten)) and q is not None and q != in_q:
                self.qp[n.name] = in_q
                self._follow(nodes, rename, n.name, "requant", Activation("identity"), q,
                             move_tensor=True)
            elif isinstance(n.op, _SIGNED_OUTPUT) and q is not None and \
                    q.zero_point == q.qmin and n.name != net.output and \
                    not all(isinstance(u.op, Activation) for u in net.consumers(n.name)):
                self._follow(nodes, rename, n.name, "relu", Activation("relu"), q)
        self.net = net.rebuilt(nodes, rename.get(net.output, net.output))

    def _follow(self, nodes, rename, name, suffix, layer, q, move_tensor=False):
        """Append ``layer`` after tensor ``name``; its readers read the new node."""
        new = self.hw_name(f"{name}.{suffix}")
        nodes.append(Node(new, layer, (name,)))
        rename[name] = new
        self.qp[new] = q
        self.origin[new] = self.origin[name]
        if name in self.onnx_tensors:
            self.onnx_tensors[new] = self.onnx_tensors[name]
            if move_tensor:
                del self.onnx_tensors[name]

    def integer_network(self):
        """The :class:`QNetwork` of a QDQ model (see module docstring)."""
        net = self.net
        for t in net.shapes:
            if t not in self.qp:
                where = self.origin.get(t, t)
                op = net.node(t).op.kind if t != net.input_name else "input"
                raise OnnxError(where, op, "output is not quantized: every tensor of a "
                                "QDQ model needs a QuantizeLinear")
        qnet = QNetwork(net.input_shape, net.input_name, qparams=dict(self.qp))
        for n in net.nodes:
            ins = [self.qp[i] for i in n.inputs]
            try:
                layer = self.integer_layer(n, ins, self.qp[n.name],
                                           net.shapes[n.inputs[0]])
                qnet.add(n.name, layer, *n.inputs)
            except HwconvError as e:
                reason = e.reason if isinstance(e, LayerError) else str(e)
                raise OnnxError(self.origin[n.name], n.op.kind, reason) from None
        qnet.output = net.output
        qnet.qparams = {t: self.qp[t] for t in qnet.shapes}
        return qnet

    def integer_layer(self, n, ins, out, in_shape):
        op = n.op
        if isinstance(op, (Conv2D, Dense)):
            return self.integer_mac(n, ins[0], out)
        if isinstance(op, BatchNorm):
            if len(in_shape) != 3:
                raise HwconvError("batch normalization of a vector is not supported in a "
                                  "quantized model")
            c = len(op.gamma)
            op = Conv2D(op.scale.reshape(c, 1, 1, 1), op.shift, groups=c)
        return _quantize_op(n.name, op, ins, out, in_shape, 8, self.mult_bits, ROUNDING)

    def integer_mac(self, n, in_q, out_q):
        """QConv2D/QDense from the model's own integer weights, bias and scales."""
        op = n.op
        w, b = self.weights[n.name]
        if w.q is None:
            raise HwconvError("weights are float in a quantized model (was the layer "
                              "excluded from quantization?)")
        ints, scale, zp = w.q
        if np.any(zp != 0):
            raise HwconvError("weight zero point must be 0 (symmetric weights)")
        if ints.min() < -128 or ints.max() > 127:
            raise HwconvError("weights must fit int8")
        acc_scale = in_q.scale * _per_channel(scale)
        if b is None:
            bias = np.zeros(len(acc_scale), np.int64)
        elif b.q is not None and np.all(b.q[2] == 0) and \
                np.allclose(b.q[1], acc_scale, rtol=1e-6, atol=0):
            bias = b.q[0].astype(np.int64)
        else:
            bias = np.rint(b.value / acc_scale).astype(np.int64)
        requant = Requant.from_ratio(acc_scale / out_q.scale, self.mult_bits, ROUNDING)
        if isinstance(op, Conv2D):
            return QConv2D(ints, bias, op.stride, op.padding, op.dilation, op.groups,
                           in_q=in_q, out_q=out_q, requant=requant)
        return QDense(ints, bias, in_q=in_q, out_q=out_q, requant=requant)


def import_onnx(source, mult_bits=IMPORT_MULT_BITS):
    """Import an ONNX model (see module docstring).

    Parameters
    ----------
    source : str, path-like or onnx.ModelProto
        A float model, or a QDQ model from onnxruntime's ``quantize_static``.
    mult_bits : int
        Requantization multiplier width for the integer network.

    Returns
    -------
    Imported

    Examples
    --------
    >>> from hwconv import zoo
    >>> from hwconv.frontends import export_onnx
    >>> imp = import_onnx(export_onnx(zoo.small_cnn()))
    >>> imp.input_layout, imp.input_shape, imp.qnetwork is None
    ('NCHW', (1, 8, 8), True)
    """
    model = load_model(source)
    imp = _Importer(model, mult_bits)
    output_name = imp.run()
    qnet = None
    if is_quantized(model):
        imp.explicit_activations()
        qnet = imp.integer_network()
    layout = {3: "NCHW", 1: "NC"}
    return Imported(imp.net, qnet, imp.input_name, output_name,
                    layout[len(imp.net.input_shape)], layout[len(imp.net.output_shape)],
                    imp.batch, imp.origin, imp.onnx_tensors)
