"""Synthesized netlists are simulated against the golden model before they are trusted.

* The ``synth_ice40 -dsp`` miscompile recorded in DESIGN.md is reproduced and caught by
  netlist simulation; hwconv's own iCE40 options (no ``-dsp``) give a correct netlist.
* A deliberately corrupted netlist fails the same test bench (iCE40 and ECP5).
* The digits pipeline's iCE40 and ECP5 netlists pass it.
* hwconv's ECP5 ``DP16KD`` model: small memories (ROMs with contents, RAMs with every
  write mode, byte enables, two write ports, every port width 1..36) synthesized by
  Yosys and simulated cycle by cycle against their behavioural Verilog under Icarus;
  mutants of the model (contents layout, lanes, halves, byte enables, write mode) fail;
  the ``INITVAL`` layout, ``OUTREG``, collisions and unsupported settings directly.
* hwconv's ``MULT18X18D`` model in the registered configuration of the ECP5 multiplier
  back end, against a registered multiply with a random clock enable.
"""

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hwconv import api, compiler, datasets
from rtl_gen.netlist import SAFE_SYNTH_OPTIONS, cell_models, synthesize_netlist
from sim.runner import SimulationError, sim_verilog, simulator_available

pytestmark = [pytest.mark.cocotb,
              pytest.mark.skipif(not simulator_available("icarus"),
                                 reason="Icarus Verilog (iverilog) is not installed")]
DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits_qdq.onnx"
REDUCED = bool(os.environ.get("HWCONV_SLOW_REDUCED"))

REGISTERED_MULTIPLY = """\
module t(input clk, input signed [7:0] a, b, output reg signed [15:0] y);
  reg signed [7:0] ar, br; reg signed [15:0] p;
  always @(posedge clk) begin ar <= a; br <= b; p <= ar * br; y <= p; end
endmodule
"""

TESTBENCH = """\
`timescale 1ns/1ps
module tb;
  reg clk = 0; always #5 clk = ~clk;
  reg signed [7:0] a = 0, b = 0; wire signed [15:0] y;
  reg signed [7:0] as [0:63]; reg signed [7:0] bs [0:63];
  integer k;
  t dut(.clk(clk), .a(a), .b(b), .y(y));
  initial begin
    $readmemh("a.hex", as); $readmemh("b.hex", bs);
    for (k = 0; k < 66; k = k + 1) begin
      if (k < 64) begin a = as[k]; b = bs[k]; end
      @(posedge clk); #1;
      if (k >= 2) $display("y %0d", y);    // y = a*b two edges after the operands
    end
    $finish;
  end
endmodule
"""


def simulate_multiply(netlist, folder, family):
    """Products the netlist computes for 64 random operand pairs (and the expected)."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(-128, 128, 64), rng.integers(-128, 128, 64)
    (folder / "a.hex").write_text("".join(f"{v & 0xff:02x}\n" for v in a))
    (folder / "b.hex").write_text("".join(f"{v & 0xff:02x}\n" for v in b))
    (folder / "tb.v").write_text(TESTBENCH)
    models, _ = cell_models(family, folder / "models")
    subprocess.run(["iverilog", "-g2012", "-DNO_ICE40_DEFAULT_ASSIGNMENTS",
                    f"-I{folder / 'models'}", "-o", str(folder / "sim"), str(folder / "tb.v"),
                    str(netlist), str(models)], check=True, cwd=folder)
    out = subprocess.run(["vvp", str(folder / "sim")], check=True, cwd=folder,
                         capture_output=True, text=True).stdout
    got = [int(v) for v in re.findall(r"^y (-?\d+)", out, re.M)]
    return got[:64], list(a * b)


def test_ice40_dsp_miscompile_is_caught_and_avoided(tmp_path):
    src = tmp_path / "t.v"
    src.write_text(REGISTERED_MULTIPLY)
    bad = synthesize_netlist([src], "t", "ice40-up5k", tmp_path / "dsp", options="-dsp")
    got, expect = simulate_multiply(bad, tmp_path / "dsp", "ice40")
    assert got != expect, "synth_ice40 -dsp is fixed upstream: revisit SAFE_SYNTH_OPTIONS"
    assert "-dsp" not in SAFE_SYNTH_OPTIONS["ice40"]
    good = synthesize_netlist([src], "t", "ice40-up5k", tmp_path / "safe")
    got, expect = simulate_multiply(good, tmp_path / "safe", "ice40")
    assert got == expect


def _tiny_compiled():
    """A conv + dense network small enough to synthesize in seconds."""
    from hwconv import zoo
    from hwconv.ir import Activation, Conv2D, Dense, Flatten, Network

    rng = np.random.default_rng(0)
    net = Network((4, 4, 1))
    x = net.add("c", Conv2D(zoo.conv_weight(rng, 2, 3, 1), padding="same"), net.input)
    x = net.add("r", Activation("relu"), x)
    net.add("fc", Dense(rng.normal(size=(3, 32))), net.add("fl", Flatten(), x))
    return compiler.compile(net, calibration=rng.normal(size=(8, 4, 4, 1)),
                            max_multipliers=12)


@pytest.fixture(scope="module", params=["ice40-up5k", "ecp5-85f"])
def tiny(request, tmp_path_factory):
    c = _tiny_compiled()
    folder = tmp_path_factory.mktemp(f"tiny-{request.param}")
    rtl = api.build(c, folder / "rtl", n_frames=2)
    sources = (rtl / "files.f").read_text().split()
    hexes = (rtl / "roms.f").read_text().split()
    netlist = synthesize_netlist([rtl / f for f in sources], c.top, request.param,
                                 folder / "synth", data_files=[rtl / f for f in hexes])
    return c, netlist, folder, request.param.split("-")[0]


def test_tiny_netlist_passes(tiny):
    c, netlist, folder, family = tiny
    api.simulate_netlist(c, netlist, family, folder / "ok", n_frames=2)


#: a LUT's truth table in each family's netlist
_LUT_INIT = {"ice40": r"SB_LUT4 #\(\s*\.LUT_INIT\(16'h[0-9a-f]{4}\)",
             "ecp5": r"LUT4 #\(\s*\.INIT\(16'h[0-9a-f]{4}\)"}


def test_corrupted_netlist_is_caught(tiny):
    c, netlist, folder, family = tiny
    text = netlist.read_text()
    # invert every 5th LUT's truth table: the netlist still elaborates, computes garbage
    luts = [m.start() for m in re.finditer(_LUT_INIT[family], text)]
    assert len(luts) > 10
    bad = netlist.with_name("corrupted.v")
    corrupted = text
    for pos in luts[::5]:
        head, tail = corrupted[:pos], corrupted[pos:]
        tail = re.sub(r"16'h([0-9a-f]{4})",
                      lambda m: f"16'h{int(m.group(1), 16) ^ 0xffff:04x}", tail, count=1)
        corrupted = head + tail
    assert corrupted != text
    bad.write_text(corrupted)
    with pytest.raises(SimulationError, match="m_axis: beat|timeout|m_axis: got"):
        api.simulate_netlist(c, bad, family, folder / "bad", n_frames=2)


@pytest.mark.slow
def test_digits_netlist_ice40_matches_golden(tmp_path):
    c = compiler.compile(str(DIGITS), max_multipliers=40)
    x = datasets.load("digits").x_test[:2]
    res = api.verify_netlist(c, "ice40-up5k", tmp_path, inputs=x)
    assert len(res.received["m_axis"]) == 20



def test_digits_netlist_ecp5_matches_golden(tmp_path):
    """The digits pipeline on the ECP5 multiplier back end (registered MULT18X18D
    instances) through synth_ecp5 (LUT4, CCU2C, TRELLIS_FF/DPR, DP16KD) simulates
    bit-exact against golden: ~80 s."""
    c = compiler.compile(str(DIGITS), max_multipliers=40, backend="ecp5")
    x = datasets.load("digits").x_test[:2]
    res = api.verify_netlist(c, "ecp5-85f", tmp_path, inputs=x)
    assert len(res.received["m_axis"]) == 20
    netlist = next((tmp_path / "rtl" / "netlist_ecp5" / "synth").glob("*.netlist.v")).read_text()
    assert re.search(r"^\s*DP16KD\b", netlist, re.M), "no block RAM: the test lost its point"
    assert re.search(r"^\s*MULT18X18D\b", netlist, re.M)
    # the line buffers' and ROMs' read registers moved into the blocks (rtl_gen.outreg),
    # so the simulation above checked that rewrite too
    assert re.search(r'\.REGMODE_B\("OUTREG"\)', netlist), "no absorbed read register"


# ---------------------------------------------------------------------------------------
# ECP5 primitive models: DP16KD and MULT18X18D (rtl_gen.netlist)

TRACE_TB = """\
`timescale 1ns/1ps
module tb;
  reg clk = 0;
  reg [{n_in}-1:0] in = 0;
  wire [{n_out}-1:0] out;
  reg [{n_in}-1:0] stim [0:{cycles}-1];
  integer k;
  {top} dut(.clk(clk), .in(in), .out(out));
  initial begin
    $readmemh("stim.hex", stim);
    for (k = 0; k < {cycles}; k = k + 1) begin
      in = stim[k];
      #5 clk = 1;
      #1 $display("o %0d %h", k, out);
      #4 clk = 0;
    end
    $finish;
  end
endmodule
"""


def _trace(sources, top, folder, n_in, n_out, stim, *, models=False, mutate=None,
           data=None):
    """``out`` of ``top`` after each of ``len(stim)`` clock edges (hex strings, x kept),
    under Icarus; ``in`` takes ``stim[k]`` before edge k.  ``models``: with the ECP5
    cell models, ``mutate = (old, new)`` replaced in them first."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stim.hex").write_text("".join(f"{v:x}\n" for v in stim))
    (folder / "tb.v").write_text(TRACE_TB.format(n_in=n_in, n_out=n_out, cycles=len(stim),
                                                 top=top))
    for name, text in (data or {}).items():
        (folder / name).write_text(text)
    srcs, inc = [], []
    for src in sources:
        dst = folder / f"{Path(src).stem}.sim.v"
        dst.write_text(sim_verilog(Path(src).read_text()))
        srcs.append(str(dst))
    if models:
        m, _ = cell_models("ecp5", folder / "models")
        if mutate:
            text = m.read_text()
            assert mutate[0] in text, f"mutation target not in the model: {mutate[0]}"
            m.write_text(text.replace(mutate[0], mutate[1]))
        srcs.append(str(m))
        inc = [f"-I{folder / 'models'}"]
    subprocess.run(["iverilog", "-g2012", *inc, "-o", str(folder / "sim"),
                    str(folder / "tb.v"), *srcs], check=True, cwd=folder)
    out = subprocess.run(["vvp", "-n", str(folder / "sim")], check=True, cwd=folder,
                         capture_output=True, text=True).stdout
    assert "ERROR" not in out, out[:2000]
    return re.findall(r"^o \d+ (\S+)", out, re.M)


def _clog2(n):
    return max(1, (n - 1).bit_length())


def _memory(kind, w, d):
    """Behavioural Verilog of a ``d`` x ``w`` block memory ``mem(clk, in, out)`` with
    contents from mem.hex; returns (verilog, input bits, output bits)."""
    aw = _clog2(d)
    head = (f'(* ram_style = "block" *) reg [{w}-1:0] m [0:{d}-1];\n'
            f'  initial $readmemh("mem.hex", m);\n  reg [{w}-1:0] q = 0;\n')
    out = "q"
    if kind == "rom":                       # in = {en, a}
        n_in = aw + 1
        body = f"""  wire [{aw}-1:0] a = in[{aw}-1:0]; wire en = in[{aw}];
  always @(posedge clk) if (en) q <= m[a];"""
    elif kind == "sdp":                     # in = {re, ra, we, wa, wd}
        n_in = 2 * aw + w + 2
        body = f"""  wire [{w}-1:0] wd = in[{w}-1:0];
  wire [{aw}-1:0] wa = in[{w}+{aw}-1:{w}]; wire we = in[{w}+{aw}];
  wire [{aw}-1:0] ra = in[{w}+2*{aw}:{w}+{aw}+1]; wire re = in[{w}+2*{aw}+1];
  always @(posedge clk) begin if (we) m[wa] <= wd; if (re) q <= m[ra]; end"""
    elif kind.startswith("sp_"):            # in = {we, a, d, en}: one read/write port
        n_in = aw + w + 2
        op = {"sp_old": "if (we) m[a] <= d; q <= m[a];",
              "sp_new": "if (we) begin m[a] <= d; q <= d; end else q <= m[a];",
              "sp_nochange": "if (we) m[a] <= d; else q <= m[a];"}[kind]
        body = f"""  wire en = in[0]; wire [{w}-1:0] d = in[{w}:1];
  wire [{aw}-1:0] a = in[{w}+{aw}:{w}+1]; wire we = in[{w}+{aw}+1];
  always @(posedge clk) if (en) begin {op} end"""
    elif kind == "be":                      # in = {re, ra, we[nb], wa, wd}: byte enables
        nb = w // 9
        n_in = 2 * aw + w + nb + 1
        body = f"""  wire [{w}-1:0] wd = in[{w}-1:0];
  wire [{aw}-1:0] wa = in[{w}+{aw}-1:{w}]; wire [{nb}-1:0] we = in[{w}+{aw}+{nb}-1:{w}+{aw}];
  wire [{aw}-1:0] ra = in[{w}+2*{aw}+{nb}-1:{w}+{aw}+{nb}]; wire re = in[{w}+2*{aw}+{nb}];
  integer i;
  always @(posedge clk) begin
    for (i = 0; i < {nb}; i = i + 1) if (we[i]) m[wa][9*i +: 9] <= wd[9*i +: 9];
    if (re) q <= m[ra];
  end"""
    elif kind == "tdp":                     # two read/write ports: A even, B odd words
        h = aw - 1 + w + 2
        n_in = 2 * h
        out = "{qb, q}"
        body = f"""  reg [{w}-1:0] qb = 0;
  wire ena = in[0]; wire wea = in[1]; wire [{w}-1:0] da = in[{w}+1:2];
  wire [{aw}-2:0] aa = in[{w}+{aw}:{w}+2];
  wire enb = in[{h}]; wire web = in[{h}+1]; wire [{w}-1:0] db = in[{h}+{w}+1:{h}+2];
  wire [{aw}-2:0] ab = in[{h}+{w}+{aw}:{h}+{w}+2];
  always @(posedge clk) if (ena) begin if (wea) m[{{aa, 1'b0}}] <= da; q <= m[{{aa, 1'b0}}]; end
  always @(posedge clk) if (enb) begin if (web) m[{{ab, 1'b1}}] <= db; qb <= m[{{ab, 1'b1}}]; end"""
    elif kind.startswith("oreg_"):          # a read, then a register (rtl_gen.outreg)
        # in = {rst, ce2, we, wa, wd, en, ra}: q2 <= q when ce2 (or when !ce2, "inv");
        # "rst": q2 also has a synchronous reset (stays in the fabric)
        n_in = 2 * aw + w + 4
        out = "q2"
        ce2 = {"oreg_ce": "ce2", "oreg_inv": "!ce2", "oreg_rst": "ce2",
               "oreg_free": "1'b1", "oreg_rom": "ce2"}[kind]
        write = "" if kind == "oreg_rom" else "if (we) m[wa] <= wd;"
        rst = "if (rst) q2 <= 0; else " if kind == "oreg_rst" else ""
        head = "(* no_rw_check *) " + head + f"  reg [{w}-1:0] q2 = 0;\n"
        body = f"""  wire [{aw}-1:0] ra = in[{aw}-1:0]; wire en = in[{aw}];
  wire [{w}-1:0] wd = in[{aw}+{w}:{aw}+1]; wire [{aw}-1:0] wa = in[2*{aw}+{w}:{aw}+{w}+1];
  wire we = in[2*{aw}+{w}+1] & (wa != ra); wire ce2 = in[2*{aw}+{w}+2];
  wire rst = in[2*{aw}+{w}+3];
  always @(posedge clk) begin
    {write}
    if (en) q <= m[ra];
    {rst}if ({ce2}) q2 <= q;
  end"""
    else:
        raise ValueError(kind)
    n_out = 2 * w if kind == "tdp" else w
    v = (f"module mem(input clk, input [{n_in}-1:0] in, output [{n_out}-1:0] out);\n"
         f"  {head}{body}\n  assign out = {out};\nendmodule\n")
    return v, n_in, n_out


#: (kind, width, depth, a (DATA_WIDTH_A, DATA_WIDTH_B, WRITEMODE_A) the netlist must use)
MEM_CASES = [
    ("rom", 1, 16384, (1, 18, "READBEFOREWRITE")),
    ("rom", 2, 8192, (2, 18, "READBEFOREWRITE")),
    ("rom", 4, 4096, (4, 18, "READBEFOREWRITE")),
    ("rom", 9, 2048, (9, 18, "READBEFOREWRITE")),
    ("rom", 36, 512, (36, 36, None)),               # Yosys's PDPW16KD arrangement
    ("rom", 3, 5000, (9, 18, "READBEFOREWRITE")),   # reads past the end: RTL X
    ("sp_new", 9, 2048, (9, 18, "WRITETHROUGH")),
    ("sp_nochange", 2, 8192, (2, 18, "NORMAL")),
    ("be", 18, 1024, (18, 18, "READBEFOREWRITE")),
    ("be", 36, 512, (36, 36, None)),
    ("tdp", 9, 2048, (9, 9, "READBEFOREWRITE")),
]
SLOW_MEM_CASES = [
    ("rom", 18, 1024, (18, 18, "READBEFOREWRITE")),
    ("rom", 16, 1000, (18, 18, "READBEFOREWRITE")),
    ("rom", 36, 1024, (18, 18, "READBEFOREWRITE")),
    ("sdp", 8, 2048, (9, 9, "READBEFOREWRITE")),
    ("sdp", 36, 512, (36, 36, None)),
    ("sdp", 18, 1024, (18, 18, "READBEFOREWRITE")),
    ("sdp", 4, 4096, (4, 4, "READBEFOREWRITE")),
    ("sdp", 1, 16384, (1, 1, "READBEFOREWRITE")),
    ("sp_old", 9, 2048, (9, 18, "READBEFOREWRITE")),
    ("sp_new", 18, 1024, (18, 18, "WRITETHROUGH")),
    ("sp_old", 4, 4096, (4, 18, "READBEFOREWRITE")),
    ("sp_nochange", 9, 2048, (9, 18, "NORMAL")),
    ("tdp", 18, 1024, (18, 18, "READBEFOREWRITE")),
    ("tdp", 1, 16384, (1, 1, "READBEFOREWRITE")),
]
if REDUCED:
    SLOW_MEM_CASES = SLOW_MEM_CASES[::4]

_NETLISTS = {}


def _memory_netlist(kind, w, d, root, seed=1):
    """(netlist, rtl source, contents, input bits, output bits, DP16KD configurations);
    synthesized once per case."""
    key = (kind, w, d, seed)
    if key not in _NETLISTS:
        folder = root / f"{kind}_{w}x{d}_{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        v, n_in, n_out = _memory(kind, w, d)
        rng = np.random.default_rng(seed)
        hexes = "".join(f"{int(x):x}\n" for x in rng.integers(0, 2 ** w, d, dtype=np.uint64))
        (folder / "mem.v").write_text(v)
        (folder / "mem.hex").write_text(hexes)
        net = synthesize_netlist([folder / "mem.v"], "mem", "ecp5-85f", folder / "synth",
                                 data_files=[folder / "mem.hex"])
        cells = re.findall(r"^\s*DP16KD #\((.*?)\)\s*\S+\s*\(", net.read_text(), re.S | re.M)
        cfg = set()
        for c in cells:
            wm = re.search(r'WRITEMODE_A\("(\w+)"', c)
            cfg.add((int(re.search(r"DATA_WIDTH_A\(32'd(\d+)", c).group(1)),
                     int(re.search(r"DATA_WIDTH_B\(32'd(\d+)", c).group(1)),
                     wm.group(1) if wm else None))
        _NETLISTS[key] = (net, folder / "mem.v", hexes, n_in, n_out, cfg)
    return _NETLISTS[key]


def _memory_mismatches(kind, w, d, root, *, cycles=400, seed=1, mutate=None, tag="ok"):
    """Cycles where the netlist (DP16KD model) differs from the RTL (X in the RTL, a read
    past the end, matches anything); also the DP16KD configurations used."""
    net, rtl, hexes, n_in, n_out, cfg = _memory_netlist(kind, w, d, root, seed)
    rng = np.random.default_rng(seed + 1)
    stim = [int.from_bytes(rng.bytes((n_in + 7) // 8), "little") & ((1 << n_in) - 1)
            for _ in range(cycles)]
    folder = net.parent.parent
    ref = _trace([rtl], "mem", folder / "rtl", n_in, n_out, stim, data={"mem.hex": hexes})
    got = _trace([net], "mem", folder / tag, n_in, n_out, stim, models=True, mutate=mutate,
                 data={"mem.hex": hexes})
    assert len(ref) == len(got) == cycles
    return [(k, r, g) for k, (r, g) in enumerate(zip(ref, got)) if r != g and "x" not in r], cfg


def _check_memory(case, root):
    kind, w, d, want = case
    bad, cfg = _memory_mismatches(kind, w, d, root)
    assert want in cfg, f"Yosys mapped {kind} {w}x{d} to DP16KD {cfg}, expected {want}"
    assert not bad, f"{len(bad)} cycles differ; first (cycle, RTL, netlist): {bad[0]}"


#: (kind, width, depth, read registers moved into the block?)
OREG_CASES = [("oreg_ce", 18, 1024, True), ("oreg_inv", 9, 2048, True),
              ("oreg_free", 36, 512, True), ("oreg_rom", 36, 512, True),
              ("oreg_rst", 18, 1024, False)]


@pytest.mark.parametrize("case", OREG_CASES, ids=lambda c: f"{c[0]}-{c[1]}x{c[2]}")
def test_outreg_absorption_is_exact(case, mem_root):
    """rtl_gen.outreg moves a plain register after a block-RAM read into the DP16KD
    (REGMODE OUTREG, its enable on OCE, through a LUT when inverted, both ports at 36
    bits) and leaves a register with a reset in the fabric; the rewritten netlist
    simulates equal to the RTL."""
    kind, w, d, moved = case
    bad, _ = _memory_mismatches(kind, w, d, mem_root)
    assert not bad, f"{len(bad)} cycles differ; first (cycle, RTL, netlist): {bad[0]}"
    text = _memory_netlist(kind, w, d, mem_root)[0].read_text()
    regmodes = re.findall(r'REGMODE_([AB])\("(\w+)"\)', text)
    assert regmodes, "no DP16KD in the netlist"
    assert (("OUTREG" in {m for _, m in regmodes}) == moved), regmodes
    if moved and w == 36:
        assert {m for _, m in regmodes} == {"OUTREG"}, regmodes


FANOUT_RTL = """\
module fan(input clk, input [68:0] in, output [191:0] out);
  wire [63:0] d = in[63:0];
  reg go = 0, sel = 0, hold = 0;
  reg [63:0] q1 = 0, q2 = 0, q3 = 0;
  always @(posedge clk) begin
    go <= in[64] ^ in[65];
    sel <= in[66];
    hold <= in[67] | in[68];
    if (go) q1 <= d;                            // a flip-flop enabling 64 bits
    if (go & ~hold) q2 <= d ^ q2;               // a LUT enabling 64 bits
    q3 <= sel ? ~d : {d[31:0], d[63:32]};       // a flip-flop selecting for 64 LUTs
  end
  assign out = {q3, q2, q1};
endmodule
"""


def test_fanout_replication_is_exact(tmp_path):
    """rtl_gen.fanout's copies (in every ECP5 netlist hwconv synthesizes) compute what
    their originals did: a register bank whose enables and selects each fan out to 64
    bits, replicated in the netlist, simulates equal to its RTL for 300 random cycles."""
    (tmp_path / "fan.v").write_text(FANOUT_RTL)
    net = synthesize_netlist([tmp_path / "fan.v"], "fan", "ecp5-85f", tmp_path / "synth")
    text = net.read_text()
    assert "$fanout" in text, "no driver was replicated"
    rng = np.random.default_rng(5)
    stim = [int.from_bytes(rng.bytes(9), "little") & ((1 << 69) - 1) for _ in range(300)]
    ref = _trace([tmp_path / "fan.v"], "fan", tmp_path / "rtl", 69, 192, stim)
    got = _trace([net], "fan", tmp_path / "net", 69, 192, stim, models=True)
    bad = [(k, r, g) for k, (r, g) in enumerate(zip(ref, got)) if r != g]
    assert len(ref) == 300 and not bad, f"{len(bad)} cycles differ; first: {bad[:1]}"


@pytest.fixture(scope="module")
def mem_root(tmp_path_factory):
    return tmp_path_factory.mktemp("dp16kd")


@pytest.mark.parametrize("case", MEM_CASES, ids=lambda c: f"{c[0]}-{c[1]}x{c[2]}")
def test_dp16kd_model_matches_rtl(case, mem_root):
    """Yosys's block-RAM mapping simulated with hwconv's DP16KD model equals the RTL."""
    _check_memory(case, mem_root)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_MEM_CASES, ids=lambda c: f"{c[0]}-{c[1]}x{c[2]}")
def test_dp16kd_model_matches_rtl_more(case, mem_root):
    _check_memory(case, mem_root)


def test_dp16kd_cases_cover_every_width_and_write_mode():
    used = {c[3] for c in MEM_CASES}
    assert {w for a, b, _ in used for w in (a, b)} >= {1, 2, 4, 9, 18, 36}
    assert {m for *_, m in used} >= {"NORMAL", "WRITETHROUGH", "READBEFOREWRITE"}


#: model mutations and a memory each must fail on
MUTANTS = {
    "INITVAL words 18 bits apart, not 20": (("v[20 * j +: 18]", "v[18 * j +: 18]"),
                                            ("rom", 9, 2048)),
    "narrow lanes ignore the parity bits": (("lane = p + ((p >= 8) ? 1 : 0);", "lane = p;"),
                                            ("rom", 4, 4096)),
    "36-bit halves swapped": (("latb <= {mem[row + 1], mem[row]};",
                               "latb <= {mem[row], mem[row + 1]};"), ("rom", 36, 512)),
    "18-bit byte enables swapped": (("m = {{9{ada[1]}}, {9{ada[0]}}};",
                                     "m = {{9{ada[0]}}, {9{ada[1]}}};"), ("be", 18, 1024)),
    "36-bit byte enables swapped": (
        ("m36 = {{9{ada[3]}}, {9{ada[2]}}, {9{ada[1]}}, {9{ada[0]}}};",
         "m36 = {{9{ada[2]}}, {9{ada[3]}}, {9{ada[1]}}, {9{ada[0]}}};"), ("be", 36, 512)),
    "WRITETHROUGH read as NORMAL": (('WRITEMODE_A == "WRITETHROUGH"', 'WRITEMODE_A == "-"'),
                                    ("sp_new", 9, 2048)),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_dp16kd_model_mutants_fail(name, mem_root):
    """The differential test can fail: each wrong model fails a memory of MEM_CASES."""
    mutate, (kind, w, d) = MUTANTS[name]
    bad, _ = _memory_mismatches(kind, w, d, mem_root, mutate=mutate,
                                tag="mutant" + str(sorted(MUTANTS).index(name)))
    assert bad, f"mutant '{name}' survived"


def _dp16kd_direct(folder, params, body, cycles):
    """A hand-written top: one DP16KD (``params``) driven by ``body``; no Yosys."""
    folder.mkdir(parents=True, exist_ok=True)
    ps = ",\n    ".join(f".{k}({v})" for k, v in params.items())
    top = f"""\
`timescale 1ns/1ps
module tb;
  reg clk = 0;
  reg [13:0] ada = 0, adb = 0;
  reg [17:0] dia = 0, dib = 0;
  reg cea = 1, ceb = 1, ocea = 1, oceb = 1, wea = 0, web = 0, rsta = 0, rstb = 0;
  wire [17:0] doa, dob;
  DP16KD #(
    {ps}
  ) u (
    {", ".join(f".DIA{i}(dia[{i}]), .DIB{i}(dib[{i}]), .DOA{i}(doa[{i}]), .DOB{i}(dob[{i}])"
               for i in range(18))},
    {", ".join(f".ADA{i}(ada[{i}]), .ADB{i}(adb[{i}])" for i in range(14))},
    .CLKA(clk), .CLKB(clk), .CEA(cea), .CEB(ceb), .OCEA(ocea), .OCEB(oceb),
    .WEA(wea), .WEB(web), .RSTA(rsta), .RSTB(rstb),
    .CSA0(1'b0), .CSA1(1'b0), .CSA2(1'b0), .CSB0(1'b0), .CSB1(1'b0), .CSB2(1'b0));
  integer k;
  initial begin
    for (k = 0; k < {cycles}; k = k + 1) begin
{body}
      #5 clk = 1;
      #1 $display("o %0d %h %h", k, doa, dob);
      #4 clk = 0;
    end
    $finish;
  end
endmodule
"""
    (folder / "tb.v").write_text(top)
    m, _ = cell_models("ecp5", folder / "models")
    subprocess.run(["iverilog", "-g2012", f"-I{folder / 'models'}", "-o",
                    str(folder / "sim"), str(folder / "tb.v"), str(m)], check=True,
                   cwd=folder)
    out = subprocess.run(["vvp", "-n", str(folder / "sim")], check=True, cwd=folder,
                         capture_output=True, text=True).stdout
    return out, re.findall(r"^o \d+ (\S+) (\S+)", out, re.M)


def _initvals(words):
    """INITVAL_xx parameters holding 18-bit ``words`` (Lattice/prjtrellis layout: 16
    words per INITVAL, word j in bits [20j, 20j + 18), bits 18-19 padding) with every
    padding bit set, which no read may show."""
    params = {}
    for r in range(64):
        v = 0
        for j in range(16):
            v |= (words[16 * r + j] | (0b11 << 18)) << (20 * j)
        params[f"INITVAL_{r:02X}"] = f"320'h{v:080x}"
    return params


def test_dp16kd_initval_layout_and_outreg(tmp_path):
    """Without Yosys: INITVAL word layout at 18, 9 and 4 bits, and REGMODE OUTREG (one
    more edge, held while OCE is low) against NOREG on the other port."""
    rng = np.random.default_rng(3)
    words = [int(v) for v in rng.integers(0, 1 << 18, 1024)]
    addrs = [int(a) for a in rng.integers(0, 1024, 200)]
    oce = [int(v) for v in rng.random(200) < 0.7]
    params = {"DATA_WIDTH_A": 18, "DATA_WIDTH_B": 18, "REGMODE_A": '"NOREG"',
              "REGMODE_B": '"OUTREG"', **_initvals(words)}
    body = "\n".join(
        f"      if (k == {k}) begin ada = {a << 4}; adb = {a << 4}; oceb = {o}; end"
        for k, (a, o) in enumerate(zip(addrs, oce)))
    out, rows = _dp16kd_direct(tmp_path / "x18", params, body, len(addrs))
    assert "ERROR" not in out and len(rows) == len(addrs)
    # NOREG: the word addressed before edge k, after edge k
    assert [int(a, 16) for a, _ in rows] == [words[a] for a in addrs]
    # OUTREG: the NOREG value of the previous edge, loaded on edges with OCE high
    expect, reg, lat = [], 0, 0
    for a, o in zip(addrs, oce):
        reg = lat if o else reg
        lat = words[a]
        expect.append(reg)
    assert [int(b, 16) for _, b in rows] == expect
    # 9-bit (AD[3] picks the half) and 4-bit ports (lanes skip bits 8 and 17)
    params = {"DATA_WIDTH_A": 9, "DATA_WIDTH_B": 4, **_initvals(words)}
    body = "\n".join(f"      if (k == {k}) begin ada = {a << 3}; adb = {a << 2}; end"
                     for k, a in enumerate(addrs))
    out, rows = _dp16kd_direct(tmp_path / "narrow", params, body, len(addrs))
    assert "ERROR" not in out
    half = [(words[a >> 1] >> (9 * (a & 1))) & 0x1ff for a in addrs]
    lane = [(words[a >> 2] >> [0, 4, 9, 13][a & 3]) & 0xf for a in addrs]
    assert [int(a, 16) for a, _ in rows] == half
    assert [int(b, 16) for _, b in rows] == lane


def test_dp16kd_same_edge_collision_reads_x(tmp_path):
    """Port A writes bits port B reads on the same edge: undefined in the hardware, X in
    the model (a netlist relying on it fails instead of passing by luck); only the
    written byte is X."""
    body = """\
      if (k == 0) begin wea = 1; dia = 18'h155; ada = (14'd5 << 4) | 14'd1; adb = 14'd5 << 4; end
      if (k == 1) begin wea = 0; end
      if (k == 2) begin adb = 14'd6 << 4; end"""
    out, rows = _dp16kd_direct(tmp_path, {}, body, 4)
    assert "ERROR" not in out
    assert rows[0][1] == "00Xxx"                     # bits 8..0 (byte 0) X, 17..9 old
    assert rows[1][1] == "00155"                     # afterwards: the written byte
    assert rows[3][1] == "00000"


@pytest.mark.parametrize("params,message", [
    ({"DATA_WIDTH_A": 5}, "DATA_WIDTH_A/B = 5/18"),
    ({"REGMODE_B": '"REG"'}, "REGMODE_A/B"),
    ({"WRITEMODE_A": '"READFIRST"'}, "WRITEMODE_A/B"),
    ({"WEAMUX": '"INV"'}, "WEAMUX = INV"),
    ({"DATA_WIDTH_A": 18, "DATA_WIDTH_B": 36}, "36-bit read"),
    ({"INIT_DATA": '"DYNAMIC"'}, "INIT_DATA"),
])
def test_dp16kd_unsupported_configuration_stops(tmp_path, params, message):
    out, rows = _dp16kd_direct(tmp_path, params, "", 3)
    assert "ERROR" in out and message in out, out
    assert rows == []                                 # stopped before the first edge


MULT_REF = """\
module mt(input clk, input [36:0] in, output [107:0] out);
  wire ce = in[36];
  wire [17:0] a = in[17:0], b = in[35:18];
  reg [17:0] ar = 0, br = 0;
  reg [35:0] ss = 0, uu = 0, su = 0, oss = 0, ouu = 0, osu = 0;
  always @(posedge clk) if (ce) begin
    ar <= a; br <= b;
    ss <= $signed(ar) * $signed(br);
    uu <= ar * br;
    su <= $signed({ar[17], ar}) * $signed({1'b0, br});
    oss <= ss; ouu <= uu; osu <= su;
  end
  assign out = {osu, ouu, oss};
endmodule
"""

#: the configuration hwconv's ECP5 multiplier back end instantiates
MULT_REGISTERED = {
    **{f"REG_{r}_{k}": v for r in ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT")
       for k, v in (("CLK", "CLK0"), ("CE", "CE0"), ("RST", "RST0"))},
    "REG_INPUTC_CLK": "NONE", "RESETMODE": "SYNC", "GSR": "DISABLED", "CLK0_DIV": "ENABLED"}


def _mult_top(params):
    """Three MULT18X18D (signed x signed, unsigned x unsigned, signed x unsigned) sharing
    operands and a clock enable: in = {ce, b, a}, out = {su, uu, ss}."""
    ps = ",\n    ".join(f'.{k}("{v}")' for k, v in params.items())

    def inst(name, sa, sb, p):
        pins = ", ".join([f".A{i}(a[{i}])" for i in range(18)]
                         + [f".B{i}(b[{i}])" for i in range(18)]
                         + [f".C{i}(1'b0)" for i in range(18)]
                         + [f".P{i}({p}[{i}])" for i in range(36)])
        return f"""  MULT18X18D #(
    {ps}
  ) {name} (
    {pins},
    .SIGNEDA(1'b{sa}), .SIGNEDB(1'b{sb}), .SOURCEA(1'b0), .SOURCEB(1'b0),
    .CLK0(clk), .CE0(ce), .RST0(1'b0), .CLK1(1'b0), .CLK2(1'b0), .CLK3(1'b0),
    .CE1(1'b0), .CE2(1'b0), .CE3(1'b0), .RST1(1'b0), .RST2(1'b0), .RST3(1'b0));
"""
    return f"""module mt(input clk, input [36:0] in, output [107:0] out);
  wire ce = in[36];
  wire [17:0] a = in[17:0], b = in[35:18];
  wire [35:0] pss, puu, psu;
{inst("m_ss", 1, 1, "pss")}{inst("m_uu", 0, 0, "puu")}{inst("m_su", 1, 0, "psu")}\
  assign out = {{psu, puu, pss}};
endmodule
"""


def _mult_stimulus(n=300, seed=0):
    rng = np.random.default_rng(seed)
    stim = [int(rng.integers(0, 1 << 36)) | (int(rng.random() < 0.6) << 36)
            for _ in range(n)]
    extremes = [(1 << 17), (1 << 18) - 1, (1 << 17) - 1, 0]       # -2^17, -1, 2^17-1, 0
    for k, (a, b) in enumerate((a, b) for a in extremes for b in extremes):
        stim[k] = a | (b << 18) | (1 << 36)
    return stim


def test_mult18x18d_registered_matches_reference(tmp_path):
    """The back end's registered MULT18X18D (3 CE0-enabled edges from A/B to P), the
    model instantiated directly and through Yosys's ECP5 netlist, equals a registered
    multiply under a random clock enable; a 2-edge mutant of the model fails."""
    (tmp_path / "mt.v").write_text(_mult_top(MULT_REGISTERED))
    (tmp_path / "ref.v").write_text(MULT_REF)
    stim = _mult_stimulus()
    ref = _trace([tmp_path / "ref.v"], "mt", tmp_path / "ref", 37, 108, stim)
    assert len(set(ref)) > 100
    got = _trace([tmp_path / "mt.v"], "mt", tmp_path / "model", 37, 108, stim, models=True)
    assert got == ref
    net = synthesize_netlist([tmp_path / "mt.v"], "mt", "ecp5-85f", tmp_path / "synth")
    assert net.read_text().count('.REG_PIPELINE_CLK("CLK0")') == 3
    assert _trace([net], "mt", tmp_path / "net", 37, 108, stim, models=True) == ref
    short = _trace([tmp_path / "mt.v"], "mt", tmp_path / "mutant", 37, 108, stim,
                   models=True, mutate=("orr <= pr;", "orr <= mul(ar, br, SIGNEDA, SIGNEDB);"))
    assert short != ref


def test_mult18x18d_combinational_matches_reference(tmp_path):
    """What Yosys's DSP inference emits: no registers, P = A * B at once."""
    (tmp_path / "mt.v").write_text(_mult_top({}))
    (tmp_path / "ref.v").write_text(
        MULT_REF.replace("always @(posedge clk) if (ce) begin", "always @* begin")
        .replace("<=", "=").replace("ar = a; br = b;", "")
        .replace("reg [17:0] ar = 0, br = 0;", "wire [17:0] ar = a, br = b;")
        .replace("reg [35:0] ss = 0, uu = 0, su = 0, oss = 0, ouu = 0, osu = 0;",
                 "reg [35:0] ss, uu, su, oss, ouu, osu;"))
    stim = _mult_stimulus(100, seed=1)
    ref = _trace([tmp_path / "ref.v"], "mt", tmp_path / "ref", 37, 108, stim)
    assert _trace([tmp_path / "mt.v"], "mt", tmp_path / "model", 37, 108, stim,
                  models=True) == ref


@pytest.mark.parametrize("change,message", [
    ({"REG_PIPELINE_CLK": "NONE"}, "REG_* / RESETMODE combination"),
    ({"REG_OUTPUT_CE": "CE1"}, "REG_* / RESETMODE combination"),
    ({"RESETMODE": "ASYNC"}, "REG_* / RESETMODE combination"),
    ({"REG_INPUTC_CLK": "CLK0"}, "REG_* / RESETMODE combination"),
    ({"SOURCEB_MODE": "C_SHIFT"}, "SOURCEB_MODE"),
])
def test_mult18x18d_unmodelled_configuration_stops(tmp_path, change, message):
    (tmp_path / "mt.v").write_text(_mult_top({**MULT_REGISTERED, **change}))
    folder = tmp_path / "sim"
    folder.mkdir()
    (folder / "stim.hex").write_text("0\n0\n")
    (folder / "tb.v").write_text(TRACE_TB.format(n_in=37, n_out=108, cycles=2, top="mt"))
    m, _ = cell_models("ecp5", folder / "models")
    subprocess.run(["iverilog", "-g2012", f"-I{folder / 'models'}", "-o", str(folder / "sim"),
                    str(folder / "tb.v"), str(tmp_path / "mt.v"), str(m)], check=True)
    out = subprocess.run(["vvp", "-n", str(folder / "sim")], check=True, cwd=folder,
                         capture_output=True, text=True).stdout
    assert "ERROR" in out and message in out, out
    assert "o 0 " not in out
