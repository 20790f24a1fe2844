"""onnxruntime as hwconv's independent reference, and its quantization tooling.

* :func:`run` - run a model (float or QDQ) on a batch, optionally returning intermediate
  integer tensors (read through :func:`probe` sub-models).
* :func:`import_quantized` - import a QDQ model, or quantize a float one and import it.
* :func:`quantize_model` - a float ONNX model plus calibration inputs to a QDQ model with
  onnxruntime's own tools: :func:`~onnxruntime.quantization.quant_pre_process` (shape
  inference and graph optimization, e.g. BatchNorm folded into the conv before it), then
  :func:`~onnxruntime.quantization.quantize_static` with ``QuantFormat.QDQ`` and MinMax
  calibration.

Inputs and outputs here are in the ONNX model's own layout (NCHW, batch first).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, \
    quant_pre_process, quantize_static

from ..errors import HwconvError
from ..fileio import write_atomic
from .onnx_import import IMPORT_MULT_BITS, import_onnx, is_quantized, load_model

__all__ = ["session", "Runner", "run", "probe", "quantize_model", "import_quantized",
           "ArrayReader", "CALIBRATION_BATCH"]

#: Largest batch handed to onnxruntime at once during calibration.
CALIBRATION_BATCH = 64

_QTYPES = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}

# onnxruntime logs graph-optimization notes at warning level; keep errors only.
ort.set_default_logger_severity(3)


def session(model):
    """A CPU :class:`onnxruntime.InferenceSession` for a ModelProto or a file path."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def probe(model, tensor):
    """A sub-model of ``model`` whose output shows integer ``tensor`` without disturbing it.

    Making a QuantizeLinear output a graph output (or giving it any consumer besides its
    DequantizeLinear) stops onnxruntime from fusing that QuantizeLinear into the quantized
    kernel before it, which changes the arithmetic.  The probe keeps only the nodes that
    ``tensor`` depends on plus the DequantizeLinear reading it, whose float output becomes
    the graph output, the same shape a whole QDQ model ends with.

    Returns
    -------
    (onnx.ModelProto, bool)
        The sub-model, and whether it outputs ``tensor`` dequantized (else as is).
    """
    g = model.graph
    dq = next((n for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] == tensor),
              None)
    target = tensor if dq is None else dq.output[0]
    producer = {o: n for n in g.node for o in n.output}
    needed, stack = set(), [target]
    while stack:
        n = producer.get(stack.pop())
        if n is not None and id(n) not in needed:
            needed.add(id(n))
            stack.extend(i for i in n.input if i)
    nodes = [n for n in g.node if id(n) in needed]
    used = {i for n in nodes for i in n.input}
    sub = onnx.helper.make_graph(
        nodes, g.name, [i for i in g.input if i.name in used],
        [onnx.helper.make_tensor_value_info(target, onnx.TensorProto.FLOAT if dq else
                                            onnx.TensorProto.INT8, None)],
        [t for t in g.initializer if t.name in used])
    sub_model = onnx.helper.make_model(sub, opset_imports=model.opset_import,
                                       ir_version=model.ir_version)
    return sub_model, dq is not None


class Runner:
    """onnxruntime sessions for a model and, optionally, probes of its integer tensors.

    Parameters
    ----------
    model : onnx.ModelProto or path
    tensors : dict, optional
        Intermediate integer tensors (QuantizeLinear outputs) to return as well, with
        their :class:`~hwconv.numerics.QParams`; each is read through a :func:`probe`,
        so the kernels onnxruntime runs are those of the whole model.

    Examples
    --------
    >>> run = Runner("examples/digits/digits_qdq.onnx")              # doctest: +SKIP
    >>> logits = run(images)                                         # doctest: +SKIP
    """

    def __init__(self, model, tensors=None):
        model = load_model(model)
        self._model = session(model)
        self._probes = {}
        for t, q in (tensors or {}).items():
            sub, dequantized = probe(model, t)
            self._probes[t] = (session(sub), q, dequantized)

    @staticmethod
    def _run(sess, x):
        return sess.run(None, {sess.get_inputs()[0].name: x})[0]

    def __call__(self, x):
        """Run on the batch ``x`` (the model's own layout, batch first).

        Returns
        -------
        ndarray or (ndarray, dict)
            The model output, and with probed tensors a dict of their integer values
            (int64, the model's layout).
        """
        x = np.asarray(x, dtype=np.float32)
        out = self._run(self._model, x)
        if not self._probes:
            return out
        values = {}
        for t, (sess, q, dequantized) in self._probes.items():
            v = self._run(sess, x)
            values[t] = np.rint(v.astype(np.float64) / q.scale).astype(np.int64) + \
                q.zero_point if dequantized else v.astype(np.int64)
        return out, values


def run(model, x, tensors=None):
    """``Runner(model, tensors)(x)``: one batch through onnxruntime (see :class:`Runner`)."""
    return Runner(model, tensors)(x)


class ArrayReader(CalibrationDataReader):
    """Calibration batches for onnxruntime from one array of inputs.

    Parameters
    ----------
    input_name : str
        The model's input name.
    data : ndarray
        Float inputs in the model's layout, batch first.
    batch : int
        Inputs per batch (the last batch may be smaller).
    exact : bool
        Every batch has exactly ``batch`` inputs, for a model with a fixed batch size;
        a remainder that does not fill a batch is left out.
    """

    def __init__(self, input_name, data, batch=CALIBRATION_BATCH, exact=False):
        self.input_name = input_name
        self.data = np.asarray(data, dtype=np.float32)
        self.batch, self.exact = batch, exact
        self.start = 0

    def get_next(self):
        chunk = self.data[self.start:self.start + self.batch]
        if len(chunk) == 0 or (self.exact and len(chunk) < self.batch):
            return None
        self.start += self.batch
        return {self.input_name: chunk}

    def __len__(self):
        return -(-len(self.data) // self.batch)

    def rewind(self):
        self.start = 0


def _calibration(model, calibration):
    """Validate ``calibration`` against the model's input; returns an ArrayReader."""
    imp = import_onnx(model)
    data = np.asarray(calibration)
    imp.to_internal(data)
    if len(data) < (imp.batch or 1):
        raise HwconvError(f"calibration needs at least {imp.batch or 1} input(s), got "
                          f"{len(data)}")
    return ArrayReader(imp.input_name, data, imp.batch or CALIBRATION_BATCH,
                       exact=imp.batch is not None)


def quantize_model(model, calibration, path=None, symmetric=False, per_channel=True,
                   dtype="int8"):
    """Quantize a float ONNX model to QDQ with onnxruntime's tools (see module docstring).

    Parameters
    ----------
    model : onnx.ModelProto or path
        The float model.
    calibration : ndarray
        Representative float inputs in the model's layout, batch first.
    path : str or path-like, optional
        Also save the QDQ model there (written to a temporary file and renamed).
    symmetric : bool
        ``ActivationSymmetric``: symmetric activation ranges (zero point 0 for int8);
        onnxruntime then keeps Relu/Clip as separate nodes.
    per_channel : bool
        Per-output-channel weight scales (hwconv's default); onnxruntime's own default
        is per-tensor.
    dtype : {"int8", "uint8"}
        Activation type; weights are always int8.

    Returns
    -------
    onnx.ModelProto
        The QDQ model.
    """
    if dtype not in _QTYPES:
        raise HwconvError(f"activation dtype must be int8 or uint8, not {dtype!r}")
    model = load_model(model)
    reader = _calibration(model, calibration)
    with tempfile.TemporaryDirectory(prefix="hwconv-quant-") as tmp:
        pre, out = Path(tmp, "pre.onnx"), Path(tmp, "qdq.onnx")
        quant_pre_process(model, str(pre))
        quantize_static(str(pre), str(out), reader, quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=_QTYPES[dtype],
                        weight_type=QuantType.QInt8,
                        extra_options={"ActivationSymmetric": bool(symmetric)})
        qdq = onnx.load(str(out))
    if not is_quantized(qdq):
        raise HwconvError("onnxruntime's quantizer left the model in float: it found no "
                          "operator it quantizes")
    if path is not None:
        data = qdq.SerializeToString()
        write_atomic(path, lambda f: f.write(data))
    return qdq


def import_quantized(model, calibration=None, mult_bits=IMPORT_MULT_BITS, **quant_options):
    """Import a QDQ model as it is, or quantize a float model first.

    Parameters
    ----------
    model : onnx.ModelProto or path
    calibration : ndarray, optional
        Calibration inputs; needed only when ``model`` is a float model.
    mult_bits : int
        Requantization multiplier width of the integer network.
    **quant_options
        Passed to :func:`quantize_model` (``symmetric``, ``per_channel``, ``dtype``).

    Returns
    -------
    (Imported, onnx.ModelProto, onnx.ModelProto or None)
        The imported network, the QDQ model it came from, and the float model (``None``
        when ``model`` was already quantized).
    """
    loaded = load_model(model)
    if is_quantized(loaded):
        return import_onnx(loaded, mult_bits), loaded, None
    if calibration is None:
        where = "model" if isinstance(model, onnx.ModelProto) else str(model)
        raise HwconvError(f"{where}: a float model needs calibration inputs (a batch of "
                          f"typical model inputs) for onnxruntime to quantize it")
    qdq = quantize_model(loaded, calibration, **quant_options)
    return import_onnx(qdq, mult_bits), qdq, loaded
