"""Front ends: models in other formats to and from the hwconv IR.

* :mod:`hwconv.frontends.onnx_import` - ONNX (float, or QDQ-quantized by onnxruntime) to
  a float :class:`~hwconv.ir.Network` and an integer :class:`~hwconv.quant.QNetwork`.
* :mod:`hwconv.frontends.onnx_export` - a float :class:`~hwconv.ir.Network` to ONNX.
* :mod:`hwconv.frontends.ort` - onnxruntime as the independent reference: sessions,
  intermediate tensors, and its quantization tooling (pre-processing, calibration, QDQ).
* :mod:`hwconv.frontends.agreement` - golden model vs onnxruntime, layer by layer, and
  accuracy on a labelled data set.
"""

from .onnx_export import export_onnx
from .onnx_import import Imported, import_onnx, load_model

__all__ = ["export_onnx", "import_onnx", "load_model", "Imported"]
