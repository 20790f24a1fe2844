"""What a board is to hwconv, and the board-level gateware around a pipeline.

:class:`BoardCore` is the whole board design except the clock: UART receiver and
transmitter, the :class:`~boards.uart.FrameLoader` and the mapped
:class:`~hwconv.hw.pipeline.Pipeline`, in the ``sync`` domain with plain ``rx``/``tx``/LED
ports.  It is what the cocotb test simulates.  :class:`BoardTop` puts it on an
amaranth-boards platform: the clock (the oscillator, or a PLL to the clock the mapper was
given), the UART pins and two LEDs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth import Elaboratable, Module
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from hwconv.devices import device as lookup_device
from hwconv.errors import HwconvError
from hwconv.hw.pipeline import Pipeline

from . import DEFAULT_BAUD, DEFAULT_TIMEOUT_MS
from .pll import pll_domain
from .uart import FrameLoader, UartRx, UartTx, baud_divisor

__all__ = ["Board", "BoardCore", "BoardTop"]



@dataclass(frozen=True)
class Board:
    """An amaranth-boards platform plus what a pipeline needs on it.

    Attributes
    ----------
    name : str
        The CLI's name (``hwconv board build NAME ...``).
    title : str
    platform : type
        The amaranth-boards platform class.
    device : str
        The :mod:`hwconv.devices` part (the mapper's and the fit check's budget).
    osc_mhz : float
        The oscillator on the board.
    clock_resource : str
        Its platform resource.
    clock_mhz : float
        Default pipeline clock.
    pll : callable
        ``(f_in_mhz, f_out_mhz) -> settings`` (:mod:`boards.pll`).
    pll_on_pad : bool
        The PLL takes the package pin itself (iCE40 ``SB_PLL40_PAD``) rather than the
        input buffer's output.
    leds : tuple
        ``(busy, error)`` LED resources as ``(name, number)``.
    bitstream : str
        File suffix of the bitstream (``bin``, ``bit``).
    notes : tuple
        Lines for the report (how to program the board).
    backend : str
        Multiplier back end of the pipeline (:mod:`hwconv.hw.dsp`): the part's DSP cells
        instantiated with their registers, or ``generic``.
    skid : bool
        Register slices with a skid entry (the ready chains end at every stage), or
        plain pipeline registers where the clock is slow and logic cells are few
        (:class:`hwconv.hw.fifo.RegisterSlice`).
    """

    name: str
    title: str
    platform: type
    device: str
    osc_mhz: float
    clock_resource: str
    clock_mhz: float
    pll: object
    pll_on_pad: bool
    leds: tuple
    bitstream: str
    notes: tuple = field(default_factory=tuple)
    backend: str = "generic"
    skid: bool = True

    @property
    def family(self):
        return lookup_device(self.device).family

    def clock(self, mhz=None):
        """``(pll_settings or None, achieved_mhz)`` for a pipeline clock of ``mhz``."""
        mhz = self.clock_mhz if mhz is None else float(mhz)
        if mhz <= 0:
            raise HwconvError(f"clock must be positive, not {mhz:g} MHz")
        if abs(mhz - self.osc_mhz) < 1e-9:
            return None, self.osc_mhz
        settings = self.pll(self.osc_mhz, mhz)
        if abs(settings.f_out / mhz - 1) > 0.01:
            raise HwconvError(f"{self.title}: the PLL cannot make {mhz:g} MHz from the "
                              f"{self.osc_mhz:g} MHz oscillator (closest {settings.f_out:g} "
                              f"MHz); ask for that clock")
        return settings, settings.f_out


class BoardCore(wiring.Component):
    """UART + frame loader + pipeline: the board design without its clock.

    Parameters
    ----------
    compiled : hwconv.compiler.Compiled
    divisor : int
        Clock cycles per UART bit (:func:`boards.uart.baud_divisor`).
    timeout : int
        Idle cycles that end a request cut short.
    fingerprint : int
        The model identity answered to an identify request (:func:`boards.protocol.
        fingerprint`).

    Attributes
    ----------
    rx : In(1)
        UART line from the host (idle high).
    tx : Out(1)
        UART line to the host.
    busy, error : Out(1)
        LED drivers (see :class:`~boards.uart.FrameLoader`).
    """

    def __init__(self, compiled, *, divisor, timeout, fingerprint=0):
        q = compiled.qnet
        self._pipeline = Pipeline(compiled.plan, q.qparams, q.input_name,
                                  in_lanes=compiled.in_lanes, out_lanes=compiled.out_lanes)
        last = compiled.plan.stages[-1].output
        self._loader = FrameLoader(q.input_shape, q.output_shape, q.qparams[q.input_name].dtype,
                                   q.qparams[last].dtype, in_lanes=compiled.in_lanes,
                                   out_lanes=compiled.out_lanes, timeout=timeout,
                                   fingerprint=fingerprint)
        self._divisor = divisor
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1),
                          "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = rx = UartRx(self._divisor)
        m.submodules.uart_tx = tx = UartTx(self._divisor)
        m.submodules.loader = loader = self._loader
        m.submodules.pipeline = pipe = self._pipeline
        wiring.connect(m, rx.o, loader.rx)
        wiring.connect(m, loader.tx, tx.i)
        wiring.connect(m, loader.to_core, pipe.i)
        wiring.connect(m, pipe.o, loader.from_core)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx), self.busy.eq(loader.busy),
                     self.error.eq(loader.error)]
        return m


class BoardTop(Elaboratable):
    """:class:`BoardCore` on ``board``'s platform: clock, UART pins, LEDs.

    Parameters
    ----------
    board : Board
    compiled : hwconv.compiler.Compiled
    clock_mhz : float, optional
        Pipeline clock (default the board's); the oscillator itself or a PLL output.
    baud : int
    timeout_ms : float
    fingerprint : int
    """

    def __init__(self, board, compiled, *, clock_mhz=None, baud=DEFAULT_BAUD,
                 timeout_ms=DEFAULT_TIMEOUT_MS, fingerprint=0):
        self.board = board
        self.pll, self.clock_mhz = board.clock(clock_mhz)
        hz = self.clock_mhz * 1e6
        self.divisor = baud_divisor(hz, baud)
        self.baud = baud
        if timeout_ms <= 0:
            raise HwconvError(f"timeout must be positive, not {timeout_ms:g} ms")
        self.core = BoardCore(compiled, divisor=self.divisor,
                              timeout=max(1, round(timeout_ms * 1e-3 * hz)),
                              fingerprint=fingerprint)

    def elaborate(self, platform):
        m = Module()
        board = self.board
        if self.pll is not None:        # else the platform's oscillator domain
            pin = platform.request(board.clock_resource, 0, dir="-")
            if board.pll_on_pad:
                clk_in = pin.io
            else:
                m.submodules.clk_buf = clk_buf = io.Buffer("i", pin)
                clk_in = clk_buf.i
            pll_domain(m, platform, self.pll, clk_in)
        m.submodules.core = core = self.core
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx_buf.i), tx_buf.o.eq(core.tx)]
        for (name, number), signal in zip(board.leds, (core.busy, core.error)):
            m.submodules[f"led_{name}_{number}"] = led = \
                io.Buffer("o", platform.request(name, number, dir="-"))
            m.d.comb += led.o.eq(signal)
        return m
