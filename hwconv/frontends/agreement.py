"""hwconv's golden model against onnxruntime: layer by layer, and accuracy on labels.

Every integer tensor of an imported QDQ model that has an ONNX twin (the output of a
QuantizeLinear) is compared with the tensor onnxruntime computes when it runs the QDQ
model with its quantized kernels; differences are counted in LSB (integer steps).
Two figures per layer: *end to end* (the golden model run from the input, so earlier
differences propagate) and *isolated* (the layer fed onnxruntime's own input tensors,
which measures that layer's arithmetic alone).
onnxruntime requantizes in float32 with round-half-to-even while hwconv uses a
fixed-point multiplier with round-half-up, so isolated 1-LSB differences are expected;
the exact-match rate says how rare they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from tqdm import tqdm

from .. import golden
from . import ort as hwort

__all__ = ["LayerAgreement", "layer_agreement", "accuracy", "report", "format_report",
           "BATCH"]

#: Inputs per onnxruntime/golden batch when evaluating a data set.
BATCH = 256


@dataclass
class LayerAgreement:
    """Agreement of one hwconv tensor with its onnxruntime twin.

    Attributes
    ----------
    node, op : str
        hwconv node (or the input) and its layer kind.
    onnx_tensor : str
        The ONNX tensor compared with.
    values : int
        Integers compared.
    exact, isolated_exact : int
        How many of them are equal, end to end and isolated.
    max_lsb, isolated_max_lsb : int
        Largest absolute difference in integer steps, end to end and isolated.
    """

    node: str
    op: str
    onnx_tensor: str
    values: int = 0
    exact: int = 0
    max_lsb: int = 0
    isolated_exact: int = 0
    isolated_max_lsb: int = 0

    @property
    def exact_rate(self):
        """Fraction of values equal end to end."""
        return self.exact / self.values if self.values else 1.0

    @property
    def isolated_exact_rate(self):
        """Fraction of values equal when the layer reads onnxruntime's inputs."""
        return self.isolated_exact / self.values if self.values else 1.0

    def update(self, ours, isolated, theirs):
        """Count one batch: golden end to end, golden isolated, onnxruntime."""
        theirs = np.asarray(theirs, np.int64)
        d = np.abs(np.asarray(ours, np.int64) - theirs)
        e = np.abs(np.asarray(isolated, np.int64) - theirs)
        self.values += d.size
        self.exact += int((d == 0).sum())
        self.max_lsb = max(self.max_lsb, int(d.max(initial=0)))
        self.isolated_exact += int((e == 0).sum())
        self.isolated_max_lsb = max(self.isolated_max_lsb, int(e.max(initial=0)))

    def to_json(self):
        """The figures as a JSON-ready dict, rates included."""
        return {**asdict(self), "exact_rate": self.exact_rate,
                "isolated_exact_rate": self.isolated_exact_rate}


def _batches(x, what):
    starts = range(0, len(x), BATCH)
    for s in tqdm(starts, desc=what, unit="batch", leave=False, disable=None):
        yield slice(s, s + BATCH)


def _compared_tensors(imported):
    qnet = imported.qnetwork
    names = [qnet.input_name] + [n.name for n in qnet.nodes]
    kinds = {n.name: n.op.kind for n in qnet.nodes}
    return [(t, kinds.get(t, "Input"), imported.onnx_tensors[t]) for t in names
            if t in imported.onnx_tensors]


def layer_agreement(imported, qdq_model, x):
    """Compare every integer tensor of ``imported`` with onnxruntime running ``qdq_model``.

    Parameters
    ----------
    imported : Imported
        ``import_onnx(qdq_model)``.
    qdq_model : onnx.ModelProto or path
    x : ndarray
        Float inputs in the model's layout, batch first.

    Returns
    -------
    list of LayerAgreement
        In network order, starting with the quantized input; the last entry is the
        network output.
    """
    qnet = imported.qnetwork
    compared = _compared_tensors(imported)
    rows = [LayerAgreement(t, kind, onnx_name) for t, kind, onnx_name in compared]
    runner = hwort.Runner(qdq_model, {onnx_name: qnet.qparams[t]
                                      for t, _, onnx_name in compared})
    for sl in _batches(x, "agreement"):
        xb = x[sl]
        ours = golden.run(qnet, qnet.input_q.quantize(imported.to_internal(xb)), collect=True)
        _, theirs = runner(xb)
        alone = _isolated(qnet, {t: imported.to_internal_ints(theirs[o])
                                 for t, _, o in compared}, ours[qnet.input_name])
        for row in rows:
            row.update(imported.to_external(ours[row.node]),
                       imported.to_external(alone[row.node]), theirs[row.onnx_tensor])
    return rows


def _isolated(qnet, given, x):
    """Every tensor computed by its golden layer from onnxruntime's tensors.

    A layer whose input has no onnxruntime twin (a node the importer made explicit)
    reads the isolated value of that input instead.
    """
    known = {qnet.input_name: x, **given}
    alone = {qnet.input_name: x}
    for n in qnet.nodes:
        args = [known[i] for i in n.inputs]
        alone[n.name] = golden._apply(n.op, args, qnet.qparams[n.inputs[0]].qmin)
        known.setdefault(n.name, alone[n.name])
    return alone


def accuracy(scores, labels):
    """Top-1 accuracy of class ``scores`` (batch, classes) against integer ``labels``."""
    return float((np.asarray(scores).argmax(axis=1) == np.asarray(labels)).mean())


def _predict(fn, x, what):
    return np.concatenate([fn(x[sl]) for sl in _batches(x, what)])


def report(imported, qdq_model, x, labels=None, float_model=None):
    """Accuracies and golden/onnxruntime agreement on a test set.

    Parameters
    ----------
    imported : Imported
        ``import_onnx(qdq_model)``.
    qdq_model : onnx.ModelProto or path
    x : ndarray
        Float test inputs in the model's layout, batch first.
    labels : ndarray, optional
        Integer class labels; without them no accuracy is reported.
    float_model : onnx.ModelProto or path, optional
        The float model, for its accuracy under onnxruntime.

    Returns
    -------
    dict
        JSON-ready: ``accuracy`` (``float``, ``onnxruntime_quantized``, ``golden``;
        ``None`` where not measured), ``output`` and ``layers`` agreement figures.
    """
    rows = layer_agreement(imported, qdq_model, x)
    acc = {"float": None, "onnxruntime_quantized": None, "golden": None}
    if labels is not None:
        if float_model is not None:
            acc["float"] = accuracy(_predict(hwort.Runner(float_model), x, "float"), labels)
        acc["onnxruntime_quantized"] = accuracy(
            _predict(hwort.Runner(qdq_model), x, "onnxruntime"), labels)
        acc["golden"] = accuracy(_predict(imported.infer, x, "golden"), labels)
    values = sum(r.values for r in rows[1:])
    return {
        "inputs": int(len(x)),
        "accuracy": acc,
        "output": rows[-1].to_json(),
        "all_layers": {"values": values, "exact_rate": sum(r.exact for r in rows[1:]) /
                       max(values, 1), "max_lsb": max((r.max_lsb for r in rows), default=0)},
        "layers": [r.to_json() for r in rows],
    }


def format_report(rep):
    """The human-readable form of :func:`report`'s dict."""
    def pct(v, digits=2):
        return "n/a" if v is None else f"{100 * v:.{digits}f}%"

    acc = rep["accuracy"]
    lines = [f"accuracy on {rep['inputs']} test inputs: float {pct(acc['float'])}, "
             f"onnxruntime quantized {pct(acc['onnxruntime_quantized'])}, "
             f"hwconv golden {pct(acc['golden'])}",
             "",
             f"{'':<38} {'end to end':^19}  {'isolated layer':^19}",
             f"{'hwconv tensor':<22} {'op':<15} {'exact':>9} {'max LSB':>9}  "
             f"{'exact':>9} {'max LSB':>9}  values"]
    for r in rep["layers"]:
        lines.append(f"{r['node']:<22} {r['op']:<15} {pct(r['exact_rate'], 3):>9} "
                     f"{r['max_lsb']:>9}  {pct(r['isolated_exact_rate'], 3):>9} "
                     f"{r['isolated_max_lsb']:>9}  {r['values']}")
    out, every = rep["output"], rep["all_layers"]
    lines += ["",
              f"output: exact match {pct(out['exact_rate'])}, max |diff| {out['max_lsb']} LSB;"
              f" all layers: exact match {pct(every['exact_rate'], 3)}, max |diff| "
              f"{every['max_lsb']} LSB"]
    return "\n".join(lines)
