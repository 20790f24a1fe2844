"""``hwconv build ... --verify-netlist``: the build folder is synthesized for ``--device``
and the netlist simulated against the golden model on the test bench's own stimulus.

A correct netlist passes (ECP5 and iCE40); a wrong one (output data tied to a constant
by Yosys commands passed through ``--synth-options``) exits 1 with one line naming the
first differing output beat; an unknown device is a one-line error before
any work.
"""

import numpy as np
import pytest

from hwconv.cli import main
from sim.runner import simulator_available

pytestmark = [pytest.mark.cocotb,
              pytest.mark.skipif(not simulator_available("icarus"),
                                 reason="Icarus Verilog (iverilog) is not installed")]


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A float conv + dense ONNX model (4x4x1 input) and calibration inputs."""
    from hwconv import zoo
    from hwconv.frontends import export_onnx
    from hwconv.ir import Activation, Conv2D, Dense, Flatten, Network

    rng = np.random.default_rng(0)
    net = Network((4, 4, 1))
    x = net.add("c", Conv2D(zoo.conv_weight(rng, 2, 3, 1), padding="same"), net.input)
    x = net.add("r", Activation("relu"), x)
    net.add("fc", Dense(rng.normal(size=(3, 32))), net.add("fl", Flatten(), x))
    d = tmp_path_factory.mktemp("cli-netlist")
    export_onnx(net, d / "tiny.onnx")
    np.save(d / "cal.npy", rng.normal(size=(8, 1, 4, 4)).astype(np.float32))
    return d / "tiny.onnx", d / "cal.npy"


def _build(tiny_onnx, out, *extra):
    model, cal = tiny_onnx
    return main(["build", str(model), "--calibration", str(cal), "--max-multipliers", "12",
                 "-o", str(out), "--verify-netlist", *extra])


@pytest.mark.parametrize("device,family", [("ecp5-85f", "ecp5"), ("ice40-up5k", "ice40")])
def test_verify_netlist_passes(tiny_onnx, tmp_path, capsys, device, family):
    assert _build(tiny_onnx, tmp_path / "out", "--device", device) == 0
    out = capsys.readouterr().out
    assert f"netlist verified on {device}" in out
    work = tmp_path / "out" / f"netlist_{family}"
    assert list((work / "synth").glob(f"*.{family}.netlist.v"))
    # the netlist ran on the RTL test bench's stimulus
    assert ((work / "sim" / "s_axis.stimulus.hex").read_text()
            == (tmp_path / "out" / "tb" / "s_axis.stimulus.hex").read_text())


def test_default_device_is_ecp5(tiny_onnx, tmp_path):
    assert _build(tiny_onnx, tmp_path / "out") == 0
    assert (tmp_path / "out" / "netlist_ecp5" / "synth").is_dir()


def test_wrong_netlist_fails_with_the_first_bad_beat(tiny_onnx, tmp_path, capsys):
    # a real wrong netlist: after synth_ice40, Yosys itself (commands appended through
    # the options string) cuts the output data from its drivers and ties it to 0x5a;
    # the handshake still works, so the scoreboard sees wrong values, not a timeout
    bad = "; connect -unset m_axis_tdata; connect -set m_axis_tdata 8'h5a"
    assert _build(tiny_onnx, tmp_path / "out", "--device", "ice40-up5k",
                  f"--synth-options={bad}") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("hwconv: netlist verification failed on ice40-up5k: "
                             "m_axis: beat ")
    assert ": got [90] " in err[0] and ", expected " in err[0]


def test_unknown_device_is_one_line_error(tiny_onnx, tmp_path, capsys):
    assert _build(tiny_onnx, tmp_path / "out", "--device", "nope") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hwconv: error:") and "nope" in err[0]
    assert not (tmp_path / "out").exists()
