"""Errors hwconv raises for bad input.

Every error is one line that names *what* is wrong (the layer, node, file or parameter)
and *why*, so that a user of the CLI never sees a NumPy traceback from deep inside.
"""


class HwconvError(ValueError):
    """Base class: a clear, one-line complaint about user input."""


class LayerError(HwconvError):
    """A layer's parameters or shapes are impossible."""

    def __init__(self, layer, kind, reason):
        self.layer = layer
        self.kind = kind
        self.reason = reason
        super().__init__(f"layer {layer!r} ({kind}): {reason}")


class UnsupportedError(HwconvError):
    """A valid construct that hwconv does not (yet) implement."""


class FitError(HwconvError):
    """A design that does not fit the given budget or device."""
