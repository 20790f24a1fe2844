"""onnxruntime as hwconv's independent reference, and its quantization tooling.

* :func:`run` - run a model (float or QDQ) on a batch, optionally returning intermediate
  tensors (added as graph outputs).
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
from ..numerics import MULT_BITS
from .onnx_import import import_onnx, is_quantized, load_model

__all__ = ["session", "run", "with_outputs", "quantize_model", "import_quantized",
           "ArrayReader", "CALIBRATION_BATCH"]

#: Largest batch handed to onnxruntime at once during calibration.
CALIBRATION_BATCH = 64

_QTYPES = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
_ELEM = {"int8": onnx.TensorProto.INT8, "uint8": onnx.TensorProto.UINT8}

# onnxruntime logs graph-optimization notes at warning level; keep errors only.
ort.set_default_logger_severity(3)


def session(model):
    """A CPU :class:`onnxruntime.InferenceSession` for a ModelProto or a file path."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def with_outputs(model, tensors):
    """A copy of ``model`` that also outputs ``tensors`` (``{name: "int8" | "uint8"}``)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    have = {o.name for o in model.graph.output}
    for name, dtype in tensors.items():
        if name not in have:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, _ELEM[dtype],
                                                                         None))
    return model


def run(model, x, outputs=None):
    """Run ``model`` on the batch ``x`` (the model's own layout).

    Parameters
    ----------
    model : onnx.ModelProto or path
    x : ndarray
        Model input, batch first; cast to float32.
    outputs : dict, optional
        Intermediate integer tensors to return as well, ``{onnx_name: dtype}``.

    Returns
    -------
    ndarray or dict
        The model output, or with ``outputs`` a dict of every requested tensor plus the
        model output under its own name.
    """
    model = load_model(model)
    if outputs:
        model = with_outputs(model, outputs)
    sess = session(model)
    name = sess.get_inputs()[0].name
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(names, {name: np.asarray(x, dtype=np.float32)})
    if not outputs:
        return values[0]
    return dict(zip(names, values))


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
    if path is not None:
        data = qdq.SerializeToString()
        write_atomic(path, lambda f: f.write(data))
    return qdq


def import_quantized(model, calibration=None, mult_bits=MULT_BITS, **quant_options):
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
