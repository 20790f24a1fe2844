"""Depthwise/pointwise engine: depthwise K x K per channel feeding a pointwise 1x1 conv,
in one stage, with no intermediate feature map in memory.

Data path (every arrow a stream with backpressure)::

    pixels --LineBuffer--> windows (dw_simd channels) --MacArray (depthwise)-->
      Requantizer (+ fused clamp) [--ActivationUnit] [--LaneConverter]-->
      MacArray (pointwise, pw_pe x pw_simd) --> Requantizer (+ fused clamp)
      [--ActivationUnit] --> pixels (pw_pe channels per beat)

* Depthwise half: a window beat holds ``K*K`` taps of ``dw_simd`` input channels; the
  array computes the ``dw_simd * m`` outputs of those channels (depth multiplier ``m``:
  output channel ``c*m + j`` reads input channel ``c``) in one cycle, ``K*K`` multipliers
  each, and requantizes them to 8 bits (a clamping ``dw_act`` fused into the clamp, any
  other activation through an :class:`~hwconv.hw.pool.ActivationUnit`).  The
  ``dw_simd * m`` results are consecutive channels of the intermediate pixel, so they
  stream straight on as one beat.
* Pointwise half: a 1x1 conv folded over ``pw_simd`` intermediate channels and ``pw_pe``
  outputs per cycle with per-output accumulators (as :class:`~hwconv.hw.conv.Conv2D`);
  a :class:`~hwconv.hw.lanes.LaneConverter` re-packs the depthwise beats to ``pw_simd``
  lanes when the widths differ.  It never holds more than ``lcm(dw_simd*m, pw_simd)``
  intermediate values (at most one pixel's ``C*m`` channels): the intermediate feature
  map exists only as a stream.

Cycles: the pointwise half needs ``P = (C*m / pw_simd) * (O / pw_pe) * pw_kfold`` cycles
per pixel, the depthwise half ``C / dw_simd * dw_kfold``;
:func:`hwconv.cost.depthwise_pointwise` gives the frame time (exact for stride 1 with
"same"-style padding, an upper bound otherwise).

Bit-exactness: as Conv2D, each MAC half folds its input zero point into the bias, so the
stage equals :func:`hwconv.golden.depthwise_pointwise` exactly.
"""

from __future__ import annotations

import numpy as np
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import cost
from ..numerics import signed_bits
from .conv import fused_clamp, mac_weights
from .lanes import LaneConverter
from .linebuffer import LineBuffer
from .fifo import RegisterSlice
from .mac import MacArray, value_bound
from .pool import ActivationUnit
from .requant import Requantizer
from .figures import StageFigures
from .stream import beat_signature, elem_shape

__all__ = ["DepthwisePointwise"]


def _folded_bias(op, in_q):
    """``bias - zp_in * sum(w)`` per output channel, and the exact accumulator bound."""
    w = op.weight.reshape(op.weight.shape[0], -1)
    bias = op.bias - in_q.zero_point * w.sum(axis=1)
    bound = int((np.abs(w).sum(axis=1) * value_bound(elem_shape(in_q.dtype))
                 + np.abs(bias)).max())
    return bias, signed_bits(bound)


class DepthwisePointwise(StageFigures, wiring.Component):
    """Stage for depthwise ``dw`` (+ ``dw_act``) then pointwise ``pw`` (+ ``pw_act``).

    Parameters
    ----------
    dw : hwconv.quant.QConv2D
        ``groups == C``, weight ``(C*m, KH, KW, 1)``; any stride, padding, dilation.
    dw_act : hwconv.quant.QActivation or None
        On the depthwise output (``in_q == dw.out_q``).
    pw : hwconv.quant.QConv2D
        1x1, stride 1, unpadded, ``groups == 1``, weight ``(O, 1, 1, C*m)``.
    pw_act : hwconv.quant.QActivation or None
        On the pointwise output.
    in_shape : (H, W, C)
    dw_simd : int
        Input channels per cycle (input beat lanes); divides ``C``.
    pw_simd : int
        Intermediate channels per pointwise cycle; divides ``C*m``.
    pw_pe : int
        Output channels per cycle (output beat lanes); divides ``O``.
    dw_kfold, pw_kfold : int
        Kernel folding of each half (as :class:`~hwconv.hw.conv.Conv2D`'s ``kfold``): a
        depthwise window beat takes ``dw_kfold`` cycles of ``K*K / dw_kfold`` taps per
        lane; a pointwise beat takes ``pw_kfold`` cycles per output group of
        ``pw_simd / pw_kfold`` channels (the pointwise kernel is its ``pw_simd``-long
        channel vector).  Each half's requantizer goes limb-serial to match
        (:func:`hwconv.cost.requant_limbs`).
    levels_per_stage : int
        Adder-tree pipelining of both MAC arrays (see :class:`~hwconv.hw.conv.Conv2D`).
    backend : str
        Multiplier back end (:mod:`hwconv.hw.dsp`).
    skid : bool
        ``True`` (default, for fast clocks): register slices with a skid entry, and the
        line buffer (where every slot emits), MAC arrays and requantizers run free on
        credits of small output queues (:class:`~hwconv.hw.fifo.CreditQueue`), so no
        stall signal fans out.  ``False``: plain pipeline registers and stalls (the
        same cycles, fewer cells).

    Attributes
    ----------
    i : In(beat_signature(in elem, dw_simd))
    o : Out(beat_signature(out elem, pw_pe))
    out_shape : (OH, OW, O)
    cycles_per_frame, latency, multipliers, linebuffer_words, weight_words,
    macs_per_frame
        As :func:`hwconv.cost.depthwise_pointwise`.
    tail_beats : int
        As :attr:`hwconv.hw.linebuffer.LineBuffer.tail_beats`.
    """

    def __init__(self, dw, dw_act, pw, pw_act, in_shape, *, dw_simd=1, pw_simd=1, pw_pe=1,
                 dw_kfold=1, pw_kfold=1, levels_per_stage=1, backend="generic",
                 skid=True):
        self._cost = cost.depthwise_pointwise(
            dw, dw_act, pw, pw_act, in_shape, dw_simd=dw_simd, pw_simd=pw_simd, pw_pe=pw_pe,
            dw_kfold=dw_kfold, pw_kfold=pw_kfold, levels_per_stage=levels_per_stage,
            backend=backend)
        self._geo = cost.conv_window("DepthwisePointwise", dw, in_shape, dw_simd)
        self._dw_clamp = fused_clamp("DepthwisePointwise (dw_act)", dw_act, dw.out_q) \
            if dw_act is None or dw_act.is_clamp else (dw.out_q.qmin, dw.out_q.qmax)
        self._pw_clamp = fused_clamp("DepthwisePointwise (pw_act)", pw_act, pw.out_q) \
            if pw_act is None or pw_act.is_clamp else (pw.out_q.qmin, pw.out_q.qmax)
        self._dw, self._dw_act, self._pw, self._pw_act = dw, dw_act, pw, pw_act
        self._in_shape = tuple(in_shape)
        self._dw_simd, self._pw_simd, self._pw_pe = dw_simd, pw_simd, pw_pe
        self._dw_kfold, self._pw_kfold = dw_kfold, pw_kfold
        self._lps, self._backend = levels_per_stage, backend
        self._skid = skid
        self._mid_q = dw_act.out_q if dw_act is not None else dw.out_q
        out_q = pw_act.out_q if pw_act is not None else pw.out_q
        super().__init__({
            "i": In(beat_signature(elem_shape(dw.in_q.dtype), dw_simd)),
            "o": Out(beat_signature(elem_shape(out_q.dtype), pw_pe)),
        })

    @property
    def out_shape(self):
        return self._geo.out_shape[:2] + (self._pw.out_channels,)

    @property
    def tail_beats(self):
        return self._geo.tail_beats

    def _activation(self, m, name, act, src, lanes):
        if act is None or act.is_clamp:
            return src
        m.submodules[name] = unit = ActivationUnit(act, lanes)
        wiring.connect(m, src, unit.i)
        return unit.o

    def elaborate(self, platform):
        m = Module()
        dw, pw, geo = self._dw, self._pw, self._geo
        c = geo.channels
        cm = dw.out_channels
        mult = cm // c
        kk = dw.kernel[0] * dw.kernel[1]
        dsimd, psimd, ppe = self._dw_simd, self._pw_simd, self._pw_pe
        groups = c // dsimd
        dlanes = dsimd * mult

        # depthwise: lane p = l*m + j (output channel g*dlanes + p) reads lane l of every tap
        dw_bias, dw_acc = _folded_bias(dw, dw.in_q)
        m.submodules.dw_mac = dmac = MacArray(
            elem_shape(dw.in_q.dtype),
            [[t * dsimd + p // mult for t in range(kk)] for p in range(dlanes)], kk * dsimd,
            dw.weight.reshape(groups, dlanes, kk), dw_bias.reshape(groups, dlanes),
            groups=groups, folds=1, accumulate=False, weight_bits=dw.weight_bits,
            acc_bits=dw_acc, levels_per_stage=self._lps, backend=self._backend,
            chunks=self._dw_kfold, credit=self._skid)
        if cost.needs_window(geo):
            m.submodules.window = lb = LineBuffer(dw, self._in_shape, lanes=dsimd,
                                                  credit=self._skid and cost.window_slice(geo),
                                                  lookahead=self._skid)
            wiring.connect(m, wiring.flipped(self.i), lb.i)
            src = lb.o
            if cost.window_slice(geo):
                m.submodules.window_slice = ws = RegisterSlice(lb.o.signature, skid=self._skid)
                wiring.connect(m, lb.o, ws.i)
                src = ws.o
        else:
            src = wiring.flipped(self.i)
        m.d.comb += [dmac.i.valid.eq(src.valid), src.ready.eq(dmac.i.ready),
                     dmac.i.payload.as_value().eq(src.payload.as_value())]
        mid_elem = elem_shape(dw.out_q.dtype)
        m.submodules.dw_requant = drq = Requantizer(
            dw.requant, cm, dlanes, dw_acc, dw.out_q.zero_point, *self._dw_clamp, mid_elem,
            backend=self._backend, skid=self._skid,
            limbs=cost.requant_limbs(dw.requant, cm, self._dw_kfold, self._backend))
        wiring.connect(m, dmac.o, drq.i)
        mid = self._activation(m, "dw_act", self._dw_act, drq.o, dlanes)
        if psimd != dlanes:
            mid_elem = elem_shape(self._mid_q.dtype)
            m.submodules.relane = conv = LaneConverter(mid_elem, cm, dlanes, psimd)
            wiring.connect(m, mid, conv.i)
            mid = conv.o

        # A register slice ends the stall chain from the pointwise array (through the
        # lane converter) into the depthwise half; its second entry lets the converter
        # gather the next beat while the array folds this one.
        m.submodules.pw_slice = pw_slice = RegisterSlice(mid.signature, skid=self._skid)
        wiring.connect(m, mid, pw_slice.i)
        mid = pw_slice.o

        o = pw.out_channels
        pw_bias, pw_acc = _folded_bias(pw, self._mid_q)
        m.submodules.pw_mac = pmac = MacArray(
            elem_shape(self._mid_q.dtype), [list(range(psimd))] * ppe, psimd,
            mac_weights(pw.weight, psimd, ppe), pw_bias.reshape(o // ppe, ppe),
            groups=cm // psimd, folds=o // ppe, accumulate=True, weight_bits=pw.weight_bits,
            acc_bits=pw_acc, levels_per_stage=self._lps, backend=self._backend,
            chunks=self._pw_kfold, credit=self._skid)
        m.d.comb += [pmac.i.valid.eq(mid.valid), mid.ready.eq(pmac.i.ready),
                     pmac.i.payload.as_value().eq(mid.payload.as_value())]
        m.submodules.pw_requant = prq = Requantizer(
            pw.requant, o, ppe, pw_acc, pw.out_q.zero_point, *self._pw_clamp,
            elem_shape(pw.out_q.dtype), backend=self._backend, skid=self._skid,
            limbs=cost.requant_limbs(pw.requant, o, self._pw_kfold, self._backend))
        wiring.connect(m, pmac.o, prq.i)
        out = self._activation(m, "pw_act", self._pw_act, prq.o, ppe)
        wiring.connect(m, out, wiring.flipped(self.o))
        return m
