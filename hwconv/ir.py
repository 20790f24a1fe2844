"""The network IR: typed, validated layer descriptions and a DAG of nodes.

Conventions
-----------
* Tensors are batch-first and channels-last: a feature map is ``(B, H, W, C)``, a vector
  ``(B, N)``.  Shapes stored in the IR omit the batch: ``(H, W, C)`` or ``(N,)``.
* Conv weights are ``(O, KH, KW, C // groups)``; dense weights are ``(O, N)``.
* Padding is ``(top, left, bottom, right)``.
* ``Flatten`` orders a feature map channel-major (C, H, W), as ONNX and PyTorch do, so a
  model exported from either keeps its dense weights unchanged.

The same node/graph structure carries the float layers defined here and the integer
layers of :mod:`hwconv.quant`; every layer class implements ``infer_shape``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import HwconvError, LayerError

__all__ = [
    "Conv2D", "Dense", "MaxPool", "AvgPool", "GlobalAvgPool", "Activation", "BatchNorm",
    "Add", "Flatten", "Node", "Network", "conv_out_size", "normalize_padding", "pair",
    "depthwise", "pointwise",
]


def pair(value, what="value"):
    """Return ``value`` as a pair of ints (``3 -> (3, 3)``)."""
    if isinstance(value, (int, np.integer)):
        return (int(value), int(value))
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise HwconvError(f"{what} must be an int or a pair, not {value!r}")
    return value


def normalize_padding(padding, kernel, dilation=(1, 1)):
    """Return padding as ``(top, left, bottom, right)``.

    ``padding`` is ``"valid"``, ``"same"`` (output size = ceil(input / stride) for
    stride 1; extra padding goes bottom/right as in TensorFlow and ONNX SAME_UPPER), an
    int, a pair ``(ph, pw)`` or a 4-tuple.
    """
    kh, kw = kernel
    dh, dw = dilation
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            eh, ew = (kh - 1) * dh, (kw - 1) * dw
            return (eh // 2, ew // 2, eh - eh // 2, ew - ew // 2)
        raise HwconvError(f"padding must be 'valid', 'same' or ints, not {padding!r}")
    if isinstance(padding, (int, np.integer)):
        p = int(padding)
        return (p, p, p, p)
    padding = tuple(int(p) for p in padding)
    if len(padding) == 2:
        return (padding[0], padding[1], padding[0], padding[1])
    if len(padding) == 4:
        return padding
    raise HwconvError(f"padding must have 1, 2 or 4 values, not {padding!r}")


def conv_out_size(size, kernel, stride, pad_before, pad_after, dilation=1):
    """Output length of a sliding window along one axis (floor mode)."""
    span = (kernel - 1) * dilation + 1
    return (size + pad_before + pad_after - span) // stride + 1


class _Layer:
    """Shared validation for layer descriptions."""

    kind = "layer"
    arity = 1

    def infer_shape(self, name, *shapes):  # pragma: no cover - interface
        raise NotImplementedError

    def _fail(self, name, reason):
        raise LayerError(name, self.kind, reason)

    def _feature_map(self, name, shape):
        if len(shape) != 3:
            self._fail(name, f"needs a feature map (H, W, C) input, got shape {shape}")
        return shape

    def params(self) -> dict[str, Any]:
        """Non-array parameters, for printing and manifests."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray):
                out[f.name] = f"array{tuple(v.shape)}"
            else:
                out[f.name] = v
        return out


class _Windowed(_Layer):
    """Geometry checks shared by every sliding-window layer."""

    def _window_shape(self, name, shape, kernel, stride, padding, dilation=(1, 1)):
        h, w, _ = self._feature_map(name, shape)
        if min(kernel) < 1:
            self._fail(name, f"kernel {kernel} must be >= 1")
        if min(stride) < 1:
            self._fail(name, f"stride {stride} must be >= 1")
        if min(dilation) < 1:
            self._fail(name, f"dilation {dilation} must be >= 1")
        if min(padding) < 0:
            self._fail(name, f"padding {padding} must be >= 0")
        top, left, bottom, right = padding
        spans = ((kernel[0] - 1) * dilation[0] + 1, (kernel[1] - 1) * dilation[1] + 1)
        if spans[0] > h + top + bottom or spans[1] > w + left + right:
            self._fail(name, f"kernel span {spans} is larger than the padded input "
                             f"{(h + top + bottom, w + left + right)}")
        return (conv_out_size(h, kernel[0], stride[0], top, bottom, dilation[0]),
                conv_out_size(w, kernel[1], stride[1], left, right, dilation[1]))


@dataclass(eq=False)
class Conv2D(_Windowed):
    """2-D convolution (cross-correlation, as ONNX/PyTorch), optionally grouped.

    Parameters
    ----------
    weight : ndarray, shape (O, KH, KW, C // groups)
    bias : ndarray, shape (O,), or None
    stride, dilation : int or pair
    padding : ``"valid"``, ``"same"``, int, pair or (top, left, bottom, right)
    groups : int
        ``groups == C`` is depthwise; a 1x1 kernel with ``groups == 1`` is pointwise.
    """

    weight: np.ndarray
    bias: np.ndarray | None = None
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    kind = "Conv2D"

    def __post_init__(self):
        self.weight = np.asarray(self.weight, dtype=np.float64)
        if self.weight.ndim != 4:
            raise HwconvError(f"Conv2D weight must be (O, KH, KW, C/groups), "
                              f"got shape {self.weight.shape}")
        self.stride = pair(self.stride, "stride")
        self.dilation = pair(self.dilation, "dilation")
        self.padding = normalize_padding(self.padding, self.kernel, self.dilation)
        self.groups = int(self.groups)
        if self.bias is None:
            self.bias = np.zeros(self.out_channels)
        self.bias = np.asarray(self.bias, dtype=np.float64)

    @property
    def kernel(self):
        return tuple(self.weight.shape[1:3])

    @property
    def out_channels(self):
        return self.weight.shape[0]

    def infer_shape(self, name, shape):
        h, w, c = self._feature_map(name, shape)
        if self.groups < 1 or c % self.groups:
            self._fail(name, f"groups={self.groups} does not divide the {c} input channels")
        if self.out_channels % self.groups:
            self._fail(name, f"groups={self.groups} does not divide the "
                             f"{self.out_channels} output channels")
        if self.weight.shape[3] != c // self.groups:
            self._fail(name, f"weight has {self.weight.shape[3]} input channels per group, "
                             f"input has {c} channels in {self.groups} groups")
        if self.bias.shape != (self.out_channels,):
            self._fail(name, f"bias shape {self.bias.shape} != ({self.out_channels},)")
        oh, ow = self._window_shape(name, shape, self.kernel, self.stride, self.padding,
                                    self.dilation)
        return (oh, ow, self.out_channels)


def depthwise(weight, bias=None, **kw):
    """Depthwise conv from a ``(C * multiplier, KH, KW, 1)`` weight."""
    weight = np.asarray(weight)
    return _DepthwiseFactory(weight, bias, kw)


class _DepthwiseFactory:
    # Depthwise needs the input channel count for ``groups``; Network.add resolves it.
    def __init__(self, weight, bias, kw):
        self.weight, self.bias, self.kw = weight, bias, kw

    def resolve(self, shape):
        return Conv2D(self.weight, self.bias, groups=shape[-1], **self.kw)


def pointwise(weight, bias=None):
    """Pointwise (1x1) conv from an ``(O, C)`` weight."""
    weight = np.asarray(weight, dtype=np.float64)
    return Conv2D(weight[:, None, None, :], bias)


@dataclass(eq=False)
class Dense(_Layer):
    """Fully connected layer ``y = W x + b`` on a vector, weight ``(O, N)``."""

    weight: np.ndarray
    bias: np.ndarray | None = None
    kind = "Dense"

    def __post_init__(self):
        self.weight = np.asarray(self.weight, dtype=np.float64)
        if self.weight.ndim != 2:
            raise HwconvError(f"Dense weight must be (O, N), got shape {self.weight.shape}")
        if self.bias is None:
            self.bias = np.zeros(self.weight.shape[0])
        self.bias = np.asarray(self.bias, dtype=np.float64)

    def infer_shape(self, name, shape):
        if len(shape) != 1:
            self._fail(name, f"needs a vector input (Flatten first), got shape {shape}")
        if shape[0] != self.weight.shape[1]:
            self._fail(name, f"weight expects {self.weight.shape[1]} inputs, got {shape[0]}")
        if self.bias.shape != (self.weight.shape[0],):
            self._fail(name, f"bias shape {self.bias.shape} != ({self.weight.shape[0]},)")
        return (self.weight.shape[0],)


@dataclass(eq=False)
class MaxPool(_Windowed):
    """Max pooling; padded positions never win (they act as minus infinity)."""

    kernel: Any = 2
    stride: Any = None
    padding: Any = 0
    kind = "MaxPool"

    def __post_init__(self):
        self.kernel = pair(self.kernel, "kernel")
        self.stride = self.kernel if self.stride is None else pair(self.stride, "stride")
        self.padding = normalize_padding(self.padding, self.kernel)

    def infer_shape(self, name, shape):
        if max(self.padding[0], self.padding[2]) >= self.kernel[0] or \
                max(self.padding[1], self.padding[3]) >= self.kernel[1]:
            self._fail(name, f"padding {self.padding} must be smaller than the kernel "
                             f"{self.kernel}, or a window could hold only padding")
        oh, ow = self._window_shape(name, shape, self.kernel, self.stride, self.padding)
        return (oh, ow, shape[2])


@dataclass(eq=False)
class AvgPool(_Windowed):
    """Average pooling; padded positions count as zeros (``count_include_pad``)."""

    kernel: Any = 2
    stride: Any = None
    padding: Any = 0
    kind = "AvgPool"

    def __post_init__(self):
        self.kernel = pair(self.kernel, "kernel")
        self.stride = self.kernel if self.stride is None else pair(self.stride, "stride")
        self.padding = normalize_padding(self.padding, self.kernel)

    def infer_shape(self, name, shape):
        oh, ow = self._window_shape(name, shape, self.kernel, self.stride, self.padding)
        return (oh, ow, shape[2])


@dataclass(eq=False)
class GlobalAvgPool(_Layer):
    """Mean over H and W; output is a ``(1, 1, C)`` feature map."""

    kind = "GlobalAvgPool"

    def infer_shape(self, name, shape):
        return (1, 1, self._feature_map(name, shape)[2])


ACTIVATIONS = ("relu", "relu6", "clip", "leaky_relu", "identity")


@dataclass(eq=False)
class Activation(_Layer):
    """Element-wise activation.

    ``fn`` is one of ``relu``, ``relu6``, ``clip`` (with ``lo``/``hi``), ``leaky_relu``
    (with ``alpha``) or ``identity``.
    """

    fn: str = "relu"
    lo: float | None = None
    hi: float | None = None
    alpha: float = 0.0
    kind = "Activation"

    def __post_init__(self):
        if self.fn not in ACTIVATIONS:
            raise HwconvError(f"activation must be one of {ACTIVATIONS}, not {self.fn!r}")
        if self.fn == "relu":
            self.lo, self.hi = 0.0, None
        elif self.fn == "relu6":
            self.lo, self.hi = 0.0, 6.0
        elif self.fn == "identity":
            self.lo = self.hi = None
        if self.fn == "clip" and self.lo is not None and self.hi is not None \
                and self.lo > self.hi:
            raise HwconvError(f"clip bounds lo={self.lo} > hi={self.hi}")
        self.alpha = float(self.alpha)

    @property
    def monotone(self):
        """True when the function is monotone non-decreasing (pooling commutes)."""
        return self.fn != "leaky_relu" or self.alpha >= 0

    def infer_shape(self, name, shape):
        return shape


@dataclass(eq=False)
class BatchNorm(_Layer):
    """Inference-mode batch normalization over channels."""

    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float = 1e-5
    kind = "BatchNorm"

    def __post_init__(self):
        for f in ("gamma", "beta", "mean", "var"):
            setattr(self, f, np.asarray(getattr(self, f), dtype=np.float64))

    @property
    def scale(self):
        return self.gamma / np.sqrt(self.var + self.eps)

    @property
    def shift(self):
        return self.beta - self.mean * self.scale

    def infer_shape(self, name, shape):
        c = shape[-1]
        for f in ("gamma", "beta", "mean", "var"):
            if getattr(self, f).shape != (c,):
                self._fail(name, f"{f} has shape {getattr(self, f).shape}, input has {c} "
                                 f"channels")
        if np.any(self.var + self.eps <= 0):
            self._fail(name, "var + eps must be positive")
        return shape


@dataclass(eq=False)
class Add(_Layer):
    """Element-wise sum of two tensors of the same shape (residual join)."""

    kind = "Add"
    arity = 2

    def infer_shape(self, name, a, b):
        if a != b:
            self._fail(name, f"operand shapes differ: {a} vs {b}")
        return a


@dataclass(eq=False)
class Flatten(_Layer):
    """Feature map ``(H, W, C)`` to vector ``(C*H*W,)`` in channel-major order."""

    kind = "Flatten"

    def infer_shape(self, name, shape):
        return (int(np.prod(shape)),)


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/:]*$")


@dataclass(eq=False)
class Node:
    """One layer application: ``name`` is also the name of its output tensor."""

    name: str
    op: Any
    inputs: tuple[str, ...]


@dataclass(eq=False)
class Network:
    """A DAG of nodes with one input and one output, shapes inferred as nodes are added.

    Examples
    --------
    >>> import numpy as np
    >>> net = Network((8, 8, 1))
    >>> x = net.add("conv", Conv2D(np.ones((4, 3, 3, 1)), padding="same"), net.input)
    >>> x = net.add("relu", Activation("relu"), x)
    >>> net.shapes["relu"]
    (8, 8, 4)
    """

    input_shape: tuple
    input_name: str = "input"
    nodes: list = field(default_factory=list)
    shapes: dict = field(default_factory=dict)
    output: str | None = None

    def __post_init__(self):
        self.input_shape = tuple(int(s) for s in self.input_shape)
        if len(self.input_shape) not in (1, 3) or min(self.input_shape) < 1:
            raise HwconvError(f"input shape must be (H, W, C) or (N,) with positive sizes, "
                              f"not {self.input_shape}")
        self.shapes = {self.input_name: self.input_shape}
        if self.output is None:
            self.output = self.input_name

    @property
    def input(self):
        return self.input_name

    def add(self, name, op, *inputs):
        """Append a node; returns its output tensor name (== ``name``)."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise HwconvError(f"node name {name!r} is not a valid identifier")
        if name in self.shapes:
            raise HwconvError(f"node name {name!r} is used twice")
        for i in inputs:
            if i not in self.shapes:
                raise HwconvError(f"node {name!r} reads {i!r}, which is not defined before it")
        if isinstance(op, _DepthwiseFactory):
            op = op.resolve(self.shapes[inputs[0]])
        kind = getattr(op, "kind", type(op).__name__)
        if len(inputs) != getattr(op, "arity", 1):
            raise LayerError(name, kind, f"takes {op.arity} input(s), got {len(inputs)}")
        shape = tuple(int(s) for s in op.infer_shape(name, *(self.shapes[i] for i in inputs)))
        if min(shape) < 1:
            raise LayerError(name, kind, f"output shape {shape} is empty")
        self.nodes.append(Node(name, op, tuple(inputs)))
        self.shapes[name] = shape
        self.output = name
        return name

    @property
    def output_shape(self):
        return self.shapes[self.output]

    def node(self, name):
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def consumers(self, tensor):
        """Nodes reading ``tensor``."""
        return [n for n in self.nodes if tensor in n.inputs]

    def rebuilt(self, nodes, output=None):
        """A new network from ``nodes`` (re-validated), sharing op objects."""
        net = Network(self.input_shape, self.input_name)
        for n in nodes:
            net.add(n.name, n.op, *n.inputs)
        if output is not None:
            net.output = output
        return net

    def summary(self):
        """A human-readable table of the layers."""
        lines = [f"{'node':<20} {'op':<14} {'inputs':<24} shape",
                 f"{self.input_name:<20} {'Input':<14} {'':<24} {self.input_shape}"]
        for n in self.nodes:
            lines.append(f"{n.name:<20} {n.op.kind:<14} {','.join(n.inputs):<24} "
                         f"{self.shapes[n.name]}")
        return "\n".join(lines)
