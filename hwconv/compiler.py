"""From a model to a mapped pipeline: load, quantize, transform, map.

:func:`load` accepts an ONNX file (float or QDQ), an integer
:class:`~hwconv.quant.QNetwork`, or a float :class:`~hwconv.ir.Network` with
calibration data; :func:`compile` applies the exact transforms and the mapper and returns
a :class:`Compiled` holding everything a build or a simulation needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import golden, mapper, quant, transforms
from .errors import HwconvError
from .ir import Network
from .quant import QNetwork

__all__ = ["Model", "Compiled", "load", "compile"]


@dataclass
class Model:
    """An integer network plus the conversions between the user's layout and hwconv's.

    Attributes
    ----------
    name : str
    qnet : QNetwork
    imported : hwconv.frontends.onnx_import.Imported or None
        The ONNX import, whose layout (NCHW) the user's arrays follow; ``None`` for
        Python-IR models, whose arrays are already NHWC.
    report : list
        Transforms applied while loading (BatchNorm folding, conv fusion).
    """

    name: str
    qnet: QNetwork
    imported: object = None
    report: list = field(default_factory=list)

    def to_internal(self, x):
        """User input (batch first, model layout) -> NHWC float."""
        if self.imported is not None:
            return self.imported.to_internal(x)
        x = np.asarray(x, dtype=np.float64)
        if x.shape[1:] != self.qnet.input_shape:
            raise HwconvError(f"input has shape {x.shape}; the model expects "
                              f"(batch, {', '.join(map(str, self.qnet.input_shape))})")
        return x

    def to_external(self, y):
        return self.imported.to_external(y) if self.imported is not None else y

    def quantize_input(self, x):
        """User float input -> integer codes in hwconv's NHWC layout."""
        return self.qnet.input_q.quantize(self.to_internal(x))

    def dequantize_output(self, yq):
        """Integer outputs (NHWC) -> float32 in the model's output layout."""
        return self.to_external(self.qnet.output_q.dequantize(yq))

    def golden(self, x):
        """Float in, float out through the integer golden model."""
        return self.dequantize_output(golden.run(self.qnet, self.quantize_input(x)))


def load(model, *, calibration=None, act_dtype="int8", fuse="pays", name=None):
    """Load ``model`` as a :class:`Model`.

    Parameters
    ----------
    model : str, Path, QNetwork or Network
        An ONNX file (QDQ models are imported as they are; float ones are quantized with
        onnxruntime's tools on ``calibration``), or an hwconv network.
    calibration : ndarray, optional
        Float inputs in the model's layout; needed for float models.
    act_dtype : {"int8", "uint8"}
        Activation type when hwconv quantizes a float Python-IR network.
    fuse : {"pays", "always", "never"}
        Linear-conv fusion policy for float networks.
    """
    if isinstance(model, QNetwork):
        return Model(name or "network", model)
    if isinstance(model, Network):
        if calibration is None:
            raise HwconvError("a float network needs calibration inputs to be quantized")
        net, report = transforms.fold_batchnorm(model)
        if fuse != "never":
            net, more = transforms.fuse_linear_convs(net, when=fuse)
            report += more
        qnet = quant.quantize(net, calibration, act_dtype=act_dtype)
        return Model(name or "network", qnet, report=report)
    path = Path(model)
    from .frontends import ort

    imported, _, _ = ort.import_quantized(str(path), calibration)
    return Model(name or path.stem, imported.qnetwork, imported=imported)


@dataclass
class Compiled:
    """A model mapped to a pipeline (see :func:`compile`).

    Attributes
    ----------
    model : Model
    qnet : QNetwork
        The transformed integer network the pipeline implements (bit-exact with
        ``model.qnet``: every transform is exact).
    plan : hwconv.mapper.Plan
    in_lanes, out_lanes : int
    top : str
        Verilog module name of the top level.
    """

    model: Model
    qnet: QNetwork
    plan: mapper.Plan
    in_lanes: int
    out_lanes: int
    top: str = "hwconv_top"

    def manifest(self):
        return self.plan.manifest(self.qnet, model=self.model.name, top=self.top,
                                  in_lanes=self.in_lanes, out_lanes=self.out_lanes)


def compile(model, *, clock_mhz=100.0, fps=None, max_multipliers=None, in_lanes=None,
            out_lanes=1, top="hwconv_top", backend="generic", skid=True, **load_options):
    """Transform and map ``model`` (anything :func:`load` takes, or a :class:`Model`).

    Parameters
    ----------
    clock_mhz : float
        Clock the pipeline is planned for.
    fps : float or None
        Target frames per second; ``None`` means as fast as the budget allows.
    max_multipliers : int or None
        Multiplier budget (MAC arrays).
    in_lanes, out_lanes : int
        Values per AXI4-Stream beat (default: one whole pixel in, one value out).
    backend : str
        Multiplier back end: ``generic`` (behavioural, any tool), ``ecp5``
        (MULT18X18D), ``ice40`` (SB_MAC16) or ``xilinx`` (DSP48E1); see
        :mod:`hwconv.hw.dsp`.
    skid : bool
        Register slices with a skid entry (default): the ready chains end at every
        stage, and the line buffers, MAC arrays and requantizers run free on credits of
        small output queues (:class:`hwconv.hw.fifo.CreditQueue`) instead of stalling.
        ``False`` makes the slices plain pipeline registers and the units stall as a
        whole: the same cycles and latency, fewer cells (about one LUT and one
        flip-flop less per slice payload bit, no queues), for a slow clock on a small
        part (:class:`hwconv.hw.fifo.RegisterSlice`).
    """
    if not isinstance(model, Model):
        model = load(model, **load_options)
    qnet, report = transforms.pool_before_activate(model.qnet)
    plan = mapper.plan(qnet, clock_mhz=clock_mhz, fps=fps, max_multipliers=max_multipliers,
                       backend=backend)
    plan.skid = bool(skid)
    plan.report = list(model.report) + list(report)
    c_in = qnet.input_shape[-1]
    in_lanes = c_in if in_lanes is None else in_lanes
    for what, lanes, c in (("in_lanes", in_lanes, c_in),
                           ("out_lanes", out_lanes, qnet.output_shape[-1])):
        if lanes < 1 or c % lanes:
            raise HwconvError(f"{what}={lanes} must divide the {c} channels at that port")
    return Compiled(model, qnet, plan, in_lanes, out_lanes, top)
