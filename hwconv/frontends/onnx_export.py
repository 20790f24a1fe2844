"""Export a float :class:`~hwconv.ir.Network` to an ONNX model.

The ONNX graph is NCHW, batch first with a symbolic batch dimension named ``batch``.
Conv weights are transposed from hwconv's ``(O, KH, KW, C/g)`` to ONNX's
``(O, C/g, KH, KW)``; hwconv's padding order ``(top, left, bottom, right)`` is ONNX's
``pads`` order already.  ``Flatten`` is channel-major in both, so dense weights carry
over unchanged (``Gemm`` with ``transB=1``).

Examples
--------
>>> from hwconv import zoo
>>> model = export_onnx(zoo.small_cnn(seed=0))
>>> [n.op_type for n in model.graph.node][:3]
['Conv', 'Relu', 'MaxPool']
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import HwconvError
from ..ir import Activation, Add, AvgPool, BatchNorm, Conv2D, Dense, Flatten, GlobalAvgPool, \
    MaxPool

__all__ = ["export_onnx", "OPSET"]

#: ONNX opset of exported models (Clip bounds are inputs from opset 11 on).
OPSET = 17


def _external_shape(shape):
    """ONNX shape (batch symbolic) of an hwconv per-item shape ``(H, W, C)`` or ``(N,)``."""
    if len(shape) == 3:
        h, w, c = shape
        return ["batch", c, h, w]
    return ["batch", shape[0]]


class _Builder:
    """Accumulates nodes and initializers; one method per hwconv layer kind."""

    def __init__(self):
        self.nodes, self.inits = [], []

    def const(self, name, value, dtype=np.float32):
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op_type, inputs, name, **attrs):
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))

    def conv(self, name, op, x):
        w = self.const(f"{name}.weight", op.weight.transpose(0, 3, 1, 2))
        b = self.const(f"{name}.bias", op.bias)
        self.node("Conv", [x, w, b], name, kernel_shape=list(op.kernel),
                  strides=list(op.stride), pads=list(op.padding),
                  dilations=list(op.dilation), group=op.groups)

    def dense(self, name, op, x):
        w = self.const(f"{name}.weight", op.weight)
        b = self.const(f"{name}.bias", op.bias)
        self.node("Gemm", [x, w, b], name, transB=1)

    def pool(self, name, op, x):
        attrs = dict(kernel_shape=list(op.kernel), strides=list(op.stride),
                     pads=list(op.padding))
        if isinstance(op, AvgPool):
            self.node("AveragePool", [x], name, count_include_pad=1, **attrs)
        else:
            self.node("MaxPool", [x], name, **attrs)

    def activation(self, name, op, x):
        if op.fn == "relu":
            self.node("Relu", [x], name)
        elif op.fn == "leaky_relu":
            self.node("LeakyRelu", [x], name, alpha=op.alpha)
        elif op.fn == "identity":
            self.node("Identity", [x], name)
        else:
            lo = "" if op.lo is None else self.const(f"{name}.min", op.lo)
            hi = "" if op.hi is None else self.const(f"{name}.max", op.hi)
            self.node("Clip", [x, lo, hi], name)

    def batchnorm(self, name, op, x):
        params = [self.const(f"{name}.{f}", getattr(op, f))
                  for f in ("gamma", "beta", "mean", "var")]
        self.node("BatchNormalization", [x, *params], name, epsilon=op.eps)


def export_onnx(net, path=None, producer="hwconv"):
    """Export float network ``net`` to ONNX (see module docstring).

    Parameters
    ----------
    net : Network
        A float network (integer layers are refused).
    path : str or path-like, optional
        Where to save the model as well.
    producer : str
        ``producer_name`` recorded in the model.

    Returns
    -------
    onnx.ModelProto
        Checked with :func:`onnx.checker.check_model`.  Input and output tensor names
        are ``net.input_name`` and ``net.output``; every node's output is named after
        the hwconv node.
    """
    b = _Builder()
    for n in net.nodes:
        op, x = n.op, n.inputs[0]
        if isinstance(op, (Conv2D, Dense)) and not np.issubdtype(op.weight.dtype, np.floating):
            raise HwconvError(f"layer {n.name!r} ({op.kind}): only float networks export "
                              f"to ONNX")
        if isinstance(op, Conv2D):
            b.conv(n.name, op, x)
        elif isinstance(op, Dense):
            b.dense(n.name, op, x)
        elif isinstance(op, (MaxPool, AvgPool)) and type(op) in (MaxPool, AvgPool):
            b.pool(n.name, op, x)
        elif type(op) is GlobalAvgPool:
            b.node("GlobalAveragePool", [x], n.name)
        elif isinstance(op, Activation):
            b.activation(n.name, op, x)
        elif isinstance(op, BatchNorm):
            b.batchnorm(n.name, op, x)
        elif type(op) is Add:
            b.node("Add", list(n.inputs), n.name)
        elif isinstance(op, Flatten):
            b.node("Flatten", [x], n.name, axis=1)
        else:
            raise HwconvError(f"layer {n.name!r} ({op.kind}): no ONNX export for this "
                              f"layer kind")
    graph = helper.make_graph(
        b.nodes, "hwconv",
        [helper.make_tensor_value_info(net.input_name, TensorProto.FLOAT,
                                       _external_shape(net.input_shape))],
        [helper.make_tensor_value_info(net.output, TensorProto.FLOAT,
                                       _external_shape(net.output_shape))],
        b.inits)
    model = helper.make_model(graph, producer_name=producer,
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        onnx.save(model, path)
    return model
