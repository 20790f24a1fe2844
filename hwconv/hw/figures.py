"""StageFigures: the predicted figures every stage exposes, read from its cost.

A stage computes its :class:`hwconv.cost.StageCost` once at construction (from the same
function the mapper plans with) and stores it as ``self._cost``; these properties make
the figures readable on the stage itself, so a test can check the hardware against the
very numbers the mapper used.
"""

from __future__ import annotations

__all__ = ["StageFigures"]


def _figure(name, doc):
    prop = property(lambda self: getattr(self._cost, name))
    prop.__doc__ = doc
    return prop


class StageFigures:
    """Mixin for stages holding their :class:`hwconv.cost.StageCost` in ``_cost``."""

    cost = property(lambda self: self._cost,
                    doc="The :class:`hwconv.cost.StageCost` the figures come from.")
    cycles_per_frame = _figure("cycles_per_frame", "Cycles per frame in steady state.")
    latency = _figure("latency", "Clock edges from a frame's first input beat to its "
                                 "first output beat, no stalls.")
    multipliers = _figure("multipliers", "Multipliers of the MAC arrays.")
    requant_multipliers = _figure("requant_multipliers",
                                  "Multipliers of the requantizers / rescalers.")
    macs_per_frame = _figure("macs_per_frame", "Multiply-accumulates per frame.")
    linebuffer_words = _figure("linebuffer_words", "Line-buffer storage in values.")
    weight_words = _figure("weight_words", "Weight ROM storage in values.")
    buffer_words = _figure("buffer_words", "Other buffer storage in values.")
