"""Conv2D stage: line buffer -> folded MAC array -> shared requantizer.

Folding: ``simd`` input channels per cycle (the input stream's lanes), ``pe`` output
channels per cycle (the output stream's lanes) and ``kfold``, the cycles one output
group takes over the ``K x K`` kernel (``K*K / kfold`` taps per cycle; 1 unrolls it).
A window beat (``K*K*simd`` values of one channel group) is read once and held for
``O / pe * kfold`` cycles, one output-channel group per ``kfold`` cycles, into
per-output-channel accumulators (:class:`~hwconv.hw.mac.MacArray`); after the ``C / simd``
window beats of an output position, each group of ``pe`` accumulators goes through the
:class:`~hwconv.hw.requant.Requantizer` (per-channel multiplier and shift, round half up,
saturation to the output type, or to a fused clamping activation's range).

So an output position costs ``(C / simd) * (O / pe) * kfold`` cycles; fully unrolled
(``simd = C``, ``pe = O``) the stage takes one pixel beat per cycle.  The whole frame
takes ``max(H * W, OH * OW * (O / pe) * kfold) * C / simd`` cycles when the line buffer
can run ahead of the MAC array (stride 1, "same"-style padding) — see :func:`hwconv.cost.conv2d`
for the exact model, including the cycles a valid-padding frame's top rows cost a folded
MAC array that must wait for them.

Bit-exactness: the golden accumulator is ``sum((x - zp_in) * w) + bias`` with padding at
``zp_in``; the stage computes ``sum(x * w) + (bias - zp_in * sum(w))``, the same integer
(padding taps carry ``zp_in`` and so contribute ``zp_in * w``, exactly as in the golden
sum), with 8-bit multiplier operands.  The accumulator width is the exact bound of every
partial sum of that form (a few bits above ``op.acc_bits`` for ``uint8`` inputs).

Grouped convolution with ``1 < groups`` is refused: a depthwise conv goes to
:class:`~hwconv.hw.dwpw.DepthwisePointwise`, other grouped convs have no stage.
"""

from __future__ import annotations

import numpy as np
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .. import cost
from ..errors import HwconvError
from ..numerics import signed_bits
from ..quant import QActivation, QConv2D
from .fifo import RegisterSlice
from .linebuffer import LineBuffer
from .mac import MacArray, value_bound
from .requant import Requantizer
from .figures import StageFigures
from .stream import beat_signature, elem_shape

__all__ = ["Conv2D", "fused_clamp", "mac_weights"]


def fused_clamp(stage, act, out_q):
    """Clamp range ``(lo, hi)`` that applies a clamping ``act`` inside a requantizer.

    ``act`` must be a pure clamp on the producer's output (``act.is_clamp`` and
    ``act.in_q == out_q``); with a zero negative multiplier (ReLU) values below the zero
    point map to it, so the low bound becomes ``max(lo, zero_point)``.
    """
    if act is None:
        return out_q.qmin, out_q.qmax
    if not isinstance(act, QActivation) or not act.is_clamp or act.in_q != out_q:
        raise HwconvError(f"{stage}: act must be a clamping QActivation on the layer's "
                          f"output quantization (is_clamp, in_q == out_q)")
    lo = act.lo
    if np.all(act.neg.multiplier == 0):
        lo = max(lo, out_q.zero_point)
    if lo > act.hi:
        raise HwconvError(f"{stage}: fused clamp range [{lo}, {act.hi}] is empty")
    return lo, act.hi


def mac_weights(weight, simd, pe):
    """ROM rows of a dense ``(O, KH, KW, C)`` weight: ``(C/simd * O/pe, pe, KH*KW*simd)``.

    Row ``g * (O/pe) + f`` lane ``p`` term ``t * simd + l`` is
    ``weight[f*pe + p, i, j, g*simd + l]`` with ``t = i*KW + j``.
    """
    o, kh, kw, c = weight.shape
    w = weight.reshape(o // pe, pe, kh * kw, c // simd, simd)
    return w.transpose(3, 0, 1, 2, 4).reshape(c // simd * (o // pe), pe, kh * kw * simd)


class Conv2D(StageFigures, wiring.Component):
    """Stage for a :class:`~hwconv.quant.QConv2D` with ``groups == 1``.

    Parameters
    ----------
    op : hwconv.quant.QConv2D
    in_shape : (H, W, C)
    pe : int
        Output channels per cycle; divides ``O``; output beats have ``pe`` lanes.
    simd : int
        Input channels per cycle; divides ``C``; input beats have ``simd`` lanes.
    kfold : int
        Cycles per output group and window beat; divides ``K*K``.  ``pe * K*K*simd /
        kfold`` multipliers; with ``kfold > 1`` the requantizer goes limb-serial
        (:func:`hwconv.cost.requant_limbs`), its beats being ``kfold`` cycles apart.
    act : hwconv.quant.QActivation or None
        A clamping activation (ReLU, ReLU6, Clip) fused into the requantizer's clamp.
    levels_per_stage : int
        Adder-tree levels between pipeline registers (0: combinational tree).
    backend : str
        Multiplier back end: ``generic``, ``ecp5``, ``ice40`` or ``xilinx``
        (:mod:`hwconv.hw.dsp`).
    skid : bool
        ``True`` (default, for fast clocks): register slices with a skid entry, and the
        line buffer (where every slot emits), MAC arrays and requantizers run free on
        credits of small output queues (:class:`~hwconv.hw.fifo.CreditQueue`), so no
        stall signal fans out.  ``False``: plain pipeline registers and stalls (the
        same cycles, fewer cells).

    Attributes
    ----------
    i : In(beat_signature(in elem, simd))
    o : Out(beat_signature(out elem, pe))
    out_shape : (OH, OW, O)
    cycles_per_frame, latency, multipliers, linebuffer_words, weight_words, macs_per_frame
        As :func:`hwconv.cost.conv2d`.
    storage_words : int
        ``linebuffer_words + weight_words``.
    tail_beats : int
        Input beats of the next frame the line buffer may take before this frame's last
        window (see :class:`~hwconv.hw.linebuffer.LineBuffer`).
    acc_bits : int
    """

    def __init__(self, op, in_shape, *, pe=1, simd=1, kfold=1, act=None, levels_per_stage=1,
                 backend="generic", skid=True):
        if not isinstance(op, QConv2D):
            raise HwconvError(f"Conv2D: op must be a QConv2D, not {type(op).__name__}")
        self._cost = cost.conv2d(op, in_shape, pe=pe, simd=simd, kfold=kfold,
                                 levels_per_stage=levels_per_stage, backend=backend)
        self._geo = cost.conv_window("Conv2D", op, in_shape, simd)
        self._lo, self._hi = fused_clamp("Conv2D", act, op.out_q)
        self._op, self._in_shape = op, tuple(in_shape)
        self._pe, self._simd, self._kfold = pe, simd, kfold
        self._lps, self._backend = levels_per_stage, backend
        self._skid = skid
        w = op.weight
        self._bias = op.bias - op.in_q.zero_point * w.reshape(w.shape[0], -1).sum(axis=1)
        xb = value_bound(elem_shape(op.in_q.dtype))
        self._acc_bound = int((np.abs(w).reshape(w.shape[0], -1).sum(axis=1) * xb
                               + np.abs(self._bias)).max())
        self._in_elem = elem_shape(op.in_q.dtype)
        self._out_elem = elem_shape(op.out_q.dtype)
        super().__init__({
            "i": In(beat_signature(self._in_elem, simd)),
            "o": Out(beat_signature(self._out_elem, pe)),
        })

    @property
    def out_shape(self):
        return self._geo.out_shape[:2] + (self._op.out_channels,)

    @property
    def storage_words(self):
        return self._cost.linebuffer_words + self._cost.weight_words

    @property
    def tail_beats(self):
        return self._geo.tail_beats

    @property
    def acc_bits(self):
        return signed_bits(self._acc_bound)

    def elaborate(self, platform):
        m = Module()
        op, geo = self._op, self._geo
        o, kh, kw, c = op.weight.shape
        pe, simd = self._pe, self._simd
        taps = kh * kw * simd
        m.submodules.mac = mac = MacArray(
            self._in_elem, [list(range(taps))] * pe, taps,
            mac_weights(op.weight, simd, pe), self._bias.reshape(o // pe, pe),
            groups=c // simd, folds=o // pe, accumulate=True, weight_bits=op.weight_bits,
            acc_bits=self.acc_bits, levels_per_stage=self._lps, backend=self._backend,
            chunks=self._kfold, credit=self._skid)
        if cost.needs_window(geo):
            m.submodules.window = lb = LineBuffer(op, self._in_shape, lanes=simd,
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
        # window beats and pixel beats have the MAC input's bit layout (tap-major, lane-minor)
        m.d.comb += [mac.i.valid.eq(src.valid), src.ready.eq(mac.i.ready),
                     mac.i.payload.as_value().eq(src.payload.as_value())]
        m.submodules.requant = rq = Requantizer(
            op.requant, o, pe, self.acc_bits, op.out_q.zero_point, self._lo, self._hi,
            self._out_elem, backend=self._backend, skid=self._skid,
            limbs=cost.requant_limbs(op.requant, o, self._kfold, self._backend))
        wiring.connect(m, mac.o, rq.i)
        wiring.connect(m, rq.o, wiring.flipped(self.o))
        return m
