"""Analytic cost model: one function per hardware stage, named like the stage.

Each function takes the same layer(s), input shape and folding knobs as the stage's
constructor in :mod:`hwconv.hw` and returns a :class:`StageCost`; the stage's
``cycles_per_frame``, ``latency``, ``multipliers`` and storage properties return these
very numbers, so the mapper can plan without elaborating hardware (this module does not
import Amaranth).

Definitions used by every stage:

* ``cycles_per_frame``: cycles between consecutive frames in steady state, frames back
  to back, input always valid and output always ready.
* ``latency``: clock edges from the transfer of a frame's first input beat to the
  transfer of its first output beat, no stalls.
* ``multipliers``: multipliers of the MAC arrays (the requantizers add one per output
  lane, reported separately as ``requant_multipliers``).
* ``macs_per_frame``: the layer's multiply-accumulates; ``utilization`` =
  ``macs_per_frame / (multipliers * cycles_per_frame)``.

Sliding-window geometry (:class:`Window`) lives here too: the line buffer, the stages
built on it and their cost functions share one description of which slot emits which
window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import HwconvError
from .ir import normalize_padding, pair

__all__ = ["StageCost", "Axis", "Window", "window", "window_cycles", "line_buffer", "conv2d",
           "pool_activate", "depthwise_pointwise", "position_cycles", "REQUANT_LATENCY",
           "ACTIVATE_LATENCY"]

#: Register stages of :class:`hwconv.hw.requant.Requantizer`.
REQUANT_LATENCY = 3
#: Register stages of the activation unit in :mod:`hwconv.hw.pool`.
ACTIVATE_LATENCY = 3


@dataclass(frozen=True)
class StageCost:
    """Predicted figures of one stage at one folding (see module docstring)."""

    cycles_per_frame: int
    multipliers: int
    latency: int
    linebuffer_words: int = 0
    weight_words: int = 0
    macs_per_frame: int = 0
    requant_multipliers: int = 0
    #: other activation storage in values: a Dense input vector, accumulators, a skip FIFO
    buffer_words: int = 0

    @property
    def utilization(self):
        """Fraction of multiplier-cycles doing useful MACs (0 for stages without MACs)."""
        if not self.multipliers:
            return 0.0
        return self.macs_per_frame / (self.multipliers * self.cycles_per_frame)


# -- sliding-window geometry ----------------------------------------------------------

@dataclass(frozen=True)
class Axis:
    """One spatial axis of a sliding window.

    A window is *emitted* at the coordinate of its newest (bottom or right) tap,
    ``first + o * stride`` for output ``o``; coordinates ``>= size`` are padding beyond
    the image, reached in the slots that follow (the next row, or the next frame).
    """

    size: int
    kernel: int
    stride: int
    dilation: int
    before: int
    after: int

    @property
    def span(self):
        return (self.kernel - 1) * self.dilation + 1

    @property
    def first(self):
        """Emission coordinate of output 0."""
        return self.span - 1 - self.before

    @property
    def out(self):
        return (self.size + self.before + self.after - self.span) // self.stride + 1

    @property
    def last(self):
        """Emission coordinate of the last output (``size - 1 + after`` at most)."""
        return self.first + (self.out - 1) * self.stride

    def emits(self, coord):
        """Whether an output is emitted at ``coord`` (Python-side reference)."""
        return self.first <= coord <= self.last and (coord - self.first) % self.stride == 0

    def check(self, stage, name):
        if min(self.kernel, self.stride, self.dilation) < 1 or min(self.before,
                                                                    self.after) < 0:
            raise HwconvError(f"{stage}: {name} kernel/stride/dilation must be >= 1 and "
                              f"padding >= 0, got kernel={self.kernel} stride={self.stride} "
                              f"dilation={self.dilation} padding=({self.before}, "
                              f"{self.after})")
        padded = self.size + self.before + self.after
        if self.span > padded:
            raise HwconvError(f"{stage}: kernel span {self.span} is larger than the padded "
                              f"{name} {padded}")
        if self.before + self.after >= self.span:
            raise HwconvError(f"{stage}: {name} padding {self.before}+{self.after} must be "
                              f"smaller than the kernel span {self.span}")
        if self.first >= self.size:
            raise HwconvError(f"{stage}: the first window must end inside the image: "
                              f"{name} size {self.size} < kernel span {self.span} - "
                              f"padding {self.before}")


@dataclass(frozen=True)
class Window:
    """Sliding-window geometry of a line buffer over an ``(H, W, C)`` stream.

    Slots are the line buffer's time steps: one per input beat (``C / lanes`` per pixel)
    plus, between frames only, *virtual* slots that flush the last frame's bottom
    padding when the next frame is not there yet.
    """

    rows: Axis
    cols: Axis
    channels: int
    lanes: int

    @property
    def groups(self):
        """Beats per pixel, ``C / lanes``."""
        return self.channels // self.lanes

    @property
    def kernel(self):
        return (self.rows.kernel, self.cols.kernel)

    @property
    def in_shape(self):
        return (self.rows.size, self.cols.size, self.channels)

    @property
    def out_shape(self):
        return (self.rows.out, self.cols.out, self.channels)

    @property
    def in_beats(self):
        return self.rows.size * self.cols.size * self.groups

    @property
    def out_beats(self):
        return self.rows.out * self.cols.out * self.groups

    @property
    def storage_words(self):
        """Line-buffer memory in values: ``(KH - 1) * dilation * W * C``."""
        return (self.rows.kernel - 1) * self.rows.dilation * self.cols.size * self.channels

    @property
    def final_pixel(self):
        """Pixel index (from the frame's first pixel) of the slot emitting the last window."""
        return self.rows.last * self.cols.size + self.cols.last

    @property
    def tail_beats(self):
        """Slots after a frame's last input beat until its last window is emitted.

        These are the next frame's first beats when it follows without a gap, virtual
        slots otherwise (so a frame never waits for the next one indefinitely).
        """
        px = self.rows.size * self.cols.size
        return max(0, self.final_pixel + 1 - px) * self.groups

    @property
    def first_beat(self):
        """Slot index (from the frame's first beat) emitting the first window beat."""
        return (self.rows.first * self.cols.size + self.cols.first) * self.groups


def window(stage, in_shape, kernel, stride=1, padding=0, dilation=1, lanes=1):
    """Validated :class:`Window` (errors name ``stage``)."""
    in_shape = tuple(int(d) for d in in_shape)
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise HwconvError(f"{stage}: in_shape must be (H, W, C) with positive sizes, "
                          f"not {in_shape}")
    h, w, c = in_shape
    if not isinstance(lanes, int) or lanes < 1 or c % lanes:
        raise HwconvError(f"{stage}: lanes={lanes!r} must divide the {c} input channels")
    kernel, stride, dilation = pair(kernel), pair(stride), pair(dilation)
    top, left, bottom, right = normalize_padding(padding, kernel, dilation)
    geo = Window(Axis(h, kernel[0], stride[0], dilation[0], top, bottom),
                 Axis(w, kernel[1], stride[1], dilation[1], left, right), c, lanes)
    geo.rows.check(stage, "rows")
    geo.cols.check(stage, "columns")
    return geo


def window_cycles(geo, folds=1):
    """Cycles per frame of a line buffer whose consumer holds each window beat ``folds``
    cycles (input always valid, output always ready, frames back to back).

    The consumer takes window beats straight from the line buffer's output register,
    and the line buffer stalls only on a slot that emits into a full register.  So the
    consumer idles only where the slots between two consecutive windows outlast a
    window's ``folds`` cycles: between window beats ``r`` slots apart the cost is
    ``max(folds, r + 1)``.  The beats of one position are consecutive slots; positions
    are ``stride`` pixels apart along a row, rows and frames join at fixed distances.
    With "same"-style padding and stride 1 every slot emits and this is exactly
    ``OH * OW * C/lanes * folds``; with ``folds == 1`` it is the slot count, ``H * W *
    C/lanes``.
    """
    rows, cols, g = geo.rows, geo.cols, geo.groups

    def gap(pixels):            # cost of a window whose predecessor is `pixels` back
        return max(folds, (pixels - 1) * g + 1)

    w = cols.size
    row_jump = rows.stride * w + cols.first - cols.last
    frame_jump = rows.size * w + (rows.first - rows.last) * w + cols.first - cols.last
    return (rows.out * cols.out * (g - 1) * folds
            + rows.out * (cols.out - 1) * gap(cols.stride)
            + (rows.out - 1) * gap(row_jump) + gap(frame_jump))


# -- line buffer and convolution (hwconv.hw.linebuffer, .conv) ----------------------

#: Register stages of the line buffer from an input beat to its window.
LINEBUFFER_STAGES = 2


def line_buffer(geo):
    """:class:`hwconv.hw.linebuffer.LineBuffer` over :class:`Window` ``geo``.

    One slot per cycle: ``H * W * C / lanes`` cycles per frame (the window count never
    exceeds the input beat count, padding being smaller than the kernel span); see
    :func:`window_cycles`.
    """
    return StageCost(cycles_per_frame=window_cycles(geo), multipliers=0,
                     latency=geo.first_beat + LINEBUFFER_STAGES,
                     linebuffer_words=geo.storage_words)


def needs_window(geo):
    """Whether a stage needs a line buffer (anything but a 1x1, stride-1, unpadded map)."""
    r, c = geo.rows, geo.cols
    return (r.kernel, c.kernel, r.stride, c.stride, r.before, r.after, c.before,
            c.after) != (1, 1, 1, 1, 0, 0, 0, 0)


def conv_window(stage, op, in_shape, lanes):
    """Window geometry of conv layer ``op`` on ``in_shape`` (validated)."""
    return window(stage, in_shape, op.kernel, op.stride, op.padding, op.dilation, lanes)


def _check_int(stage, name, value, minimum):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise HwconvError(f"{stage}: {name}={value!r} must be an integer >= {minimum}")


def _check_divides(stage, name, value, total, what):
    _check_int(stage, name, value, 1)
    if total % value:
        raise HwconvError(f"{stage}: {name}={value} must divide the {total} {what}")


def _check_weights(stage, op, name="weights"):
    """Refuse weights that do not fit ``op.weight_bits`` (the ROM would wrap them)."""
    lim = 1 << (op.weight_bits - 1)
    if op.weight.size and (op.weight.min() < -lim or op.weight.max() >= lim):
        raise HwconvError(f"{stage}: {name} exceed weight_bits={op.weight_bits} "
                          f"(range {int(op.weight.min())}..{int(op.weight.max())})")


def mac_depth(terms, levels_per_stage, mul_stages):
    """Register stages of :class:`hwconv.hw.mac.MacArray` from a step to its output."""
    levels = (terms - 1).bit_length()
    tree = (levels - 1) // levels_per_stage if levels_per_stage and levels else 0
    return 1 + mul_stages + tree + 1


def conv2d(op, in_shape, pe=1, simd=1, *, levels_per_stage=1, mul_stages=1):
    """:class:`hwconv.hw.conv.Conv2D` for ``op`` (a QConv2D, ``groups == 1``).

    ``G = C / simd`` window beats per output position, each held ``F = O / pe`` cycles.
    """
    stage = "Conv2D"
    o, kh, kw, cg = op.weight.shape
    if op.groups != 1:
        raise HwconvError(f"{stage}: groups={op.groups} is not supported (depthwise convs "
                          f"map to DepthwisePointwise; other grouped convs have no stage)")
    in_shape = tuple(int(d) for d in in_shape)
    if len(in_shape) != 3 or in_shape[2] != cg:
        raise HwconvError(f"{stage}: in_shape {in_shape} must be (H, W, {cg}) for weights "
                          f"of shape {op.weight.shape}")
    _check_weights(stage, op)
    _check_divides(stage, "simd", simd, cg, "input channels")
    _check_divides(stage, "pe", pe, o, "output channels")
    _check_int(stage, "levels_per_stage", levels_per_stage, 0)
    _check_int(stage, "mul_stages", mul_stages, 1)
    geo = conv_window(stage, op, in_shape, simd)
    g, f = cg // simd, o // pe
    oh, ow, _ = geo.out_shape
    terms = kh * kw * simd
    lb = line_buffer(geo) if needs_window(geo) else None
    # The first window beat enters the MAC array at the line buffer's latency; without a
    # line buffer the input beat itself is held, so its transfer is F - 1 steps late.
    start = lb.latency if lb else 1 - f
    latency = start + (g - 1) * f + mac_depth(terms, levels_per_stage, mul_stages) + \
        REQUANT_LATENCY
    return StageCost(
        cycles_per_frame=window_cycles(geo, f) if lb else oh * ow * g * f,
        multipliers=pe * terms, latency=latency,
        linebuffer_words=geo.storage_words, weight_words=op.weight.size,
        macs_per_frame=oh * ow * op.weight.size, requant_multipliers=pe,
        buffer_words=o if g > 1 else 0)


# -- dense, global average pooling, residual add (hwconv.hw.dense, .gap, .add) ----------

__all__ += ["dense", "global_avg_pool", "add", "skip_fifo_depth", "ADD_LATENCY",
            "SKIP_FIFO_READ_LATENCY"]

#: Register stages of :class:`hwconv.hw.add.Add` from the join to the output.
ADD_LATENCY = 3
#: Clock edges from a write into an empty skip FIFO (``SyncFIFOBuffered``) to its read.
SKIP_FIFO_READ_LATENCY = 2


def dense(op, in_shape, pe=1, simd=1, *, levels_per_stage=1, mul_stages=1):
    """:class:`hwconv.hw.dense.Dense` for ``op`` (a QDense, weights ``(O, N)``).

    ``N / simd`` input beats, swept ``O / pe`` times (the first sweep as they arrive, the
    others from the input buffer of ``N`` values, absent when ``pe == O``).
    """
    stage = "Dense"
    o, n = op.weight.shape
    in_shape = tuple(int(d) for d in in_shape)
    if len(in_shape) not in (1, 3) or min(in_shape) < 1 or \
            in_shape[0] * (in_shape[1] * in_shape[2] if len(in_shape) == 3 else 1) != n:
        raise HwconvError(f"{stage}: in_shape {in_shape} must be ({n},) or a feature map "
                          f"of {n} values for weights of shape {op.weight.shape}")
    _check_divides(stage, "pe", pe, o, "output channels")
    _check_divides(stage, "simd", simd, in_shape[-1],
                   "inputs" if len(in_shape) == 1 else "channels of the feature map")
    _check_int(stage, "levels_per_stage", levels_per_stage, 0)
    _check_int(stage, "mul_stages", mul_stages, 1)
    ni, no = n // simd, o // pe
    return StageCost(
        cycles_per_frame=ni * no, multipliers=pe * simd,
        latency=ni - 1 + mac_depth(simd, levels_per_stage, mul_stages) + REQUANT_LATENCY,
        weight_words=o * n, macs_per_frame=o * n, requant_multipliers=pe,
        buffer_words=n if no > 1 else 0)


def global_avg_pool(op, in_shape, lanes=1):
    """:class:`hwconv.hw.gap.GlobalAvgPool`: one input beat per cycle, ``C`` accumulators.

    The first output beat follows the first beat of the frame's last pixel by one
    accumulator register and the requantizer.
    """
    stage = "GlobalAvgPool"
    in_shape = tuple(int(d) for d in in_shape)
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise HwconvError(f"{stage}: in_shape must be (H, W, C), not {in_shape}")
    h, w, c = in_shape
    _check_divides(stage, "lanes", lanes, c, "channels")
    groups = c // lanes
    return StageCost(cycles_per_frame=h * w * groups, multipliers=0,
                     latency=(h * w - 1) * groups + 1 + REQUANT_LATENCY,
                     requant_multipliers=lanes, buffer_words=c)


def add(op, in_shape, lanes=1, skip_depth=SKIP_FIFO_READ_LATENCY + 1):
    """:class:`hwconv.hw.add.Add`: one beat of each operand per cycle.

    ``latency`` counts from the main operand ``b`` (the skip operand waiting); the
    ``2 * lanes`` constant multipliers rescale the operands, so they are reported as
    ``requant_multipliers``; ``buffer_words`` is the skip FIFO.
    """
    stage = "Add"
    in_shape = tuple(int(d) for d in in_shape)
    if not in_shape or min(in_shape) < 1:
        raise HwconvError(f"{stage}: in_shape {in_shape} must be a non-empty shape")
    _check_divides(stage, "lanes", lanes, in_shape[-1], "channels")
    _check_int(stage, "skip_depth", skip_depth, 0)
    beats = 1
    for d in in_shape:
        beats *= d
    return StageCost(cycles_per_frame=beats // lanes, multipliers=0, latency=ADD_LATENCY,
                     requant_multipliers=2 * lanes, buffer_words=skip_depth * lanes)


def skip_fifo_depth(latency_main_path, latency_skip_path=0, *, cycles_per_beat=1):
    """Skip FIFO depth for a residual :func:`add` whose operands come from one fork.

    Parameters
    ----------
    latency_main_path : int
        Clock edges from a beat leaving the fork to the main path's output beat that
        depends on it reaching ``b``, without stalls (the sum of the stages' ``latency``).
    latency_skip_path : int
        The same for the skip path up to ``a`` (0 for a plain wire).
    cycles_per_beat : int
        Cycles between beats leaving the fork (1 at full rate; more for a folded path).

    Returns
    -------
    int
        ``max(ceil((Lm - Ls) / cycles_per_beat), SKIP_FIFO_READ_LATENCY) + 1``.

    Notes
    -----
    While the main path works towards output beat ``k`` it may need input beats up to
    ``k + D`` (a line buffer's look-ahead), all of which the fork hands to the skip FIFO
    too while skip beat ``k`` waits there: the FIFO must hold ``D + 1`` beats or the fork
    stops and nothing moves again (deadlock).  A main path that only delays by ``L``
    cycles keeps ``L / cycles_per_beat`` beats in flight, and the FIFO needs one more
    to never stall the fork.  ``D`` never exceeds the beats that pass in ``Lm`` cycles,
    so the rule covers both.  Below ``SKIP_FIFO_READ_LATENCY`` the skip operand is the
    late one and ``b`` waits (half rate; no real main path is that short).
    """
    for name, v in (("latency_main_path", latency_main_path),
                    ("latency_skip_path", latency_skip_path)):
        _check_int("skip_fifo_depth", name, v, 0)
    _check_int("skip_fifo_depth", "cycles_per_beat", cycles_per_beat, 1)
    diff = max(latency_main_path - latency_skip_path, 0)
    return max(-(-diff // cycles_per_beat), SKIP_FIFO_READ_LATENCY) + 1


# -- pool-then-activate (hwconv.hw.pool) ---------------------------------------------

def max_tree_stages(taps, levels_per_stage):
    """Register stages of :class:`hwconv.hw.pool.WindowMax` (output register included)."""
    levels = (taps - 1).bit_length()
    return 1 + ((levels - 1) // levels_per_stage if levels_per_stage and levels else 0)


def activation_latency(act):
    """Register stages of :class:`hwconv.hw.pool.ActivationUnit` for ``act``."""
    return 1 if act.is_clamp else ACTIVATE_LATENCY


def _check_activation(stage, act, dtype=None):
    from .quant import QActivation
    if not isinstance(act, QActivation):
        raise HwconvError(f"{stage}: act must be a QActivation or None, not "
                          f"{type(act).__name__}")
    for name, rq in (("positive", act.pos), ("negative", act.neg)):
        if len(set(rq.multiplier.ravel().tolist())) != 1 or \
                len(set(rq.shift.ravel().tolist())) != 1:
            raise HwconvError(f"{stage}: the activation's {name} requantizer must be "
                              f"per-tensor (one multiplier and shift)")
    if dtype is not None and act.in_q.dtype != dtype:
        raise HwconvError(f"{stage}: activation input type {act.in_q.dtype} != stream "
                          f"type {dtype}")


def pool_activate(pool, act, in_shape, lanes=1, *, dtype=None, levels_per_stage=1):
    """:class:`hwconv.hw.pool.PoolActivate`: one window (or beat) per cycle."""
    from .ir import MaxPool
    stage = "PoolActivate"
    if pool is None and act is None:
        raise HwconvError(f"{stage}: needs a pool, an activation or both")
    if pool is not None and not isinstance(pool, MaxPool):
        raise HwconvError(f"{stage}: pool must be a MaxPool or None, not "
                          f"{type(pool).__name__}")
    if act is not None:
        _check_activation(stage, act, dtype)
        dtype = act.in_q.dtype
    elif dtype not in ("int8", "uint8"):
        raise HwconvError(f"{stage}: dtype must be 'int8' or 'uint8' when there is no "
                          f"activation, not {dtype!r}")
    _check_int(stage, "levels_per_stage", levels_per_stage, 0)
    in_shape = tuple(int(d) for d in in_shape)
    if len(in_shape) != 3 or min(in_shape) < 1:
        raise HwconvError(f"{stage}: in_shape must be (H, W, C), not {in_shape}")
    _check_divides(stage, "lanes", lanes, in_shape[2], "channels")
    latency = activation_latency(act) if act is not None else 0
    if pool is None:
        return StageCost(cycles_per_frame=in_shape[0] * in_shape[1] * in_shape[2] // lanes,
                         multipliers=0, latency=latency)
    geo = window(stage, in_shape, pool.kernel, pool.stride, pool.padding, 1, lanes)
    lb = line_buffer(geo)
    taps = geo.rows.kernel * geo.cols.kernel
    return StageCost(cycles_per_frame=window_cycles(geo), multipliers=0,
                     latency=lb.latency + max_tree_stages(taps, levels_per_stage) + latency,
                     linebuffer_words=geo.storage_words)


# -- depthwise/pointwise engine (hwconv.hw.dwpw) --------------------------------------

def position_cycles(geo, per_position):
    """Cycles per frame when a consumer needs ``per_position`` cycles per output
    position and the line buffer may run ahead by whole positions (input always valid).

    Sums ``max(per_position, slots since the previous position)`` over the positions,
    the model of :func:`window_cycles` at position granularity; a consumer with deeper
    buffering in front of it idles less, so this is exact where every slot emits (stride
    1, "same"-style padding) and an upper bound elsewhere.
    """
    rows, cols, g = geo.rows, geo.cols, geo.groups
    w = cols.size

    def gap(pixels):
        return max(per_position, pixels * g)

    row_jump = rows.stride * w + cols.first - cols.last
    frame_jump = rows.size * w + (rows.first - rows.last) * w + cols.first - cols.last
    return (rows.out * (cols.out - 1) * gap(cols.stride) + (rows.out - 1) * gap(row_jump)
            + gap(frame_jump))


def depthwise_pointwise(dw, dw_act, pw, pw_act, in_shape, dw_simd=1, pw_simd=1, pw_pe=1, *,
                        levels_per_stage=1, mul_stages=1):
    """:class:`hwconv.hw.dwpw.DepthwisePointwise`.

    The pointwise half needs ``P = (C*m / pw_simd) * (O / pw_pe)`` cycles per pixel and
    the line buffer ``C / dw_simd`` slots per pixel; see :func:`position_cycles`.
    """
    from .quant import QConv2D
    stage = "DepthwisePointwise"
    for name, op in (("dw", dw), ("pw", pw)):
        if not isinstance(op, QConv2D):
            raise HwconvError(f"{stage}: {name} must be a QConv2D, not {type(op).__name__}")
    in_shape = tuple(int(d) for d in in_shape)
    if len(in_shape) != 3:
        raise HwconvError(f"{stage}: in_shape must be (H, W, C), not {in_shape}")
    c = in_shape[2]
    cm, kh, kw, one = dw.weight.shape
    if dw.groups != c or one != 1 or cm % c:
        raise HwconvError(f"{stage}: dw must be depthwise on {c} channels (groups={c}, "
                          f"weight (C*m, KH, KW, 1)), got groups={dw.groups} and weight "
                          f"{dw.weight.shape}")
    o = pw.out_channels
    if pw.kernel != (1, 1) or pw.stride != (1, 1) or any(pw.padding) or pw.groups != 1 \
            or pw.weight.shape[3] != cm:
        raise HwconvError(f"{stage}: pw must be a 1x1, stride-1, unpadded conv on {cm} "
                          f"channels, got kernel {pw.kernel} stride {pw.stride} padding "
                          f"{pw.padding} groups {pw.groups} weight {pw.weight.shape}")
    mid_q = dw.out_q
    if dw_act is not None:
        _check_activation(f"{stage} (dw_act)", dw_act)
        if dw_act.in_q != dw.out_q:
            raise HwconvError(f"{stage}: dw_act.in_q must equal dw.out_q")
        mid_q = dw_act.out_q
    if pw.in_q != mid_q:
        raise HwconvError(f"{stage}: pw.in_q must equal the depthwise output quantization")
    if pw_act is not None:
        _check_activation(f"{stage} (pw_act)", pw_act)
        if pw_act.in_q != pw.out_q:
            raise HwconvError(f"{stage}: pw_act.in_q must equal pw.out_q")
    _check_weights(stage, dw, "dw weights")
    _check_weights(stage, pw, "pw weights")
    _check_divides(stage, "dw_simd", dw_simd, c, "input channels")
    _check_divides(stage, "pw_simd", pw_simd, cm, "intermediate channels")
    _check_divides(stage, "pw_pe", pw_pe, o, "output channels")
    _check_int(stage, "levels_per_stage", levels_per_stage, 0)
    _check_int(stage, "mul_stages", mul_stages, 1)
    geo = conv_window(stage, dw, in_shape, dw_simd)
    oh, ow, _ = geo.out_shape
    g, mult, kk = c // dw_simd, cm // c, kh * kw
    per_pixel = (cm // pw_simd) * (o // pw_pe)
    windowed = needs_window(geo)
    cycles = position_cycles(geo, per_pixel) if windowed else oh * ow * max(per_pixel, g)
    # first window -> depthwise array -> requantizer [-> activation] [-> lane converter]
    # -> the pointwise array accumulates the pixel's C*m / pw_simd beats -> requantizer
    # [-> activation]
    dlanes = dw_simd * mult
    lat = (line_buffer(geo).latency if windowed else 0) + \
        mac_depth(kk, levels_per_stage, mul_stages) + REQUANT_LATENCY
    if dw_act is not None and not dw_act.is_clamp:
        lat += activation_latency(dw_act)
    relane = 0
    if pw_simd != dlanes:       # lane converter, and a holding register when gathering
        lat += math.lcm(dlanes, pw_simd) // dlanes + (dlanes % pw_simd != 0)
        relane = math.lcm(dlanes, pw_simd) + (pw_simd if dlanes % pw_simd else 0)
    lat += per_pixel - (o // pw_pe) + mac_depth(pw_simd, levels_per_stage, mul_stages) + \
        REQUANT_LATENCY
    if pw_act is not None and not pw_act.is_clamp:
        lat += activation_latency(pw_act)
    return StageCost(
        cycles_per_frame=cycles, multipliers=dlanes * kk + pw_pe * pw_simd, latency=lat,
        linebuffer_words=geo.storage_words, weight_words=dw.weight.size + pw.weight.size,
        macs_per_frame=oh * ow * (cm * kk + o * cm), requant_multipliers=dlanes + pw_pe,
        buffer_words=(o if cm > pw_simd else 0) + relane)
