"""PLL settings (the searches of Project IceStorm's ``icepll`` and Project Trellis's
``ecppll``) and the Amaranth instances of the iCE40 and ECP5 PLL primitives.

Settings are computed in Python, so a build needs no extra tool; ``tests/test_boards.py``
checks them against the ``yowasp-icepll`` / ``yowasp-ecppll`` programs.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import ClockDomain, ClockSignal, Instance, Signal
from amaranth.lib.cdc import ResetSynchronizer

from hwconv.errors import HwconvError

__all__ = ["Ice40Pll", "Ecp5Pll", "ice40_pll", "ecp5_pll", "pll_domain"]


@dataclass(frozen=True)
class Ice40Pll:
    """SB_PLL40 settings, simple feedback: ``f_out = f_in * (DIVF+1) / ((DIVR+1) * 2**DIVQ)``."""

    f_in: float
    f_out: float
    divr: int
    divf: int
    divq: int
    filter_range: int

    def params(self):
        return {"p_FEEDBACK_PATH": "SIMPLE", "p_DIVR": self.divr, "p_DIVF": self.divf,
                "p_DIVQ": self.divq, "p_FILTER_RANGE": self.filter_range}


def ice40_pll(f_in_mhz, f_out_mhz):
    """The closest iCE40 PLL output to ``f_out_mhz`` (``icepll``'s search)."""
    if not 10 <= f_in_mhz <= 133:
        raise HwconvError(f"iCE40 PLL input must be 10..133 MHz, not {f_in_mhz:g}")
    if not 16 <= f_out_mhz <= 275:
        raise HwconvError(f"iCE40 PLL output must be 16..275 MHz, not {f_out_mhz:g} "
                          f"(use the {f_in_mhz:g} MHz oscillator directly, or a faster "
                          f"clock)")
    best = None
    for divr in range(16):
        pfd = f_in_mhz / (divr + 1)
        if not 10 <= pfd <= 133:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533 <= vco <= 1066:
                continue
            for divq in range(1, 7):
                out = vco / 2 ** divq
                if best is None or abs(out - f_out_mhz) < abs(best[0] - f_out_mhz):
                    best = (out, divr, divf, divq, pfd)
    out, divr, divf, divq, pfd = best
    fr = 1 + sum(pfd >= lim for lim in (17, 26, 44, 66, 101))
    return Ice40Pll(f_in_mhz, out, divr, divf, divq, fr)


@dataclass(frozen=True)
class Ecp5Pll:
    """EHXPLLL settings, CLKOP fed back:
    ``f_out = f_in * CLKFB_DIV / CLKI_DIV``, VCO ``= f_out * CLKOP_DIV``."""

    f_in: float
    f_out: float
    clki_div: int
    clkfb_div: int
    clkop_div: int
    f_vco: float

    def params(self):
        return {"p_PLLRST_ENA": "DISABLED", "p_INTFB_WAKE": "DISABLED",
                "p_STDBY_ENABLE": "DISABLED", "p_DPHASE_SOURCE": "DISABLED",
                "p_OUTDIVIDER_MUXA": "DIVA", "p_OUTDIVIDER_MUXB": "DIVB",
                "p_OUTDIVIDER_MUXC": "DIVC", "p_OUTDIVIDER_MUXD": "DIVD",
                "p_CLKI_DIV": self.clki_div, "p_CLKOP_ENABLE": "ENABLED",
                "p_CLKOP_DIV": self.clkop_div, "p_CLKOP_CPHASE": self.clkop_div - 1,
                "p_CLKOP_FPHASE": 0, "p_FEEDBK_PATH": "CLKOP", "p_CLKFB_DIV": self.clkfb_div,
                "a_FREQUENCY_PIN_CLKI": f"{self.f_in:g}",
                "a_FREQUENCY_PIN_CLKOP": f"{self.f_out:g}",
                "a_ICP_CURRENT": "12", "a_LPF_RESISTOR": "8",
                "a_MFG_ENABLE_FILTEROPAMP": "1", "a_MFG_GMCREF_SEL": "2"}


def ecp5_pll(f_in_mhz, f_out_mhz):
    """The closest ECP5 PLL output to ``f_out_mhz`` (``ecppll``'s search: least error,
    then the VCO closest to 600 MHz)."""
    if not 8 <= f_in_mhz <= 400:
        raise HwconvError(f"ECP5 PLL input must be 8..400 MHz, not {f_in_mhz:g}")
    if not 10 <= f_out_mhz <= 400:
        raise HwconvError(f"ECP5 PLL output must be 10..400 MHz, not {f_out_mhz:g}")
    best = None
    for clki in range(1, 129):
        pfd = f_in_mhz / clki
        if not 3.125 <= pfd <= 400:
            continue
        for fb in range(1, 81):
            for op in range(1, 129):
                vco = pfd * fb * op
                if not 400 <= vco <= 800:
                    continue
                out = vco / op
                key = (abs(out - f_out_mhz), abs(vco - 600))
                if best is None or key < best[0]:
                    best = (key, out, clki, fb, op, vco)
    _, out, clki, fb, op, vco = best
    return Ecp5Pll(f_in_mhz, out, clki, fb, op, vco)


def pll_domain(m, platform, settings, clk_in, domain="sync"):
    """Create ``domain`` clocked by a PLL from the input pin ``clk_in``.

    ``clk_in`` is the oscillator's input buffer (``.i``) on ECP5 and the raw pin port on
    iCE40 (``SB_PLL40_PAD`` takes the package pin).  The domain is held in reset until
    the PLL locks; its clock is constrained to the PLL's output frequency.
    """
    clk = Signal(name=f"{domain}_pll_clk")
    locked = Signal(name=f"{domain}_pll_locked")
    if isinstance(settings, Ice40Pll):
        m.submodules.pll = Instance(
            "SB_PLL40_PAD", **settings.params(), i_PACKAGEPIN=clk_in, i_RESETB=1,
            i_BYPASS=0, o_PLLOUTGLOBAL=clk, o_LOCK=locked)
    elif isinstance(settings, Ecp5Pll):
        m.submodules.pll = Instance(
            "EHXPLLL", **settings.params(), i_CLKI=clk_in, o_CLKOP=clk, i_CLKFB=clk,
            i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
            i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
    else:
        raise TypeError(f"PLL settings must be Ice40Pll or Ecp5Pll, not {settings!r}")
    m.domains += ClockDomain(domain)
    m.d.comb += ClockSignal(domain).eq(clk)
    m.submodules.reset_sync = ResetSynchronizer(~locked, domain=domain)
    platform.add_clock_constraint(clk, settings.f_out * 1e6)
    return clk
