"""cocotb test of a board design through its UART: bytes in, bytes out.

A UART model (8N1, ``divisor`` clock cycles per bit) sends each request of the
configuration to the design's ``rx`` line while a second model decodes everything the
design puts on ``tx``.  After each request the test waits for the reply the
configuration expects (or for a timeout), then leaves the line idle for ``gap_cycles``
before the next request; every reply byte is compared with the expected bytes, and the
LEDs are checked where the configuration says what they must show.

The configuration is JSON named by the plusarg ``+hwconv_board_config=PATH``::

    {"clock": "clk", "reset": "rst", "rx": "rx", "tx": "tx",
     "leds": {"busy": "busy", "error": "error"},
     "divisor": 8, "gap_cycles": 400, "reply_timeout_cycles": 40000,
     "transactions": [{"name": "...", "send": "a55a...", "expect": "a55a...",
                       "error_led": 0}, ...],
     "results": "results.json"}

Results (pass/fail, errors, each reply's bytes and the cycle it ended) go to the
``results`` file.  This module imports only cocotb and the standard library, so the
folder holding it reruns with nothing but cocotb and a simulator.
"""

from __future__ import annotations

import json
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, RisingEdge, Timer, with_timeout

CLOCK_NS = 10


class UartLine:
    """Both ends of the host's UART: ``send`` drives ``rx``, a monitor decodes ``tx``."""

    def __init__(self, rx, tx, divisor):
        self.rx, self.tx = rx, tx
        self.bit_ns = divisor * CLOCK_NS
        self.received = []          # (byte, end time in ns)
        self._task = None

    def start(self):
        self.rx.value = 1
        self._task = cocotb.start_soon(self._monitor())

    def stop(self):
        if self._task is not None:
            self._task.cancel()

    async def send(self, data):
        for byte in data:
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                self.rx.value = bit
                await Timer(self.bit_ns, unit="ns")

    async def _monitor(self):
        while True:
            await FallingEdge(self.tx)
            await Timer(self.bit_ns // 2, unit="ns")
            if int(self.tx.value) != 0:          # a glitch, not a start bit
                continue
            byte = 0
            for i in range(8):
                await Timer(self.bit_ns, unit="ns")
                byte |= int(self.tx.value) << i
            await Timer(self.bit_ns, unit="ns")
            if int(self.tx.value) != 1:
                raise AssertionError(f"framing error on tx: stop bit low after byte "
                                     f"0x{byte:02x}")
            self.received.append((byte, get_sim_time(unit="ns")))


@cocotb.test()
async def uart_frames(dut):
    path = Path(str(cocotb.plusargs["hwconv_board_config"]))
    cfg = json.loads(path.read_text())
    results = path.parent / cfg["results"]
    clk = getattr(dut, cfg["clock"])
    Clock(clk, CLOCK_NS, unit="ns").start(start_high=False)
    rst = getattr(dut, cfg["reset"]) if cfg.get("reset") else None
    line = UartLine(getattr(dut, cfg["rx"]), getattr(dut, cfg["tx"]), cfg["divisor"])
    leds = {k: getattr(dut, v) for k, v in cfg.get("leds", {}).items()}
    line.start()
    if rst is not None:
        rst.value = 1
        for _ in range(4):
            await RisingEdge(clk)
        rst.value = 0
    for _ in range(4):
        await RisingEdge(clk)
    t0 = get_sim_time(unit="ns")

    errors, replies = [], []
    timeout_ns = cfg["reply_timeout_cycles"] * CLOCK_NS
    for k, tr in enumerate(cfg["transactions"]):
        name = tr.get("name", f"transaction {k}")
        start = len(line.received)
        await line.send(bytes.fromhex(tr["send"]))
        want = bytes.fromhex(tr["expect"])
        n_want = len(want)

        async def reply_done(start=start, n=n_want):
            while len(line.received) - start < n:
                await Timer(line.bit_ns, unit="ns")
        try:
            await with_timeout(reply_done(), timeout_ns, "ns")
        except cocotb.triggers.SimTimeoutError:
            pass
        await Timer(cfg["gap_cycles"] * CLOCK_NS, unit="ns")
        got = bytes(b for b, _ in line.received[start:])
        end = line.received[-1][1] if len(line.received) > start else None
        replies.append({"name": name, "reply": got.hex(),
                        "end_cycle": None if end is None else int((end - t0) // CLOCK_NS)})
        if got != want:
            first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                         min(len(got), len(want)))
            errors.append(f"{name}: reply {got.hex() or '(nothing)'} != expected "
                          f"{want.hex()} (first difference at byte {first}, "
                          f"{len(got)} of {len(want)} bytes received)")
        for led, value in (("error", tr.get("error_led")), ("busy", 0)):
            if value is not None and led in leds and int(leds[led].value) != value:
                errors.append(f"{name}: {led} LED is {int(leds[led].value)}, expected "
                              f"{value}")
    line.stop()
    cycles = int((get_sim_time(unit="ns") - t0) // CLOCK_NS)
    results.write_text(json.dumps({"passed": not errors, "errors": errors,
                                   "replies": replies, "cycles": cycles}, indent=1))
    assert not errors, f"{len(errors)} error(s); first: {errors[0]}"

