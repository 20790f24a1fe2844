"""ULX3S: Lattice ECP5 LFE5U-85F, 25 MHz oscillator, FTDI UART, eight LEDs.

The pipeline runs from an EHXPLLL (``ecppll``'s settings) at 50 MHz by default, its
multiplies in MULT18X18D instantiated with their registers (the ``ecp5`` back end); LED 0
is busy, LED 1 error.  Program with ``openFPGALoader -b ulx3s hwconv_board.bit`` (add
``-f`` to write the flash).
"""

from amaranth_boards.ulx3s import ULX3S_85F_Platform

from .pll import ecp5_pll
from .top import Board

__all__ = ["BOARD"]

BOARD = Board(
    name="ulx3s", title="ULX3S (LFE5U-85F)", platform=ULX3S_85F_Platform,
    device="ecp5-85f", osc_mhz=25.0, clock_resource="clk25", clock_mhz=50.0,
    pll=ecp5_pll, pll_on_pad=False, leds=(("led", 0), ("led", 1)), bitstream="bit", backend="ecp5",
    notes=("program (SRAM): openFPGALoader -b ulx3s hwconv_board.bit",
           "program (flash): openFPGALoader -b ulx3s -f hwconv_board.bit",
           "LED 0: busy, LED 1: last frame rejected"))
