"""Amaranth-simulator stream driver and monitor for stage tests and benchmarks.

:func:`run_streams` feeds beats into a component's input streams with random ``valid``
gaps, drains its output streams with random ``ready`` stalls, and returns what came out
plus cycle counts.  Producers and consumers are separate testbenches, as in glasgow's
``test_stream.py``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from amaranth import ClockDomain, Module
from amaranth.sim import Simulator

from .dsp import primitive_models

__all__ = ["StreamRun", "run_streams"]


@dataclass
class StreamRun:
    outputs: dict = field(default_factory=dict)
    #: cycle (from reset) at which each output beat was accepted, per port
    out_cycles: dict = field(default_factory=dict)
    #: cycle at which each input beat was accepted, per port
    in_cycles: dict = field(default_factory=dict)
    cycles: int = 0


def _plain(value):
    """A sampled payload field as Python ints (nested lists for nested arrays)."""
    try:
        return int(value)
    except TypeError:
        return [_plain(v) for v in value]


def run_streams(dut, inputs, outputs, *, valid_prob=1.0, ready_prob=1.0, seed=0,
                max_cycles=200_000, vcd=None, start=None, idle=0):
    """Simulate ``dut`` with stream traffic.

    Parameters
    ----------
    dut : wiring.Component
    inputs : dict[str, list]
        Input port name -> beats to send in order: ``(values, last)`` for the
        :mod:`~hwconv.hw.stream` beat layout, or a payload dict for any other layout.
    outputs : dict[str, int]
        Output port name -> number of beats to collect.
    valid_prob, ready_prob : float or dict[str, float]
        Probability that a producer offers a beat / a consumer accepts one, per cycle;
        a dict gives it per port (ports not named get 1.0).
    seed : int
    max_cycles : int
        The run fails (``TimeoutError``) if the outputs are not complete by then.
    vcd : str or None
        Write a waveform there.
    start : dict[str, int] or None
        Input port name -> cycle before which that producer offers nothing (a path that
        delivers its first beat late).
    idle : int or dict[str, int]
        Cycles a producer offers nothing after each accepted beat (a producer that
        delivers a beat at most every ``idle + 1`` cycles), per port as a dict.

    Returns
    -------
    StreamRun
    """
    rng = random.Random(seed)
    start = start or {}
    run = StreamRun()

    def prob(p, name):
        return p.get(name, 1.0) if isinstance(p, dict) else p
    done = {name: False for name in outputs}
    cycle = [0]

    def make_producer(name, beats):
        port = getattr(dut, name)
        prng = random.Random(rng.random())
        p_valid = prob(valid_prob, name)
        gap = idle.get(name, 0) if isinstance(idle, dict) else idle
        run.in_cycles[name] = []

        async def producer(ctx):
            while cycle[0] < start.get(name, 0):
                await ctx.tick()
            for beat in beats:
                while prng.random() >= p_valid:
                    await ctx.tick()
                if not isinstance(beat, dict):
                    beat = {"data": beat[0], "last": beat[1]}
                ctx.set(port.payload, beat)
                ctx.set(port.valid, 1)
                # not tick().until(): its generator warns if the run ends while it waits
                while not (await ctx.tick().sample(port.ready))[-1]:
                    pass
                run.in_cycles[name].append(cycle[0])
                ctx.set(port.valid, 0)
                for _ in range(gap):
                    await ctx.tick()
        return producer

    def make_consumer(name, count):
        port = getattr(dut, name)
        prng = random.Random(rng.random())
        p_ready = prob(ready_prob, name)
        got = run.outputs[name] = []
        run.out_cycles[name] = []

        async def consumer(ctx):
            while len(got) < count:
                ready = prng.random() < p_ready
                ctx.set(port.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
                if ready and valid:
                    got.append((_plain(payload.data), int(payload.last)))
                    run.out_cycles[name].append(cycle[0])
            ctx.set(port.ready, 0)
            done[name] = True
        return consumer

    async def clock_counter(ctx):
        while not all(done.values()):
            await ctx.tick()
            cycle[0] += 1
            if cycle[0] > max_cycles:
                raise TimeoutError(f"outputs incomplete after {max_cycles} cycles: "
                                   f"{ {k: len(v) for k, v in run.outputs.items()} }")
        run.cycles = cycle[0]

    top = Module()
    top.domains.sync = ClockDomain()     # present even for purely combinational stages
    top.submodules.dut = dut
    with primitive_models():        # vendor DSP cells as their behavioural registers
        sim = Simulator(top)
    sim.add_clock(1e-8)
    for name, beats in inputs.items():
        sim.add_testbench(make_producer(name, beats), background=True)
    for name, count in outputs.items():
        sim.add_testbench(make_consumer(name, count))
    sim.add_testbench(clock_counter)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return run
