"""The Python API that mirrors the command line (the composition root, with
:mod:`hwconv.cli`): the only part of :mod:`hwconv` that reaches into :mod:`rtl_gen` and
:mod:`sim`.

Examples
--------
>>> import hwconv
>>> c = hwconv.compile("examples/digits/digits_qdq.onnx", max_multipliers=200)  # doctest: +SKIP
>>> hwconv.build(c, "out/digits")                                              # doctest: +SKIP
>>> result = hwconv.simulate(c, images[:8])                                     # doctest: +SKIP
>>> result.outputs            # float32, what the RTL computed, model layout     # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import golden
from .compiler import Compiled, compile, load
from .errors import HwconvError
from .hw.stream import beats_to_bits, bits_to_beats, elem_shape, encode_frame

__all__ = ["load", "compile", "build", "simulate", "verify_netlist", "explore", "SimReport"]

_BUILD_MAKEFILE = """\
# Rerun the cocotb proof of {top} with only cocotb and a simulator:
#   make sim              (Icarus Verilog)
#   make sim SIM=verilator
#   make sim WAVES=1      (FST waveform in tb/sim_build)
sim:
\t$(MAKE) -C tb
.PHONY: sim
"""


def _frames(compiled, x, n_frames, seed):
    """Integer NHWC frames: the quantized ``x``, or ``n_frames`` random valid codes."""
    q = compiled.qnet.input_q
    if x is not None:
        return compiled.model.quantize_input(x)
    rng = np.random.default_rng(seed)
    return rng.integers(q.qmin, q.qmax + 1, (n_frames,) + compiled.qnet.input_shape)


def _expected_cycles(compiled, n_frames):
    """Cycles the plan predicts for ``n_frames`` frames at full rate (one frame more for
    the pipeline's latency): a test bench's timeout allows for them."""
    plan = compiled.plan
    return (n_frames + 1) * plan.cycles_per_frame + plan.latency


def _words(frames, dtype, lanes):
    beats = [b for f in frames for b in encode_frame(f, lanes)]
    return beats_to_bits(beats, elem_shape(dtype), lanes)


def build(compiled, out_dir, *, inputs=None, n_frames=4, seed=0, valid_prob=0.8,
          ready_prob=0.8, verify_netlist=False, device="ecp5-85f", synth_options=None,
          simulator="icarus"):
    """Write a standalone build folder for ``compiled``.

    The folder holds the Verilog (``<top>.v``), ``files.f``, ``manifest.json``,
    ``pipeline.png``, a port ``README.md`` and ``tb/``: a cocotb test bench with stimulus
    (``inputs`` quantized, or ``n_frames`` random frames) and the golden model's expected
    outputs, rerun by ``make -C OUT sim``.  The folder appears whole or not at all.  A
    vendor multiplier back end's DSP cells simulate with their models, copied to
    ``cells/`` for the test bench (``files.f`` leaves them to the vendor flow).

    With ``verify_netlist``, the written folder is then synthesized with Yosys for
    ``device`` (``synth_options``: extra ``synth_<family>`` options, default hwconv's
    safe ones) and the netlist is simulated with the family's cell models (``simulator``)
    on the test bench's own stimulus, valid/ready pattern and seed, against the golden
    model; synthesis and simulation files go to ``OUT/netlist_<family>/``.  A mismatch
    raises :class:`sim.runner.SimulationError` naming the first differing output beat.

    Returns
    -------
    pathlib.Path
    """
    from rtl_gen.build import write_rtl
    from rtl_gen.emit import staged_dir, write_text
    from sim.runner import axis_stream, write_testbench

    from .hw.pipeline import pipeline_top

    if not isinstance(compiled, Compiled):
        raise HwconvError("build takes a compiled model (hwconv.compile)")
    manifest = compiled.manifest()
    top = pipeline_top(compiled)
    frames = _frames(compiled, inputs, n_frames, seed)
    expected = golden.run(compiled.qnet, frames)
    qin, qout = compiled.qnet.input_q, compiled.qnet.output_q
    li, lo = compiled.in_lanes, compiled.out_lanes
    s_axis = axis_stream("s_axis", 8 * li, lanes=li, signed=qin.signed)
    m_axis = axis_stream("m_axis", 8 * lo, lanes=lo, signed=qout.signed)
    with staged_dir(out_dir) as d:
        sources, hex_files = write_rtl(d, top, manifest)
        write_text(d / "Makefile", _BUILD_MAKEFILE.format(top=compiled.top))
        np.save(d / "tb_input.npy", frames)
        np.save(d / "tb_expected.npy", expected)
        cells, bench = [], {}
        if compiled.plan.backend != "generic":
            from rtl_gen.netlist import cell_bench_files

            models, bench = cell_bench_files(compiled.plan.backend, d / "cells")
            cells = [models]
        write_testbench(d / "tb", [d / f for f in sources] + cells, compiled.top,
                        {s_axis: _words(frames, qin.dtype, li)},
                        {m_axis: _words(expected, qout.dtype, lo)},
                        valid_prob=valid_prob, ready_prob=ready_prob, seed=seed,
                        expected_cycles=_expected_cycles(compiled, len(frames)), **bench)
        for f in hex_files:         # $readmemh reads from the simulator's folder
            shutil.copyfile(d / f, d / "tb" / f)
    out = Path(out_dir)
    if verify_netlist:
        _verify_build(compiled, out, device, seed=seed, valid_prob=valid_prob,
                      ready_prob=ready_prob, synth_options=synth_options,
                      simulator=simulator)
    return out


def _verify_build(compiled, out, device, *, seed, valid_prob, ready_prob, synth_options,
                  simulator):
    """Synthesize build folder ``out`` for ``device``; simulate the netlist on the
    folder's stimulus (``tb_input.npy``) against golden.  Returns the SimResult."""
    from rtl_gen.netlist import synthesize_netlist

    from .devices import device as lookup_device

    dev = lookup_device(device)
    sources = (out / "files.f").read_text().split()
    hex_files = (out / "roms.f").read_text().split()
    work = out / f"netlist_{dev.family}"
    netlist = synthesize_netlist([out / f for f in sources], compiled.top, dev.name,
                                 work / "synth", options=synth_options,
                                 data_files=[out / f for f in hex_files])
    return _netlist_bench(compiled, netlist, dev.family, work / "sim",
                          np.load(out / "tb_input.npy"), seed=seed, simulator=simulator,
                          valid_prob=valid_prob, ready_prob=ready_prob)


@dataclass
class SimReport:
    """What :func:`simulate` measured.

    Attributes
    ----------
    outputs : ndarray
        Float32 outputs computed by the RTL, dequantized, in the model's output layout.
    outputs_int : ndarray
        The RTL's integer outputs (NHWC).
    bit_exact : bool
        Every output beat equalled the golden model's (the scoreboard checks each one).
    cycles_per_frame : float or None
        Mean cycles between the last output beats of consecutive frames.
    predicted_cycles_per_frame : int
    folder : pathlib.Path
    simulator : str
    """

    outputs: np.ndarray
    outputs_int: np.ndarray
    bit_exact: bool
    cycles_per_frame: float | None
    predicted_cycles_per_frame: int
    latency: int | None
    folder: Path
    simulator: str


def simulate(compiled, inputs=None, *, n_frames=4, simulator="icarus", folder=None,
             valid_prob=1.0, ready_prob=1.0, seed=0):
    """Run the generated Verilog in cocotb on ``inputs`` (float, model layout).

    Every output beat is checked against the golden model in the test bench; a mismatch
    raises :class:`sim.runner.SimulationError` naming the first differing beat, the log
    and the waveform.  With ``valid_prob = ready_prob = 1`` the measured cycles per frame
    are comparable with the manifest's prediction.
    """
    from sim.runner import run_testbench

    keep = folder is not None
    folder = Path(folder) if keep else Path(tempfile.mkdtemp(prefix="hwconv-sim-"))
    build(compiled, folder / "build", inputs=inputs, n_frames=n_frames, seed=seed,
          valid_prob=valid_prob, ready_prob=ready_prob)
    result = run_testbench(folder / "build" / "tb", simulator=simulator)
    qout = compiled.qnet.output_q
    lo = compiled.out_lanes
    frames = np.load(folder / "build" / "tb_input.npy")
    beats = bits_to_beats(result.received["m_axis"], elem_shape(qout.dtype), lo)
    got = np.array([v for vals, _ in beats for v in vals]).reshape(
        (len(frames),) + compiled.qnet.output_shape)
    per = int(np.prod(compiled.qnet.output_shape)) // lo
    gaps = result.frame_cycles("m_axis", per)
    first_out = result.outputs["m_axis"][0] if result.outputs.get("m_axis") else None
    first_in = result.inputs["s_axis"][0] if result.inputs.get("s_axis") else None
    return SimReport(
        outputs=compiled.model.dequantize_output(got), outputs_int=got, bit_exact=True,
        cycles_per_frame=float(np.mean(gaps)) if gaps else None,
        predicted_cycles_per_frame=compiled.plan.cycles_per_frame,
        latency=None if first_out is None or first_in is None else first_out - first_in,
        folder=folder, simulator=simulator)


def verify_netlist(compiled, device, folder, *, inputs=None, n_frames=2, seed=0,
                   simulator="icarus", synth_options=None):
    """Synthesize the pipeline for ``device`` and simulate the *netlist* against golden.

    The netlist Yosys wrote (``write_verilog`` after ``synth_<family>``) runs with
    Yosys's own cell models (plus hwconv's models of the primitives Yosys ships only as
    black boxes: ECP5 ``DP16KD`` and ``MULT18X18D``, see :mod:`rtl_gen.netlist`) in the
    same cocotb test bench as the RTL, on the same stimulus; every output beat must
    equal the golden model's.  A mismatch raises :class:`sim.runner.SimulationError`
    naming the first differing beat, the log and the waveform.

    Returns
    -------
    sim.runner.SimResult
    """
    folder = Path(folder)
    rtl = build(compiled, folder / "rtl", inputs=inputs, n_frames=n_frames, seed=seed)
    return _verify_build(compiled, rtl, device, seed=seed, valid_prob=0.8, ready_prob=0.8,
                         synth_options=synth_options, simulator=simulator)


def simulate_netlist(compiled, netlist, family, folder, *, inputs=None, n_frames=2, seed=0,
                     simulator="icarus", valid_prob=0.8, ready_prob=0.8):
    """Simulate a synthesized ``netlist`` (with the ``family`` cell models) against the
    golden model in cocotb; see :func:`verify_netlist`."""
    return _netlist_bench(compiled, netlist, family, folder,
                          _frames(compiled, inputs, n_frames, seed), seed=seed,
                          simulator=simulator, valid_prob=valid_prob, ready_prob=ready_prob)


def _netlist_bench(compiled, netlist, family, folder, frames, *, seed, simulator,
                   valid_prob, ready_prob):
    from rtl_gen.netlist import cell_bench_files
    from sim.runner import axis_stream, run_testbench, write_testbench

    expected = golden.run(compiled.qnet, frames)
    qin, qout = compiled.qnet.input_q, compiled.qnet.output_q
    li, lo = compiled.in_lanes, compiled.out_lanes
    s_axis = axis_stream("s_axis", 8 * li, lanes=li, signed=qin.signed)
    m_axis = axis_stream("m_axis", 8 * lo, lanes=lo, signed=qout.signed)
    models, bench = cell_bench_files(family, Path(folder) / "models")
    write_testbench(folder, [netlist, models], compiled.top,
                    {s_axis: _words(frames, qin.dtype, li)},
                    {m_axis: _words(expected, qout.dtype, lo)},
                    valid_prob=valid_prob, ready_prob=ready_prob, seed=seed,
                    expected_cycles=_expected_cycles(compiled, len(frames)), **bench)
    return run_testbench(folder, simulator=simulator)


def explore(model, device, out_dir=None, *, synth=False, fmax=False, synth_limit=None,
            dask=None, workers=None, clock_mhz=None, budget=None, calibration=None,
            device_limits=True, progress=True, backend="generic", skid=True):
    """Sweep the foldings of ``model`` on ``device``: the Pareto front of throughput vs
    DSP blocks, block RAM and LUTs (see :mod:`hwconv.explore`).

    Parameters
    ----------
    out_dir : str or Path, optional
        Where ``pareto.csv``, ``pareto.json``, ``points.csv`` and ``pareto.png`` go (and
        ``synth/pointNN/`` with each synthesized point's Verilog and logs).
    synth : bool
        Re-score the front with real Yosys runs; ``fmax`` also places and routes each
        point (nextpnr, ECP5 and iCE40); ``synth_limit`` caps how many (fastest first).
    dask : str, optional
        Address of a Dask scheduler; the work runs there instead of local processes.
    budget : dict, optional
        ``dsp`` / ``bram`` / ``lut`` / ``ff`` limits below the device's.
    device_limits : bool
        ``False``: ignore the part's own limits (a network too big for it still gets a
        front, scored with its family's rules).
    backend, skid
        Multiplier back end and register slices, as :func:`hwconv.compile` takes them.

    Returns
    -------
    hwconv.explore.Exploration

    Examples
    --------
    >>> from hwconv.api import explore
    >>> r = explore("examples/digits/digits_qdq.onnx", "ecp5-85f", "out/dse")  # doctest: +SKIP
    >>> [(p.fps, p.dsp, p.bram, p.lut) for p in r.front]                      # doctest: +SKIP
    """
    from rtl_gen.dse import synth_point
    from rtl_gen.report import write_exploration

    from . import explore as dse

    executor = dse.dask_executor(dask) if dask else None
    try:
        result = dse.explore(
            model, device, calibration=calibration, clock_mhz=clock_mhz, executor=executor,
            workers=workers, budget=budget, rescore=synth_point if synth else None,
            rescore_limit=synth_limit, progress=progress,
            rescore_dir=Path(out_dir) / "synth" if (synth and out_dir) else None,
            rescore_options={"fmax": fmax}, device_limits=device_limits, backend=backend,
            skid=skid)
    finally:
        if executor is not None:
            executor.shutdown(wait=True)
            executor.client.close()
    if out_dir is not None:
        write_exploration(result, out_dir)
    return result
