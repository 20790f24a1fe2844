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

from dataclasses import dataclass

from .errors import HwconvError
from .ir import normalize_padding, pair

__all__ = ["StageCost", "Axis", "Window", "window", "line_buffer", "conv2d",
           "pool_activate", "depthwise_pointwise", "REQUANT_LATENCY", "ACTIVATE_LATENCY"]

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


# -- stages -----------------------------------------------------------------------------

#: Register stages of the line buffer from an input beat to its window.
LINEBUFFER_STAGES = 2


def line_buffer(geo):
    """:class:`hwconv.hw.linebuffer.LineBuffer` over :class:`Window` ``geo``.

    One slot per cycle: ``H * W * C / lanes`` cycles per frame (the window count never
    exceeds the input beat count, padding being smaller than the kernel span).
    """
    return StageCost(cycles_per_frame=geo.in_beats, multipliers=0,
                     latency=geo.first_beat + LINEBUFFER_STAGES,
                     linebuffer_words=geo.storage_words)
