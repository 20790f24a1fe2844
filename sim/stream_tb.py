"""Generic cocotb testbench for a design with valid/ready stream ports.

Everything design-specific comes from a JSON configuration named by the plusarg
``+hwconv_config=PATH`` (written by :mod:`sim.runner`): clock and reset names, and for each
stream port its ``valid``/``ready`` signals and the signals that carry slices of its
payload word (one signal for an Amaranth port ``i__payload``; ``tdata`` and ``tlast``
for AXI4-Stream).  Input ports replay a stimulus file with random ``valid`` gaps; output
ports apply random ``ready`` stalls and a scoreboard compares every beat with the
expected file, in order; after the last expected beat the outputs are watched for a
while longer so an extra (duplicated) beat fails the test too.

Files are hex words, one per line.  Results (pass/fail, errors, the cycle of every beat)
go to the configuration's ``results`` file.

This module imports only cocotb and the standard library, so a build folder holding it,
its configuration and vectors reruns the proof with nothing but cocotb and a simulator.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import RisingEdge

CLOCK_NS = 10


def read_words(path):
    return [int(line, 16) for line in Path(path).read_text().split()]


def describe(word, fmt):
    """``[v0, v1, ...] last=L`` for a beat word of ``fmt`` (lanes, elem_bits, signed)."""
    if not fmt:
        return f"0x{word:x}"
    bits, lanes = fmt["elem_bits"], fmt["lanes"]
    vals = []
    for k in range(lanes):
        v = (word >> (k * bits)) & ((1 << bits) - 1)
        if fmt["signed"] and v >> (bits - 1):
            v -= 1 << bits
        vals.append(v)
    return f"{vals} last={(word >> (lanes * bits)) & 1}"


class StreamPort:
    """Handles of one stream port: valid, ready and payload slices."""

    def __init__(self, dut, spec):
        self.name = spec["name"]
        self.valid = getattr(dut, spec["valid"])
        self.ready = getattr(dut, spec["ready"])
        self.fields = [(getattr(dut, sig), lsb, width) for sig, lsb, width in spec["fields"]]

    def write(self, word):
        for sig, lsb, width in self.fields:
            sig.value = (word >> lsb) & ((1 << width) - 1)

    def read(self):
        """The payload word; raises ValueError if any bit is X/Z."""
        word = 0
        for sig, lsb, _ in self.fields:
            v = sig.value
            word |= (v.to_unsigned() if hasattr(v, "to_unsigned") else int(v)) << lsb
        return word


class Clocked:
    """The cycle count since reset release, from simulation time."""

    def __init__(self, clk):
        self.clk = clk
        self.origin = 0

    def now(self):
        return int(get_sim_time("ns") // CLOCK_NS) - self.origin


class StreamDriver:
    """Offers ``words`` on an input port, each after a random number of idle cycles."""

    def __init__(self, port, clock, words, valid_prob, rng):
        self.port, self.clock, self.words = port, clock, words
        self.valid_prob, self.rng = valid_prob, rng
        self.cycles = []
        self._task = None

    def start(self):
        self.port.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.port.valid.value = 0

    @property
    def done(self):
        return len(self.cycles) == len(self.words)

    async def _run(self):
        clk = self.clock.clk
        for word in self.words:
            while self.rng.random() >= self.valid_prob:
                self.port.valid.value = 0
                await RisingEdge(clk)
            self.port.write(word)
            self.port.valid.value = 1
            await RisingEdge(clk)
            while not self.port.ready.value:        # value at the edge
                await RisingEdge(clk)
            self.cycles.append(self.clock.now())
        self.port.valid.value = 0


class StreamMonitor:
    """Takes beats from an output port under random ``ready`` and hands them on."""

    def __init__(self, port, clock, ready_prob, rng, callback):
        self.port, self.clock = port, clock
        self.ready_prob, self.rng = ready_prob, rng
        self.callback = callback
        self.cycles = []
        self._task = None

    def start(self):
        self.port.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def always_ready(self):
        self.ready_prob = 1.0

    async def _run(self):
        clk = self.clock.clk
        while True:
            ready = self.rng.random() < self.ready_prob
            self.port.ready.value = int(ready)
            await RisingEdge(clk)
            if ready and self.port.valid.value:
                self.cycles.append(self.clock.now())
                try:
                    word = self.port.read()
                except ValueError:
                    word = None
                self.callback(self.port.name, word)


class Scoreboard:
    """In-order comparison of each output port's beats with its expected words."""

    def __init__(self, expected, formats, max_errors=20):
        self.expected = expected
        self.formats = formats
        self.received = {name: 0 for name in expected}
        self.words = {name: [] for name in expected}
        self.errors = []
        self.max_errors = max_errors

    def _error(self, msg):
        if len(self.errors) < self.max_errors:
            self.errors.append(msg)
            cocotb.log.error(msg)

    def check(self, name, word):
        k = self.received[name]
        self.received[name] += 1
        self.words[name].append(None if word is None else f"{word:x}")
        exp = self.expected[name]
        fmt = self.formats.get(name)
        if k >= len(exp):
            self._error(f"{name}: extra beat {k} (expected {len(exp)}): "
                        f"{'X/Z' if word is None else describe(word, fmt)}")
        elif word is None:
            self._error(f"{name}: beat {k} has X/Z bits")
        elif word != exp[k]:
            self._error(f"{name}: beat {k}: got {describe(word, fmt)}, "
                        f"expected {describe(exp[k], fmt)}")

    def complete(self):
        return all(self.received[n] >= len(e) for n, e in self.expected.items())

    def final_check(self):
        for name, exp in self.expected.items():
            if self.received[name] < len(exp):
                self._error(f"{name}: got {self.received[name]} of {len(exp)} beats")


class StreamTB:
    """Drivers, monitors and scoreboard for one configuration, with reset/start/stop."""

    def __init__(self, dut, cfg, base):
        self.dut, self.cfg = dut, cfg
        self.clock = Clocked(getattr(dut, cfg["clock"]))
        self.reset = getattr(dut, cfg["reset"]) if cfg.get("reset") else None
        rng = random.Random(cfg.get("seed", 0))
        self.drivers = [
            StreamDriver(StreamPort(dut, p), self.clock, read_words(base / p["stimulus"]),
                         p.get("valid_prob", 1.0), random.Random(rng.random()))
            for p in cfg["inputs"]]
        expected = {p["name"]: read_words(base / p["expected"]) for p in cfg["outputs"]}
        formats = {p["name"]: p.get("format") for p in cfg["outputs"]}
        self.scoreboard = Scoreboard(expected, formats)
        self.monitors = [
            StreamMonitor(StreamPort(dut, p), self.clock, p.get("ready_prob", 1.0),
                          random.Random(rng.random()), self.scoreboard.check)
            for p in cfg["outputs"]]

    async def do_reset(self, cycles=4):
        for d in self.drivers:
            d.port.valid.value = 0
        for mon in self.monitors:
            mon.port.ready.value = 0
        if self.reset is not None:
            active = int(self.cfg.get("reset_active", 1))
            self.reset.value = active
            for _ in range(cycles):
                await RisingEdge(self.clock.clk)
            self.reset.value = 1 - active
        await RisingEdge(self.clock.clk)
        self.clock.origin = int(get_sim_time("ns") // CLOCK_NS)

    def start(self):
        for mon in self.monitors:
            mon.start()
        for d in self.drivers:
            d.start()

    def stop(self):
        for d in self.drivers:
            d.stop()
        for mon in self.monitors:
            mon.stop()

    def results(self, passed, cycles):
        return {
            "passed": passed,
            "cycles": cycles,
            "errors": self.scoreboard.errors,
            "inputs": {d.port.name: d.cycles for d in self.drivers},
            "outputs": {m.port.name: m.cycles for m in self.monitors},
            "received": self.scoreboard.words,
        }


@cocotb.test()
async def stream_test(dut):
    """Replay the stimulus, check every output beat, then check nothing more comes."""
    path = Path(str(cocotb.plusargs["hwconv_config"]))
    cfg = json.loads(path.read_text())
    tb = StreamTB(dut, cfg, path.parent)
    Clock(getattr(dut, cfg["clock"]), CLOCK_NS, unit="ns").start(start_high=False)
    await tb.do_reset()
    tb.start()
    timeout = int(cfg.get("timeout_cycles", 100_000))
    clk = tb.clock.clk
    while not (tb.scoreboard.complete() and all(d.done for d in tb.drivers)):
        await RisingEdge(clk)
        if tb.clock.now() > timeout:
            break
    cycles = tb.clock.now()
    for mon in tb.monitors:
        mon.always_ready()
    for _ in range(int(cfg.get("drain_cycles", 32))):
        await RisingEdge(clk)
    tb.stop()
    tb.scoreboard.final_check()
    errors = tb.scoreboard.errors
    if cycles > timeout:
        errors.insert(0, f"timeout after {timeout} cycles: inputs sent "
                      f"{ {d.port.name: len(d.cycles) for d in tb.drivers} }, outputs "
                      f"{tb.scoreboard.received}")
    (path.parent / cfg.get("results", "results.json")).write_text(
        json.dumps(tb.results(not errors, cycles)))
    assert not errors, f"{len(errors)} error(s), first: {errors[0]}"
