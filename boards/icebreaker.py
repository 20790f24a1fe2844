"""iCEBreaker: Lattice iCE40UP5K, 12 MHz oscillator, FTDI UART (second channel), red and
green LEDs.

The pipeline runs from the oscillator at 12 MHz by default, its MAC products in the
UP5K's eight SB_MAC16 (the ``ice40`` back end: cells instantiated and configured
explicitly, never Yosys's ``-dsp`` inference, see DESIGN.md) and its requantizers in
fabric, their limb tables in block RAM; register slices are plain registers (at
12-30 MHz the ready chains they would cut cost nothing, their skid entries a tenth of
the logic cells).  Another clock uses SB_PLL40_PAD (``icepll``'s settings, 16 MHz and
up).  Green LED: busy, red LED: error.  Program with ``iceprog hwconv_board.bin`` or
``openFPGALoader -b ice40_generic hwconv_board.bin``.
"""

from amaranth_boards.icebreaker import ICEBreakerPlatform

from .pll import ice40_pll
from .top import Board

__all__ = ["BOARD"]

BOARD = Board(
    name="icebreaker", title="iCEBreaker (iCE40UP5K)", platform=ICEBreakerPlatform,
    device="ice40-up5k", osc_mhz=12.0, clock_resource="clk12", clock_mhz=12.0,
    pll=ice40_pll, pll_on_pad=True, leds=(("led", 1), ("led", 0)), bitstream="bin",
    notes=("program: iceprog hwconv_board.bin",
           "green LED: busy, red LED: last frame rejected"),
    backend="ice40", skid=False)
