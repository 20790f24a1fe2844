"""Board top-levels and bitstreams: a mapped pipeline behind a UART frame loader on
amaranth-boards platforms (ULX3S, iCEBreaker), built with the YoWASP toolchain.

See :mod:`boards.protocol` for the host protocol, :mod:`boards.build` for the bitstream
flow and :mod:`boards.top` for the gateware around the pipeline.
"""

from hwconv.errors import HwconvError

__all__ = ["BOARDS", "DEFAULT_BAUD", "DEFAULT_TIMEOUT_MS", "board"]

DEFAULT_BAUD = 115200
#: Idle time that ends a request cut short.  Long against the gaps a USB-serial adapter
#: leaves inside one write, short against a person waiting.
DEFAULT_TIMEOUT_MS = 20

#: CLI name -> module defining ``BOARD``; imported on demand (amaranth-boards is only
#: needed once a board is named).
BOARDS = {"ulx3s": "ulx3s", "icebreaker": "icebreaker"}


def board(name):
    """The :class:`~boards.top.Board` called ``name`` (case-insensitive)."""
    import importlib

    key = str(name).lower()
    if key not in BOARDS:
        raise HwconvError(f"unknown board {name!r}; known: {', '.join(BOARDS)}")
    return importlib.import_module(f"boards.{BOARDS[key]}").BOARD
