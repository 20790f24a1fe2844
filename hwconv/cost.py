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
import weakref
from dataclasses import dataclass

import numpy as np

from .errors import HwconvError
from .ir import normalize_padding, pair

__all__ = ["StageCost", "Axis", "Window", "window", "window_cycles", "line_buffer", "conv2d",
           "pool_activate", "depthwise_pointwise", "position_cycles", "mul_latency",
           "requant_latency", "requant_limbs", "requant_round_point", "requant_table_block",
           "REQUANT_MIN_LIMB_BITS", "SLICE_LATENCY", "ACTIVATE_LATENCY"]

#: Signed operand widths (A, B) of each multiplier back end's DSP cell
#: (:mod:`hwconv.hw.dsp`); ``generic`` leaves multiplies to the synthesis tool.
DSP_PORTS = {"generic": None, "ecp5": (18, 18), "ice40": (16, 16), "xilinx": (25, 18)}
#: Enabled clock edges from a weight ROM's address to its data (read + output register).
WEIGHT_ROM_LATENCY = 2
#: Clock-enabled register stages of one vendor DSP cell's product (:mod:`hwconv.hw.dsp`):
#: the cell's input, pipeline and output registers, plus one fabric register where the
#: product lands (``ecp5``: a MAC array's cells spread over a DSP row of the die, and
#: the route from a cell to its adder tree would otherwise be one hop of up to ~7 ns;
#: ``ice40``: SB_MAC16's own output register belongs to its accumulator).
MUL_LATENCY = {"ecp5": 4, "ice40": 3, "xilinx": 3}
#: Back ends whose product lands in a fabric register after the cell's (see above).
MUL_FABRIC_REGISTER = frozenset({"ecp5", "ice40"})


def mul_latency(backend):
    """Register stages of one product of 8-bit operands on ``backend``
    (:data:`MUL_LATENCY`), or one product register on ``generic`` (fabric multipliers
    gain little from more, and each costs a product's width of flip-flops)."""
    _check_backend("multiply", backend)
    return 1 if DSP_PORTS[backend] is None else MUL_LATENCY[backend]


#: Back end of the requantizers' products where it differs from the MAC arrays': iCE40
#: parts have few DSP cells (the UP5K 8, the others none) and a requantizer product of
#: ~20 x ~26 bits takes two to four ``SB_MAC16``, so on ``ice40`` the requantizers
#: multiply in fabric (limb-serial where they can, :func:`requant_limbs`) and the cells
#: go to the MAC arrays' 8-bit products.
REQUANT_BACKEND = {"ice40": "generic"}


def requant_backend(backend):
    """The back end :class:`hwconv.hw.requant.Requantizer` multiplies with on a design
    whose multiplier back end is ``backend`` (see :data:`REQUANT_BACKEND`)."""
    _check_backend("requantizer", backend)
    return REQUANT_BACKEND.get(backend, backend)


def requant_mul_latency(backend):
    """Register stages the requantizer gives its product: a product of up to four DSP
    cells (:func:`mul_latency` plus two adder levels) on a vendor back end (the
    requantizer's own back end, :func:`requant_backend`)."""
    backend = requant_backend(backend)
    return mul_latency(backend) + (0 if DSP_PORTS[backend] is None else 2)


def requant_latency(backend, limbs=1):
    """Register stages of :class:`hwconv.hw.requant.Requantizer`: the product, then
    round-and-shift, clamp and zero point (1 each), then the output register slice.

    With ``limbs = L > 1`` (limb-serial) the beat first waits in the held register (1),
    its last limb enters the multiplier ``L - 1`` cycles after its first, and the
    running sum adds it in (1): ``L + 1`` edges more."""
    _check_limbs("requant_latency", limbs)
    return SLICE_LATENCY + requant_mul_latency(backend) + 3 + (limbs + 1 if limbs > 1 else 0)


#: Narrowest limb :func:`requant_limbs` chooses where the limb table is logic: narrower
#: limbs save few LUTs per cycle spent, while the held register, running sum and limb
#: table stay.  Where the table is in block RAM (:func:`requant_table_block`) the limbs
#: go down to one bit: the product shrinks to an adder and the table costs no LUTs.
REQUANT_MIN_LIMB_BITS = 4


def requant_table_block(mult, lanes, backend, limbs):
    """Whether a limb-serial :class:`hwconv.hw.requant.Requantizer` keeps its limb table
    in block RAM: on ``ice40`` (no LUT RAM, and logic cells are what a small part runs
    out of) when the channels of a lane have different multipliers (``mult``: the
    shift-folded multipliers, :func:`requant_multipliers`)."""
    if limbs <= 1 or backend != "ice40":
        return False
    return any(len(set(mult[lane::lanes])) > 1 for lane in range(lanes))


def requant_round_point(shift, limb_bits, limbs):
    """``(low, rshift)`` of a limb-serial requantizer: its running sum keeps the product's
    bits from ``low`` up and a sticky bit for those below, and rounds
    ``2 * (P >> low) + sticky`` by ``rshift`` (``shift`` is the common shift ``S``)."""
    if shift == 0:
        return 0, 0
    low = min(shift - 1, limb_bits * (limbs - 1))
    return low, shift - low + 1


def _check_limbs(what, limbs, width=None):
    if isinstance(limbs, bool) or not isinstance(limbs, (int, np.integer)) or limbs < 1 \
            or (width is not None and limbs > width):
        span = ">= 1" if width is None else f"from 1 to {width} (the multipliers' width)"
        raise HwconvError(f"{what}: limbs must be an integer {span}, not {limbs!r}")


#: Cycles of the register slice after every stage of a pipeline
#: (:class:`hwconv.hw.fifo.RegisterSlice`).
SLICE_LATENCY = 1
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
    #: limbs of the requantizers' serial products, summed over the stage's requantizers
    #: (1 each when parallel, see :func:`requant_limbs`): more limbs, smaller products
    requant_limbs: int = 0

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

#: Register stages of the line buffer from an input beat to its window: slot choice,
#: memory read, memory output register (block RAM read data is slow), window.
LINEBUFFER_STAGES = 3


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


def window_slice(geo):
    """Whether a :class:`~hwconv.hw.fifo.RegisterSlice` sits between a line buffer and
    its MAC array (ending the stall chain there): only where every slot emits a window
    (stride 1, output as large as the input), so the array sees an even stream and two
    more beats of buffering change no frame time (:func:`window_cycles` stays exact)."""
    return needs_window(geo) and all(a.stride == 1 and a.out == a.size
                                      for a in (geo.rows, geo.cols))


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


def mac_depth(terms, levels_per_stage, backend="generic"):
    """Register stages of :class:`hwconv.hw.mac.MacArray` from an input beat to its
    output: weight ROM read (2), product (:func:`mul_latency`), adder tree (a register
    every ``levels_per_stage`` levels and after the last,
    :func:`hwconv.hw.dense.adder_tree`), accumulator result register (1), output
    register or queue (1)."""
    levels = tree_levels(terms)
    tree = -(-levels // levels_per_stage) if levels_per_stage else 0
    return WEIGHT_ROM_LATENCY + mul_latency(backend) + tree + 2


def tree_levels(terms):
    """Levels of a pairwise reduction (adder or comparator tree) over ``terms``
    values, an odd one passing a level unchanged."""
    return (terms - 1).bit_length()


def tree_register_after(level, levels, levels_per_stage):
    """Whether a pipelined tree of ``levels`` levels registers after ``level`` (from 1):
    after every ``levels_per_stage`` levels and after the last (never with 0, a
    combinational tree).  :func:`hwconv.hw.dense.adder_tree` and
    :class:`hwconv.hw.pool.WindowMax` build by this rule, :func:`mac_depth` and
    :func:`max_tree_stages` count it."""
    return bool(levels_per_stage) and (level % levels_per_stage == 0 or level == levels)


def dsp_cells(backend, a_bits, b_bits):
    """Vendor DSP cells of one multiply of signed ``a_bits`` by signed ``b_bits``
    operands on multiplier back end ``backend`` (0 for ``generic``): operands wider than
    the cell's ports split into limbs of one bit less (unsigned) plus a signed top limb."""
    _check_backend("multiply", backend)
    ports = DSP_PORTS[backend]
    if ports is None:
        return 0
    return len(operand_limbs(a_bits, ports[0])) * len(operand_limbs(b_bits, ports[1]))


def operand_limbs(bits, port):
    """``[(offset, width, signed)]`` limbs of a ``bits``-wide signed operand that each fit
    a ``port``-bit signed input: unsigned low limbs of ``port - 1`` bits, a signed top."""
    if port is None or bits <= port:
        return [(0, bits, True)]
    out, off = [], 0
    while bits - off > port:
        out.append((off, port - 1, False))
        off += port - 1
    out.append((off, bits - off, True))
    return out


def _check_backend(stage, backend):
    if backend not in DSP_PORTS:
        raise HwconvError(f"{stage}: unknown multiplier back end {backend!r}; choose one "
                          f"of {', '.join(DSP_PORTS)}")


def conv2d(op, in_shape, pe=1, simd=1, kfold=1, *, levels_per_stage=1, backend="generic"):
    """:class:`hwconv.hw.conv.Conv2D` for ``op`` (a QConv2D, ``groups == 1``).

    ``G = C / simd`` window beats per output position, each held ``F * kfold`` cycles
    (``F = O / pe`` output groups, each taking ``kfold`` cycles of ``K*K*simd / kfold``
    products per lane).
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
    _check_divides(stage, "kfold", kfold, kh * kw, "kernel taps")
    _check_int(stage, "levels_per_stage", levels_per_stage, 0)
    _check_backend(stage, backend)
    geo = conv_window(stage, op, in_shape, simd)
    g, f = cg // simd, o // pe
    oh, ow, _ = geo.out_shape
    terms = kh * kw * simd
    hold = f * kfold
    lb = line_buffer(geo) if needs_window(geo) else None
    # The first window beat enters the MAC array at the line buffer's latency; without a
    # line buffer the input beat itself is held, so its transfer is F*kfold - 1 steps
    # late.  The first output leaves after the last beat's first fold's kfold chunks.
    start = lb.latency + SLICE_LATENCY * window_slice(geo) if lb else 1 - hold
    limbs = requant_limbs(op.requant, o, kfold, backend)
    latency = start + (g - 1) * hold + kfold - 1 + \
        mac_depth(terms // kfold, levels_per_stage, backend) + requant_latency(backend, limbs)
    return StageCost(
        cycles_per_frame=window_cycles(geo, hold) if lb else oh * ow * g * hold,
        multipliers=pe * terms // kfold, latency=latency,
        linebuffer_words=geo.storage_words, weight_words=op.weight.size,
        macs_per_frame=oh * ow * op.weight.size, requant_multipliers=pe,
        buffer_words=o if g > 1 else 0, requant_limbs=limbs)


# -- dense, global average pooling, residual add (hwconv.hw.dense, .gap, .add) ----------

__all__ += ["dense", "global_avg_pool", "add", "skip_fifo_depth", "ADD_LATENCY",
            "SKIP_FIFO_READ_LATENCY"]

#: Register stages of :class:`hwconv.hw.add.Add` from the join to the output.
ADD_LATENCY = 3
#: Clock edges from a write into an empty skip FIFO (``SyncFIFOBuffered``) to its read.
SKIP_FIFO_READ_LATENCY = 2


def dense(op, in_shape, pe=1, simd=1, *, levels_per_stage=1, backend="generic"):
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
    _check_backend(stage, backend)
    ni, no = n // simd, o // pe
    # an output group leaves every ni cycles: the requantizer may take ni limbs
    limbs = requant_limbs(op.requant, o, ni, backend)
    return StageCost(
        cycles_per_frame=ni * no, multipliers=pe * simd,
        latency=SLICE_LATENCY + ni - 1 + mac_depth(simd, levels_per_stage, backend) +
        requant_latency(backend, limbs),
        weight_words=o * n, macs_per_frame=o * n, requant_multipliers=pe,
        buffer_words=n if no > 1 else 0, requant_limbs=limbs)


def global_avg_pool(op, in_shape, lanes=1, *, backend="generic"):
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
                     latency=(h * w - 1) * groups + 1 + requant_latency(backend),
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
    """Register stages of :class:`hwconv.hw.pool.WindowMax`: one after every
    ``levels_per_stage`` comparator levels and one after the last level (none inside a
    combinational tree, ``levels_per_stage = 0``), then the output register or queue."""
    levels = tree_levels(taps)
    return 1 + (-(-levels // levels_per_stage) if levels_per_stage else 0)


def max_tree_register_bits(taps, width, levels_per_stage):
    """Flip-flops of one lane of :class:`hwconv.hw.pool.WindowMax`'s tree (its output
    register aside): each register stage holds its level's ``n`` operands and ``n // 2``
    comparison results."""
    bits, n, levels = 0, taps, tree_levels(taps)
    for level in range(1, levels + 1):
        if tree_register_after(level, levels, levels_per_stage):
            bits += n * width + n // 2
        n = n // 2 + n % 2
    return bits


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


def depthwise_pointwise(dw, dw_act, pw, pw_act, in_shape, dw_simd=1, pw_simd=1, pw_pe=1,
                        dw_kfold=1, pw_kfold=1, *, levels_per_stage=1, backend="generic"):
    """:class:`hwconv.hw.dwpw.DepthwisePointwise`.

    The pointwise half needs ``P = (C*m / pw_simd) * (O / pw_pe) * pw_kfold`` cycles per
    pixel, the depthwise half ``C / dw_simd * dw_kfold`` and the line buffer ``C /
    dw_simd`` slots per pixel; see :func:`position_cycles`.
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
    _check_divides(stage, "dw_kfold", dw_kfold, kh * kw, "kernel taps")
    _check_divides(stage, "pw_kfold", pw_kfold, pw_simd, "pointwise channels per beat")
    _check_int(stage, "levels_per_stage", levels_per_stage, 0)
    _check_backend(stage, backend)
    geo = conv_window(stage, dw, in_shape, dw_simd)
    oh, ow, _ = geo.out_shape
    g, mult, kk = c // dw_simd, cm // c, kh * kw
    dlanes = dw_simd * mult
    if dw_kfold > 1 and pw_simd % dlanes:
        raise HwconvError(f"{stage}: dw_kfold={dw_kfold} needs pw_simd={pw_simd} to be a "
                          f"multiple of the {dlanes} depthwise lanes (dw_simd * m)")
    per_pixel = max((cm // pw_simd) * (o // pw_pe) * pw_kfold, g * dw_kfold)
    windowed = needs_window(geo)
    cycles = position_cycles(geo, per_pixel) if windowed else oh * ow * max(per_pixel, g)
    if windowed and dw_kfold > 1:      # the depthwise array holds each window dw_kfold
        cycles = max(cycles, window_cycles(geo, dw_kfold))
    # first window -> depthwise array -> requantizer [-> activation] [-> lane converter]
    # -> the pointwise array accumulates the pixel's C*m / pw_simd beats -> requantizer
    # [-> activation]
    lat = (line_buffer(geo).latency if windowed else 0) + \
        SLICE_LATENCY * window_slice(geo) + dw_kfold - 1 + \
        mac_depth(kk // dw_kfold, levels_per_stage, backend) + \
        requant_latency(backend,
                        dw_limbs := requant_limbs(dw.requant, cm, dw_kfold, backend))
    if dw_act is not None and not dw_act.is_clamp:
        lat += activation_latency(dw_act)
    relane = 0
    if pw_simd != dlanes:       # lane converter
        # the depthwise beats it gathers leave the requantizer dw_kfold cycles apart
        lat += (math.lcm(dlanes, pw_simd) // dlanes - 1) * dw_kfold + 1
        relane = math.lcm(dlanes, pw_simd)
    pw_hold = (o // pw_pe) * pw_kfold
    if dw_kfold > 1:    # a pointwise beat per pw_simd / dlanes depthwise beats, if slower
        pw_hold = max(pw_hold, pw_simd // dlanes * dw_kfold)
    lat += (cm // pw_simd - 1) * pw_hold + pw_kfold - 1 + SLICE_LATENCY + \
        mac_depth(pw_simd // pw_kfold, levels_per_stage, backend) + \
        requant_latency(backend,
                        pw_limbs := requant_limbs(pw.requant, o, pw_kfold, backend))
    if pw_act is not None and not pw_act.is_clamp:
        lat += activation_latency(pw_act)
    return StageCost(
        cycles_per_frame=cycles,
        multipliers=dlanes * kk // dw_kfold + pw_pe * pw_simd // pw_kfold, latency=lat,
        linebuffer_words=geo.storage_words, weight_words=dw.weight.size + pw.weight.size,
        macs_per_frame=oh * ow * (cm * kk + o * cm), requant_multipliers=dlanes + pw_pe,
        buffer_words=(o if cm > pw_simd else 0) + relane, requant_limbs=dw_limbs + pw_limbs)


# == resources: DSP blocks, block RAM, LUTs and flip-flops per FPGA family ==============
#
# The functions above count what a stage *is* (multipliers, storage words, cycles); the
# ones below predict what Yosys 0.70 makes of it on each family, as rtl_gen.synth runs it
# (``synth_ecp5``, ``synth_ice40`` without ``-dsp``, ``synth_xilinx``).  A stage is
# described by an :class:`Inventory`: its multiplies (operand widths, constant or not),
# its memories (width x depth, ROM or RAM, block RAM forced or not) and counts of
# register, adder and multiplexer bits.  :func:`estimate` maps an inventory with the
# family's rules:
#
# * DSP blocks: Yosys's ``mul2dsp`` rule (operands split into 18x18, 25x18 ... tiles,
#   products narrower than the minimum width stay in LUTs), after ``opt_expr`` has
#   turned products by 0 or +-2**k into shifts and ``opt_merge`` has merged identical
#   constant products.  iCE40 runs without ``-dsp`` (it produced wrong netlists, see
#   DESIGN.md): every multiplier is LUT logic there.
# * Memories: the cost comparison of Yosys's ``memory_libmap`` (block RAM cost per cell,
#   LUT RAM cost, soft logic at 1 per RAM bit and 1/16 per ROM bit, 1/64 on Xilinx)
#   over the family's block and distributed RAM geometries, so a memory lands where
#   Yosys puts it.
# * LUTs and FFs: linear in the inventory's logic counts, with per-family coefficients
#   fitted to Yosys runs of every stage kind (``python -m rtl_gen.calibrate --fit``).
#
# rtl_gen.calibrate compares all of this with real synthesis, stage by stage.

__all__ += ["Multiply", "Storage", "Inventory", "Estimate", "FAMILIES", "dsp_blocks",
            "memory_map", "MemoryMap", "estimate", "logic_features", "LUT_FEATURES",
            "acc_bits_conv", "acc_bits_dense", "acc_bits_gap",
            "mac_array_inventory", "requantizer_inventory", "line_buffer_inventory",
            "conv2d_inventory", "depthwise_pointwise_inventory", "pool_activate_inventory",
            "dense_inventory", "global_avg_pool_inventory", "add_inventory",
            "fifo_inventory", "lane_converter_inventory"]


def _clog2(n):
    return max(1, (int(n) - 1).bit_length())


def _ceil_div(a, b):
    return -(-a // b)


#: Per-layer facts derived from the weights (accumulator widths, constant products),
#: computed once per layer object: a design-space sweep asks for them at every folding.
_FACTS = weakref.WeakKeyDictionary()


def _memo(owner, key, compute):
    facts = _FACTS.setdefault(owner, {})
    if key not in facts:
        facts[key] = compute()
    return facts[key]


@dataclass(frozen=True)
class Multiply:
    """``count`` products of an ``a_bits`` by a ``b_bits`` operand.

    Widths are as Yosys sees them: an unsigned operand multiplied by a signed one is
    zero-extended by a bit.  ``const`` is the value of a constant ``b`` (``None`` for a
    variable one); :func:`dsp_blocks` treats 0 and +-2**k as wiring.
    """

    a_bits: int
    b_bits: int
    a_signed: bool = True
    b_signed: bool = True
    const: int | None = None
    count: int = 1
    #: vendor DSP cells per product when a back end instantiates them (:func:`dsp_cells`);
    #: ``None`` when the synthesis tool infers the multiply
    cells: int | None = None


def multiply(backend, a_bits, b_bits, a_signed=True, b_signed=True, const=None, count=1):
    """:class:`Multiply` as :func:`hwconv.hw.dsp.multiply` builds it on ``backend``:
    a vendor back end instantiates :func:`dsp_cells` per product, except for constants
    that are wiring (0, +-2**k)."""
    cells = None
    if DSP_PORTS[backend] is not None:
        cells = 0 if const is not None and const_is_shift(const) else \
            dsp_cells(backend, a_bits + (not a_signed), b_bits + (not b_signed))
    return Multiply(a_bits, b_bits, a_signed, b_signed, const=const, count=count,
                    cells=cells)


def _mul_ff(backend, a_bits, b_bits, pbits):
    """Fabric flip-flops of one registered product: the product register on the generic
    back end, the landing register on :data:`MUL_FABRIC_REGISTER` back ends; none
    otherwise (inside the DSP cell)."""
    if DSP_PORTS[backend] is None or backend in MUL_FABRIC_REGISTER:
        return pbits
    return 0


@dataclass(frozen=True)
class Storage:
    """``count`` memories of ``depth`` words of ``width`` bits with a synchronous read
    port; ``rom`` when never written, ``block`` when ``ram_style = "block"`` forces
    block RAM."""

    width: int
    depth: int
    rom: bool = False
    block: bool = False
    count: int = 1


@dataclass(frozen=True)
class Inventory:
    """What one piece of hardware contains (see the section comment).

    Attributes
    ----------
    multiplies, memories : tuple
        :class:`Multiply` and :class:`Storage` entries.
    ff : int
        Register bits outside memories (``mul_ff`` excluded).
    mul_ff : int
        Register bits holding products, which DSP blocks with output registers absorb
        (DSP48E1 does; ECP5's inferred MULT18X18D does not).
    ctrl : int
        Control logic (counters, cursors, handshakes) in ECP5 LUT4s as measured per
        block (a line buffer's cursors ~100, a FIFO's pointers and levels ~70).
    adder : int
        Adder, subtractor and comparator bits (carry chains).
    mux : int
        2:1 multiplexer bits (selects, padding masks, small constant tables).
    slice_bits : int
        Payload bits of the register slices (:class:`hwconv.hw.fifo.RegisterSlice`),
        already inside the other figures: without their skid entries a design saves
        about a flip-flop and a LUT per bit (:func:`estimate`'s ``skid``).
    """

    multiplies: tuple = ()
    memories: tuple = ()
    ff: int = 0
    adder: int = 0
    mux: int = 0
    mul_ff: int = 0
    ctrl: int = 0
    slice_bits: int = 0

    def __add__(self, other):
        return Inventory(self.multiplies + other.multiplies, self.memories + other.memories,
                         self.ff + other.ff, self.adder + other.adder, self.mux + other.mux,
                         self.mul_ff + other.mul_ff, self.ctrl + other.ctrl,
                         self.slice_bits + other.slice_bits)


@dataclass(frozen=True)
class Estimate:
    """Predicted resources in the family's own units (as :mod:`rtl_gen.synth` reports
    them): ``dsp`` cells, ``bram`` blocks (Xilinx: RAMB36 equivalents), ``lut`` (LUT4 on
    ECP5/iCE40, LUT1-6 on Xilinx; carry cells excluded), ``ff`` and ``lutram`` cells."""

    dsp: int = 0
    bram: float = 0
    lut: int = 0
    ff: int = 0
    lutram: int = 0

    def __add__(self, other):
        return Estimate(self.dsp + other.dsp, self.bram + other.bram, self.lut + other.lut,
                        self.ff + other.ff, self.lutram + other.lutram)

    def to_json(self):
        return {"dsp": self.dsp, "bram": self.bram, "lut": self.lut, "ff": self.ff,
                "lutram": self.lutram}


@dataclass(frozen=True)
class _DspRule:
    """Yosys ``mul2dsp`` parameters of a family (``techmap -D DSP_*``)."""

    a_max: int
    b_max: int
    a_partial: int
    min_a: int = 2
    min_b: int = 2
    min_y: int = 0
    signed_only: bool = False


@dataclass(frozen=True)
class _Ram:
    """One geometry family of a RAM primitive, as in Yosys's memory library files.

    ``widths[i]`` is the data width at base width index ``i`` (depth ``2**(abits-i)``);
    ``write_width`` a fixed write-port width (0: any); ``ram``/``rom``: what it may hold.
    """

    abits: int
    widths: tuple
    cost: int
    units: float = 1.0
    byte: int = 0
    write_width: int = 0
    widthscale: int = 0
    distributed: bool = False
    ram: bool = True
    rom: bool = True


@dataclass(frozen=True)
class _Family:
    name: str
    dsp: _DspRule | None
    rams: tuple
    #: ``memory_libmap -logic-cost-rom``: soft-logic cost of a ROM bit
    rom_logic_cost: float
    #: LUT coefficients, in the order of :data:`LUT_FEATURES`: per adder bit, mux
    #: bit, soft multiplier partial product, logic ROM bit, logic RAM bit, LUT RAM
    #: cell, control LUT4, and a constant per stage
    lut_coef: tuple
    #: FF coefficients: (per register bit, per product register bit, per soft
    #: multiplier partial product)
    ff_coef: tuple


#: LUT/FF coefficients: ``python -m rtl_gen.calibrate --fit`` over 45 stages and FIFOs
#: per family (Yosys 0.70); a coefficient the data cannot pin (soft multipliers on
#: ECP5/Xilinx, logic RAM/ROM bits) keeps a physical prior (LUT4 = 16 ROM bits, ...).
FAMILIES = {
    "ecp5": _Family(
        "ecp5", _DspRule(a_max=18, b_max=18, a_partial=18),
        (_Ram(14, (1, 2, 4, 9, 18), 128, byte=9),                       # DP16KD
         _Ram(14, (1, 2, 4, 9, 18, 36), 128, byte=9, write_width=36),   # PDPW16KD
         _Ram(4, (4,), 4, distributed=True, rom=False)),                # TRELLIS_DPR16X4
        rom_logic_cost=1 / 16,
        lut_coef=(0.15, 0.443, 1.5, 0.07, 0.6, 0.811, 1.026, 0.0), ff_coef=(1.091, 0.511, 0.0)),
    "ice40": _Family(
        "ice40", None,
        (_Ram(11, (2, 4, 8), 64),                                       # SB_RAM40_4K
         _Ram(8, (16,), 64, byte=1, rom=False),                         # ... with byte mask
         _Ram(11, (2, 4, 8, 16), 64, ram=False)),                       # ... as a ROM
        rom_logic_cost=1 / 16,
        # refitted (rtl_gen.calibrate --fit) with kernel folding, serial requantizers and
        # column delay lines: LUT / FF median error 6 % / 5 % on 71 cases
        lut_coef=(0.048, 1.511, 2.874, 0.159, 0.565, 0.0, 0.967, 0.59),
        ff_coef=(1.322, 0.193, 0.0)),
    "xilinx": _Family(
        "xilinx", _DspRule(a_max=25, b_max=18, a_partial=18, min_y=9, signed_only=True),
        (_Ram(14, (1, 2, 4, 9, 18), 129, units=0.5, byte=9),            # RAMB18 TDP
         _Ram(15, (1, 2, 4, 9, 18, 36), 257, byte=9),                   # RAMB36 TDP
         _Ram(14, (1, 2, 4, 9, 18, 36), 129, units=0.5, byte=9, write_width=36),
         _Ram(15, (1, 2, 4, 9, 18, 36, 72), 257, byte=9, write_width=72),
         _Ram(5, (6,), 8, widthscale=7, distributed=True, rom=False),   # RAM32M SDP
         _Ram(6, (3,), 8, widthscale=7, distributed=True, rom=False),   # RAM64M SDP
         _Ram(7, (1,), 8, widthscale=8, distributed=True, rom=False)),  # RAM128X1D
        rom_logic_cost=1 / 64,
        lut_coef=(0.036, 0.533, 1.0, 0.049, 0.6, 0.0, 0.375, 0.457), ff_coef=(0.396, 0.292, 0.0)),
}


def _family(family):
    try:
        return FAMILIES[family]
    except KeyError:
        raise HwconvError(f"unknown FPGA family {family!r}; known: "
                          f"{', '.join(FAMILIES)}") from None


def const_is_shift(v):
    """Whether multiplying by the constant ``v`` is wiring: 0 or +-2**k."""
    v = abs(int(v))
    return v & (v - 1) == 0            # 0 or a power of two


def _min_signed_bits(v):
    v = int(v)
    return (v if v >= 0 else ~v).bit_length() + 1


def _mul2dsp(rule, a, b, a_signed, b_signed, top):
    """DSP cells Yosys's ``mul2dsp`` makes of one ``a x b`` product (0: soft logic)."""
    if top and a < b:
        a, b, a_signed, b_signed = b, a, b_signed, a_signed
    if a < rule.min_a or b < rule.min_b or (rule.min_y and a + b < rule.min_y):
        return 0
    if rule.signed_only and top and not a_signed and not b_signed:
        a, b, a_signed, b_signed = a + 1, b + 1, True, True
    head = 1 if rule.signed_only else 0
    if a > rule.a_max:
        step = rule.a_partial - head
        n = (a - rule.a_max + rule.a_partial - head - 1) // step
        return n * _mul2dsp(rule, rule.a_partial, b, bool(head), b_signed, False) + \
            _mul2dsp(rule, a - n * step, b, a_signed, b_signed, False)
    if b > rule.b_max:
        step = rule.b_max - head
        n = (b - rule.b_max + rule.b_max - head - 1) // step
        return n * _mul2dsp(rule, a, rule.b_max, a_signed, bool(head), False) + \
            _mul2dsp(rule, a, b - n * step, a_signed, b_signed, False)
    return 1


def dsp_blocks(mul, family):
    """DSP cells for :class:`Multiply` ``mul`` on ``family`` (all ``count`` of them)."""
    if mul.cells is not None:
        return mul.count * mul.cells
    fam = _family(family)
    if fam.dsp is None or (mul.const is not None and const_is_shift(mul.const)):
        return 0
    b = mul.b_bits
    if mul.const is not None:       # trailing zeros become a shift; then minimal width
        c = int(mul.const)
        c >>= (c & -c).bit_length() - 1
        b = _min_signed_bits(c) if mul.b_signed else c.bit_length()
    return mul.count * _mul2dsp(fam.dsp, mul.a_bits, b, mul.a_signed, mul.b_signed, True)


def _soft_products(mul, family):
    """Partial products of ``mul`` built from LUTs (0 where it maps to DSP or wiring)."""
    if mul.cells is not None:
        return 0
    if mul.const is not None:
        if const_is_shift(mul.const):
            return 0
        if dsp_blocks(mul, family):
            return 0
        # shift-and-add: one adder of the operand's width per extra set bit
        return mul.count * (bin(abs(int(mul.const))).count("1") - 1) * mul.a_bits
    if dsp_blocks(mul, family):
        return 0
    return mul.count * mul.a_bits * mul.b_bits


def _ram_cost(ram, width, depth, rom):
    """``memory_libmap``'s best ``(cost, cells)`` for one memory on ``ram`` (or None)."""
    if (rom and not ram.rom) or (not rom and not ram.ram):
        return None
    best = None
    byte_idx = max((i for i, w in enumerate(ram.widths) if ram.byte >= w), default=-1) \
        if ram.byte else len(ram.widths) - 1
    wr_idx = ram.widths.index(ram.write_width) if ram.write_width in ram.widths else 0
    for idx, unit in enumerate(ram.widths):
        if not rom and ram.write_width and idx < wr_idx and idx < byte_idx:
            continue
        eff = 1 if rom else (ram.byte if 0 < ram.byte <= unit else unit)
        swizzle = width if rom else _ceil_div(width, eff) * eff
        mult_a = _ceil_div(depth, 1 << (ram.abits - idx))
        repl = _ceil_div(mult_a * swizzle, unit)
        cost = (ram.cost - ram.widthscale) * repl
        cost += ram.widthscale * mult_a * width // unit
        cost += 0.5 * (mult_a - 1) * width
        if mult_a != 1 and not rom:
            cost += 0.5 * mult_a
        if best is None or cost < best[0]:
            best = (cost, repl)
    return best


@dataclass(frozen=True)
class MemoryMap:
    """Where one :class:`Storage` lands: block RAM units, LUT RAM cells, or logic."""

    bram: float = 0
    lutram: int = 0
    logic_bits: int = 0
    rom: bool = False


def memory_map(mem, family):
    """The mapping Yosys's ``memory_libmap`` chooses for ``mem`` on ``family``."""
    fam = _family(family)
    if mem.depth <= 1 and not mem.block:       # a single word is a register
        return MemoryMap(logic_bits=mem.width * mem.count, rom=mem.rom)
    logic = int(mem.width * mem.depth * (fam.rom_logic_cost if mem.rom else 1))
    best, choice = (None, None) if mem.block else (logic, None)
    for ram in fam.rams:
        if mem.block and ram.distributed:
            continue
        got = _ram_cost(ram, mem.width, mem.depth, mem.rom)
        if got is not None and (best is None or got[0] < best):
            best, choice = got[0], (ram, got[1])
    if choice is None:
        return MemoryMap(logic_bits=mem.width * mem.depth * mem.count, rom=mem.rom)
    ram, cells = choice
    if ram.distributed:
        return MemoryMap(lutram=cells * mem.count, rom=mem.rom)
    return MemoryMap(bram=cells * ram.units * mem.count, rom=mem.rom)


#: Names of :func:`logic_features`, in the order of a family's ``lut_coef``.
LUT_FEATURES = ("adder", "mux", "soft_mul", "rom_bits", "ram_bits", "lutram", "ctrl",
                "one")


def logic_features(inv, family):
    """The quantities LUTs and FFs are modelled on: ``{name: value}`` for
    :data:`LUT_FEATURES` plus ``ff`` (register bits, memories in registers included),
    ``dsp``, ``bram`` and ``lutram`` as mapped on ``family``."""
    dsp = sum(dsp_blocks(m, family) for m in inv.multiplies)
    soft = sum(_soft_products(m, family) for m in inv.multiplies)
    bram = lutram = rom_bits = ram_bits = 0
    for mem in inv.memories:
        got = memory_map(mem, family)
        bram += got.bram
        lutram += got.lutram
        if got.rom:
            rom_bits += got.logic_bits
        else:
            ram_bits += got.logic_bits
    return {"adder": inv.adder, "mux": inv.mux, "soft_mul": soft, "rom_bits": rom_bits,
            "ram_bits": ram_bits, "lutram": lutram, "ctrl": inv.ctrl, "one": 1,
            "ff": inv.ff + ram_bits,
            "mul_ff": inv.mul_ff, "dsp": dsp, "bram": bram}


def estimate(inv, family, *, skid=True):
    """:class:`Estimate` of :class:`Inventory` ``inv`` on ``family``; ``skid=False``:
    with plain registers for register slices (``inv.slice_bits`` flip-flops and LUTs
    fewer: measured on iCE40, a 73-bit window slice 79 -> 2 LUT4 and 148 -> 74 FF)."""
    fam = _family(family)
    f = logic_features(inv, family)
    lut = sum(c * f[k] for c, k in zip(fam.lut_coef, LUT_FEATURES))
    f_reg, f_prod, f_soft = fam.ff_coef
    ff = f_reg * f["ff"] + f_prod * f["mul_ff"] + f_soft * f["soft_mul"]
    if not skid:
        lut, ff = max(0, lut - inv.slice_bits), max(0, ff - inv.slice_bits)
    return Estimate(dsp=f["dsp"], bram=f["bram"], lut=int(round(lut)), ff=int(round(ff)),
                    lutram=f["lutram"])


# -- inventories of the hardware blocks ------------------------------------------------

def _elem_value_bound(dtype):
    return 128 if dtype == "int8" else 255


def _operand(dtype):
    """(bits, signed) of an 8-bit activation as a multiplier operand next to a signed
    weight (an unsigned value is zero-extended)."""
    return (8, True) if dtype == "int8" else (9, True)


def acc_bits_conv(op, in_dtype=None):
    """Accumulator width of a Conv2D / MacArray for ``op``: the bound of
    ``sum(|w|) * max|x| + |bias - zp * sum(w)|`` (as :class:`hwconv.hw.conv.Conv2D`)."""
    def compute():
        w = op.weight.reshape(op.weight.shape[0], -1)
        bias = op.bias - op.in_q.zero_point * w.sum(axis=1)
        xb = _elem_value_bound(in_dtype or op.in_q.dtype)
        return int((np.abs(w).sum(axis=1) * xb + np.abs(bias)).max()).bit_length() + 1
    return _memo(op, ("acc", in_dtype), compute)


def acc_bits_dense(op):
    """Accumulator width of :class:`hwconv.hw.dense.Dense` for ``op``."""
    return acc_bits_conv(op)


def acc_bits_gap(op, in_shape):
    """Accumulator width of :class:`hwconv.hw.gap.GlobalAvgPool`."""
    h, w, _ = in_shape
    q = op.in_q
    bound = h * w * (max(abs(q.qmin), abs(q.qmax)) + abs(q.zero_point))
    return int(bound).bit_length() + 1


def _tree_bits(terms, width, levels_per_stage):
    """(adder bits, register bits) of a pairwise adder tree over ``terms`` inputs."""
    adders = regs = 0
    n, levels = terms, tree_levels(terms)
    for level in range(1, levels + 1):
        pairs, odd = n // 2, n % 2
        adders += pairs * (width + level)
        n = pairs + odd
        if tree_register_after(level, levels, levels_per_stage):
            regs += n * (width + level)
    return adders, regs


def mac_array_inventory(in_dtype, pe, terms, n_in, steps, out_groups, wbits, acc_bits,
                        *, banked, levels_per_stage=1, backend="generic", const_pairs=None,
                        chunks=1):
    """:class:`hwconv.hw.mac.MacArray`: ``pe`` lanes of ``terms`` products per cycle.

    ``steps`` weight rows (a ROM of ``pe * terms`` weights when more than one); with a
    single row the weights are constants and ``const_pairs`` counts the distinct
    ``(input, weight)`` products per weight value (see :func:`_const_pairs`).  ``n_in``
    input values are delayed alongside the ROM read; with ``chunks > 1`` each is chosen
    from ``chunks`` beat values and a partial sum per lane adds the chunks up.
    """
    a_bits, a_signed = _operand(in_dtype)
    pbits = (_elem_value_bound(in_dtype) << (wbits - 1)).bit_length() + 1
    if steps > 1:
        muls = (multiply(backend, a_bits, wbits, a_signed, True, count=pe * terms),)
        mems = (Storage(pe * terms * wbits, steps, rom=True),)
        live = pe * terms
        rom_ff = pe * terms * wbits             # the ROM's output register
    else:
        pairs = const_pairs or {}
        muls = tuple(multiply(backend, a_bits, wbits, a_signed, True, const=w, count=n)
                     for w, n in pairs.items() if w != 0)
        mems = ()
        live = sum(n for w, n in pairs.items() if w != 0)
        rom_ff = 0
    adders, tree_regs = _tree_bits(terms, pbits, levels_per_stage)
    ctrl = 4 + _clog2(max(out_groups, 2))
    stages = WEIGHT_ROM_LATENCY + mul_latency(backend) + (tree_regs > 0)
    ff = (WEIGHT_ROM_LATENCY * n_in * 8 + rom_ff + pe * tree_regs + pe * acc_bits
          + ctrl * stages + 3 * _clog2(max(steps, 2)))
    mux = 0
    if banked:
        ff += out_groups * pe * acc_bits
        mux += pe * acc_bits
    if chunks > 1:
        ff += pe * acc_bits
        mux += pe * acc_bits + n_in * 8 * (chunks - 1)
    if not banked and chunks == 1:
        ff += pe * acc_bits             # the result register (else the bank or partial sum)
    if out_groups > 1:
        mux += pe * acc_bits            # per-group bias table
    if banked or chunks > 1 or out_groups > 1:
        ff += pe * acc_bits     # credit mode's start register (hwconv.hw.dense.start_register)
    return Inventory(muls, mems, ff=ff, adder=pe * adders + pe * acc_bits, mux=mux,
                     mul_ff=live * _mul_ff(backend, a_bits, wbits, pbits), ctrl=20)


def requant_multipliers(requant, channels):
    """Per-channel multipliers with every shift folded in, and the common shift:
    ``(M_c << (S - s_c), S)`` with ``S = max(s_c)`` (as
    :class:`hwconv.hw.requant.Requantizer` builds them)."""
    mult = np.broadcast_to(np.asarray(requant.multiplier, dtype=np.int64).ravel(),
                           (channels,)) if np.size(requant.multiplier) == 1 else \
        np.asarray(requant.multiplier, dtype=np.int64).ravel()
    shift = np.broadcast_to(np.asarray(requant.shift, dtype=np.int64).ravel(),
                            (channels,)) if np.size(requant.shift) == 1 else \
        np.asarray(requant.shift, dtype=np.int64).ravel()
    top = int(shift.max())
    return [int(m) << (top - int(sh)) for m, sh in zip(mult, shift)], top


def requant_width(requant, channels):
    """Bits of the widest shift-folded multiplier (:func:`requant_multipliers`)."""
    mult, _ = requant_multipliers(requant, channels)
    return max(1, max(mult).bit_length())


def requant_limb_bits(requant, channels, limbs):
    """Width ``w = ceil(Wm / limbs)`` of one limb of the folded multipliers (``Wm`` bits),
    refusing a ``limbs`` that is not an integer from 1 to ``Wm``."""
    width = requant_width(requant, channels)
    _check_limbs("Requantizer", limbs, width)
    return _ceil_div(width, int(limbs))


def requant_limbs(requant, channels, gap, backend="generic"):
    """Limbs a requantizer should use when its producer delivers beats at least ``gap``
    cycles apart, on a design whose multiplier back end is ``backend``: as many as the
    gap allows, limbs no narrower than :data:`REQUANT_MIN_LIMB_BITS` (one bit on
    ``ice40``, where the limb table is block RAM), then no more limbs than the limb
    width needs (no cycle issues a limb of zeros only)."""
    if gap <= 1:
        return 1
    width = requant_width(requant, channels)
    narrowest = 1 if backend == "ice40" else REQUANT_MIN_LIMB_BITS
    limbs = min(int(gap), _ceil_div(width, narrowest))
    return _ceil_div(width, _ceil_div(width, limbs))


def beat_bits(lanes):
    """Payload bits of a stream beat of ``lanes`` 8-bit values and ``last``."""
    return 8 * lanes + 1


def requantizer_inventory(requant, channels, lanes, acc_bits, backend="generic", limbs=1):
    """:class:`hwconv.hw.requant.Requantizer`: one ``acc x multiplier`` product per lane
    (a lane whose channels share one multiplier multiplies by a constant; otherwise by a
    table entry as wide as its largest one), a constant rounding shift, clamp and zero
    point.  With ``limbs > 1`` each lane multiplies by a ``w``-bit limb from a table of
    ``groups * limbs`` entries (block RAM where :func:`requant_table_block` says so) and
    adds the products into a running sum ``acc_bits + w + 1`` bits wide, keeping the
    bits it shifts out from the rounding point up and a sticky bit; the held input beat
    and the limb counter are registers too."""
    return _memo(requant, ("requant", channels, lanes, acc_bits, backend, limbs),
                 lambda: _requantizer_inventory(requant, channels, lanes, acc_bits,
                                                backend, limbs))


def _requantizer_inventory(requant, channels, lanes, acc_bits, backend, limbs):
    design = backend
    backend = requant_backend(backend)
    groups = channels // lanes
    mult, shift = requant_multipliers(requant, channels)
    width = requant_width(requant, channels)
    limb = requant_limb_bits(requant, channels, limbs)
    by_lane = np.array(mult, dtype=object).reshape(groups, lanes)   # channel g*lanes+l
    kinds = {}
    for lane in range(lanes):
        col = by_lane[:, lane].tolist()
        const = col[0] if len(set(col)) == 1 and limbs == 1 else None
        kinds[const] = kinds.get(const, 0) + 1
    muls = tuple(multiply(backend, acc_bits, limb, True, False, const=c, count=n)
                 for c, n in sorted(kinds.items(), key=str))
    round_bits = acc_bits + width + 1           # the value rounded, then its shift
    tables = kinds.get(None, 0)
    mems = ()
    if limbs == 1:
        mux = tables * limb
        ff = 0
    else:
        # held beat (accumulators, group, last, busy), limb counter, registered limb
        # table (block RAM or a mux of groups x limbs entries), running sum (its adder
        # and first-limb select), the product's bits kept below it and a sticky bit
        low, rshift = requant_round_point(shift, limb, limbs)
        run = acc_bits + limb + 1
        kept = max(0, limb * (limbs - 1) - low)
        round_bits = run + kept + (rshift > 0)
        kb = _clog2(limbs)
        if requant_table_block(mult, lanes, design, limbs):
            mems = (Storage(lanes * limb, groups << kb, rom=True, block=True),)
            mux = 0
            rest = 0
        else:
            # a table of whole multipliers by group, loaded at a take into the limb
            # register and a shift register of the other limbs
            mux = tables * limb * limbs * _clog2(groups) + lanes * limb * limbs
            rest = lanes * limb * (limbs - 1)
        ff = (lanes * (acc_bits + limb + run + kept + 1) + _clog2(groups) + 2
              + 2 * _clog2(limbs) + rest)
        mux += lanes * (run + kept)
    ff += lanes * (limb * (tables > 0 and limbs == 1) + 2 * 10 + 8) + \
        2 * requant_latency(backend, limbs)
    adder = lanes * (round_bits + 2 * 10 + 8)
    if limbs > 1:
        adder += lanes * (acc_bits + limb + 1) + _clog2(limbs)
    return Inventory(muls, mems, ff=ff, adder=adder, mux=mux,
                     mul_ff=lanes * _mul_ff(backend, acc_bits, limb + 1, acc_bits + limb + 1),
                     ctrl=5 + 5 * (limbs > 1), slice_bits=beat_bits(lanes))


def line_buffer_inventory(geo):
    """:class:`hwconv.hw.linebuffer.LineBuffer` over :class:`Window` ``geo``."""
    kh, kw, lanes, groups = geo.rows.kernel, geo.cols.kernel, geo.lanes, geo.groups
    mems = ()
    if kh > 1:
        mems = (Storage((kh - 1) * lanes * 8, geo.rows.dilation * geo.cols.size * groups,
                        block=True),)
    span = geo.cols.dilation * groups      # the older columns' delay line, in words
    column_bits = (kw - 1) * kh * lanes * 8
    chain_ff = 0
    if kw > 1 and span >= 3:
        mems += (Storage(column_bits, span),)
        chain_ff = column_bits + 2 * _clog2(span)       # read register, addresses
    elif kw > 1:
        chain_ff = span * column_bits
    window_bits = kh * kw * lanes * 8
    counters = 2 * (_clog2(geo.rows.size + geo.rows.kernel) + _clog2(geo.cols.size + kw)
                    + 2 * _clog2(max(groups, 2)) + 4)
    ff = chain_ff + window_bits + lanes * 8 + counters + \
        _clog2(geo.rows.dilation * geo.cols.size * groups + 1) * 2
    return Inventory((), mems, ff=ff, adder=counters * 2, mux=window_bits + lanes * 8,
                     ctrl=100)


def _const_pairs(weights, inputs):
    """Constant products of fully unrolled lanes: ``weights[p][t]`` multiplies input
    ``inputs[p][t]``; Yosys merges equal ``(input, weight)`` products, so this counts the
    distinct pairs per weight value: ``{weight: count}``."""
    w = np.asarray(weights, dtype=np.int64).ravel()
    i = np.broadcast_to(np.asarray(inputs, dtype=np.int64), np.shape(weights)).ravel()
    pairs = np.unique(np.stack([i, w], axis=1), axis=0)
    values, counts = np.unique(pairs[:, 1], return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def conv2d_inventory(op, in_shape, pe=1, simd=1, kfold=1, *, levels_per_stage=1,
                     backend="generic"):
    """:class:`hwconv.hw.conv.Conv2D` (line buffer, MAC array, requantizer)."""
    o, kh, kw, c = op.weight.shape
    geo = conv_window("Conv2D", op, in_shape, simd)
    g, f = c // simd, o // pe
    terms = kh * kw * simd
    acc = acc_bits_conv(op)
    pairs = None
    if g * f * kfold == 1:
        pairs = _memo(op, "pairs", lambda: _const_pairs(op.weight.reshape(o, terms),
                                                        [range(terms)] * o))
    inv = mac_array_inventory(op.in_q.dtype, pe, terms // kfold, terms // kfold,
                              g * f * kfold, f, op.weight_bits, acc, banked=g > 1,
                              levels_per_stage=levels_per_stage, backend=backend,
                              const_pairs=pairs, chunks=kfold)
    inv += requantizer_inventory(op.requant, o, pe, acc, backend,
                                 limbs=requant_limbs(op.requant, o, kfold, backend))
    if needs_window(geo):
        inv += line_buffer_inventory(geo)
    if window_slice(geo):          # two window beats of flip-flops
        bits = geo.rows.kernel * geo.cols.kernel * geo.lanes * 8 + 1
        inv += Inventory(ff=2 * bits, slice_bits=bits)
    return inv


def _activation_inventory(act, lanes):
    if act is None:
        return Inventory()
    if act.is_clamp:    # a clamp to constants becomes the registers' sync set/reset
        return Inventory(ff=lanes * 8 + 2, adder=lanes * 18)
    pm = int(act.pos.multiplier.ravel()[0])
    nm = int(act.neg.multiplier.ravel()[0])
    prod = 10 + max(pm, nm, 1).bit_length() + 1
    muls = (Multiply(10, pm.bit_length() + 1, const=pm, count=lanes),
            Multiply(10, nm.bit_length() + 1, const=nm, count=lanes))
    return Inventory(muls, (), ff=lanes * (prod + 9) + 6,
                     adder=lanes * (10 + 2 * prod + 24), mux=lanes * (prod + 16),
                     mul_ff=2 * lanes * prod)


def depthwise_pointwise_inventory(dw, dw_act, pw, pw_act, in_shape, dw_simd=1, pw_simd=1,
                                  pw_pe=1, dw_kfold=1, pw_kfold=1, *, levels_per_stage=1,
                                  backend="generic"):
    """:class:`hwconv.hw.dwpw.DepthwisePointwise`."""
    c = in_shape[2]
    cm, kh, kw, _ = dw.weight.shape
    o = pw.out_channels
    kk, mult = kh * kw, cm // c
    groups, dlanes = c // dw_simd, dw_simd * mult
    geo = conv_window("DepthwisePointwise", dw, in_shape, dw_simd)
    dacc = acc_bits_conv(dw)
    pairs = None
    if groups * dw_kfold == 1:
        pairs = _memo(dw, "pairs", lambda: _const_pairs(
            dw.weight.reshape(dlanes, kk),
            [[t * dw_simd + p // mult for t in range(kk)] for p in range(dlanes)]))
    dterms = kk // dw_kfold
    inv = mac_array_inventory(dw.in_q.dtype, dlanes, dterms,
                              dterms * (dw_simd if dw_kfold == 1 else dlanes),
                              groups * dw_kfold, groups, dw.weight_bits, dacc, banked=False,
                              levels_per_stage=levels_per_stage, backend=backend,
                              const_pairs=pairs, chunks=dw_kfold)
    inv += requantizer_inventory(dw.requant, cm, dlanes, dacc, backend,
                                 limbs=requant_limbs(dw.requant, cm, dw_kfold, backend))
    if needs_window(geo):
        inv += line_buffer_inventory(geo)
    if window_slice(geo):          # two window beats of flip-flops
        bits = geo.rows.kernel * geo.cols.kernel * geo.lanes * 8 + 1
        inv += Inventory(ff=2 * bits, slice_bits=bits)
    if dw_act is not None and not dw_act.is_clamp:
        inv += _activation_inventory(dw_act, dlanes)
    if pw_simd != dlanes:
        inv += lane_converter_inventory(dlanes, pw_simd)
    inv += Inventory(ff=2 * pw_simd * 8 + 3, mux=pw_simd * 8,      # the pointwise slice
                     slice_bits=beat_bits(pw_simd))
    mid_dtype = (dw_act.out_q if dw_act is not None else dw.out_q).dtype
    pacc = acc_bits_conv(pw, mid_dtype)
    g, f = cm // pw_simd, o // pw_pe
    pairs = None
    if g * f * pw_kfold == 1:
        pairs = _memo(pw, "pairs", lambda: _const_pairs(pw.weight.reshape(o, cm),
                                                        [range(pw_simd)] * o))
    pterms = pw_simd // pw_kfold
    inv += mac_array_inventory(mid_dtype, pw_pe, pterms, pterms, g * f * pw_kfold, f,
                               pw.weight_bits, pacc, banked=g > 1,
                               levels_per_stage=levels_per_stage, backend=backend,
                               const_pairs=pairs, chunks=pw_kfold)
    inv += requantizer_inventory(pw.requant, o, pw_pe, pacc, backend,
                                 limbs=requant_limbs(pw.requant, o, pw_kfold, backend))
    if pw_act is not None and not pw_act.is_clamp:
        inv += _activation_inventory(pw_act, pw_pe)
    return inv


def pool_activate_inventory(pool, act, in_shape, lanes=1, *, levels_per_stage=1):
    """:class:`hwconv.hw.pool.PoolActivate`: line buffer, comparator tree, activation."""
    inv = _activation_inventory(act, lanes)
    if pool is None:
        return inv
    geo = window("PoolActivate", in_shape, pool.kernel, pool.stride, pool.padding, 1, lanes)
    taps = geo.rows.kernel * geo.cols.kernel
    stages = max_tree_stages(taps, levels_per_stage)
    tree_regs = max_tree_register_bits(taps, 8, levels_per_stage)
    inv += line_buffer_inventory(geo)
    return inv + Inventory(ff=lanes * (8 + tree_regs) + 2 * stages,
                           adder=(taps - 1) * lanes * 9, mux=(taps - 1) * lanes * 8)


def dense_inventory(op, in_shape, pe=1, simd=1, *, levels_per_stage=1, backend="generic"):
    """:class:`hwconv.hw.dense.Dense`: weight ROM, input vector buffer, MAC lanes (each
    with its accumulator and one more register: the start register with credits, the
    output register without)."""
    o, n = op.weight.shape
    ni, no = n // simd, o // pe
    acc = acc_bits_dense(op)
    a_bits, a_signed = _operand(op.in_q.dtype)
    pbits = (_elem_value_bound(op.in_q.dtype) << (op.weight_bits - 1)).bit_length() + 1
    mems = [Storage(pe * simd * op.weight_bits, no * ni, rom=True)]
    if no > 1:
        mems.append(Storage(simd * 8, ni))
    adders, tree_regs = _tree_bits(simd, pbits, levels_per_stage)
    ctrl = 5 + _clog2(max(no, 2))
    ff = (WEIGHT_ROM_LATENCY * simd * 8 + pe * simd * op.weight_bits + pe * tree_regs
          + 2 * pe * acc + ctrl * (WEIGHT_ROM_LATENCY + mul_latency(backend))
          + 2 * _clog2(max(ni, 2)) + 2 * _clog2(max(no * ni, 2)))
    inv = Inventory((multiply(backend, a_bits, op.weight_bits, a_signed, True,
                              count=pe * simd),),
                    tuple(mems), ff=ff, adder=pe * (adders + acc),
                    mux=simd * 8 * (no > 1) + pe * acc * (no > 1),
                    mul_ff=pe * simd * _mul_ff(backend, a_bits, op.weight_bits, pbits),
                    slice_bits=beat_bits(simd))     # the input slice
    return inv + requantizer_inventory(op.requant, o, pe, acc, backend,
                                       limbs=requant_limbs(op.requant, o, ni, backend))


def global_avg_pool_inventory(op, in_shape, lanes=1, *, backend="generic"):
    """:class:`hwconv.hw.gap.GlobalAvgPool`: a bank of ``C`` accumulators."""
    h, w, c = in_shape
    acc = acc_bits_gap(op, in_shape)
    groups = c // lanes
    inv = Inventory(ff=(groups + 1) * lanes * acc + _clog2(h * w + 1) + _clog2(groups + 1),
                    adder=lanes * acc, mux=lanes * acc)
    return inv + requantizer_inventory(op.requant, c, lanes, acc, backend)


def add_inventory(op, in_shape, lanes=1, skip_depth=SKIP_FIFO_READ_LATENCY + 1):
    """:class:`hwconv.hw.add.Add`: skip FIFO, two constant rescales per lane."""
    signed_a = op.a_q.dtype == "int8"
    signed_b = op.b_q.dtype == "int8"
    muls = []
    for m_, sgn in ((op.mult_a, signed_a), (op.mult_b, signed_b)):
        muls.append(Multiply(8, int(m_).bit_length() + sgn, sgn, sgn, const=int(m_),
                             count=lanes))
    pa = (256 * int(op.mult_a)).bit_length() + 1
    pb = (256 * int(op.mult_b)).bit_length() + 1
    total = max(pa, pb) + 2
    inv = Inventory(tuple(muls), (), ff=lanes * (total + 8) + 6,
                    adder=lanes * (total + 24 + 10), mux=lanes * 16, mul_ff=lanes * (pa + pb))
    if skip_depth:
        inv += fifo_inventory(lanes * 8, skip_depth)
    return inv


def fifo_inventory(width, depth):
    """A ``SyncFIFOBuffered`` of ``depth`` beats of ``width`` bits (memory ``depth - 1``
    deep plus the output register)."""
    if depth < 2:
        return Inventory(ff=width + 1)
    return Inventory((), (Storage(width, depth - 1),),
                     ff=width + 3 * _clog2(depth + 1) + 2, adder=3 * _clog2(depth + 1),
                     ctrl=70)


def lane_converter_inventory(lanes_in, lanes_out, bits=8):
    """:class:`hwconv.hw.lanes.LaneConverter` between two lane counts."""
    lcm = math.lcm(lanes_in, lanes_out)
    if lcm == lanes_in == lanes_out:
        return Inventory()
    nin, nout = lcm // lanes_in, lcm // lanes_out
    return Inventory(ff=lcm * bits + 4 + _clog2(nin + 1) + _clog2(nout + 1),
                     mux=lanes_out * bits * (nout > 1) + lcm * bits * (nin > 1) // 2,
                     ctrl=10)
