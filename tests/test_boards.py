"""Boards without a toolchain run: the UART protocol, PLL settings (against the
``icepll``/``ecppll`` programs), the platforms' prepared files, the choice of pipeline
under a board's budget and the refusal of a model that does not fit.
"""

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from amaranth.lib.crc import catalog

import boards
from boards import build as board_build
from boards import protocol
from boards.pll import ecp5_pll, ice40_pll
from boards.top import BoardTop
from boards.uart import baud_divisor
from hwconv import compiler
from hwconv.cli import main
from hwconv.errors import FitError, HwconvError
from hwconv.frontends.onnx_export import export_onnx
from hwconv.ir import Activation, Conv2D, Dense, Flatten, MaxPool, Network
from hwconv.zoo import conv_weight
from rtl_gen.synth import ToolError, tool

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits_qdq.onnx"


@pytest.fixture(scope="module")
def digits():
    return compiler.load(str(DIGITS))


# -- protocol --------------------------------------------------------------------------

def test_crc16_is_ccitt_false_as_the_gateware_computes_it():
    assert protocol.crc16(b"123456789") == 0x29B1
    params = catalog.CRC16_CCITT_FALSE(8)
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 64, 300):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert protocol.crc16(data) == params.compute(data)


def test_request_and_reply_layout():
    req = protocol.encode_request(b"\x01\x02\x03")
    assert req[:2] == b"\xa5\x5a" and req[2:4] == b"\x03\x00" and req[4:7] == b"\x01\x02\x03"
    assert int.from_bytes(req[7:], "little") == protocol.crc16(req[2:7])
    rep = protocol.encode_reply(protocol.OK, b"\xff\x00")
    assert rep[:5] == b"\xa5\x5a\x00\x02\x00"
    assert protocol.parse_reply(rep) == protocol.Reply(protocol.OK, b"\xff\x00")
    err = protocol.parse_reply(protocol.encode_reply(protocol.BAD_CHECKSUM))
    assert err == protocol.Reply(protocol.BAD_CHECKSUM, b"")


def test_every_single_bit_error_in_a_reply_is_refused():
    """A corrupted reply is reported, never mis-read (CRC-16 catches every 1-bit error)."""
    rep = protocol.encode_reply(protocol.OK, bytes(range(10)))
    for bit in range(8 * len(rep)):
        bad = bytearray(rep)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(protocol.ProtocolError):
            protocol.parse_reply(bytes(bad))


@pytest.mark.parametrize("data, match", [
    (b"", "short reply"),
    (b"\x5a\xa5\x00\x00\x00\x00\x00", "sync"),
    (protocol.encode_reply(protocol.OK, b"abc")[:-1], "announces 3"),
    (protocol.encode_reply(protocol.OK, b"abc") + b"x", "announces 3"),
])
def test_malformed_replies_are_refused(data, match):
    with pytest.raises(protocol.ProtocolError, match=match):
        protocol.parse_reply(data)


class _Port:
    """A serial port stand-in that returns ``data`` and then times out."""

    def __init__(self, data):
        self.data = bytearray(data)
        self.timeout = None

    def read(self, n):
        out, self.data = bytes(self.data[:n]), self.data[n:]
        return out


def test_a_short_reply_times_out_with_a_count():
    rep = protocol.encode_reply(protocol.OK, bytes(10))
    with pytest.raises(protocol.ProtocolError, match=r"short reply: got 9 of 17 bytes"):
        protocol.read_reply(_Port(rep[:9]), timeout=0.2)
    assert protocol.read_reply(_Port(rep), timeout=0.2).payload == bytes(10)


def test_board_info_round_trip_and_fingerprint(digits):
    info = protocol.BoardInfo(64, 10, 0x12345678)
    assert protocol.BoardInfo.from_payload(info.to_payload()) == info
    fp = protocol.fingerprint(digits.qnet)
    # exact transforms keep the function, so the compiled network has the same identity
    assert protocol.fingerprint(compiler.compile(digits, max_multipliers=40).qnet) == fp
    from hwconv import zoo

    net = zoo.small_cnn()
    other = compiler.load(net, calibration=np.random.default_rng(0).uniform(0, 1, (8, 8, 8, 1)))
    assert protocol.fingerprint(other.qnet) != fp


def test_frame_bytes_are_channels_last_codes():
    codes = np.array([[[-128, 1], [2, 127]]])
    assert protocol.frame_bytes(codes, "int8") == bytes([0x80, 1, 2, 0x7f])
    back = protocol.frame_codes(bytes([0x80, 1, 2, 0x7f]), "int8", (1, 2, 2))
    np.testing.assert_array_equal(back, codes)
    assert protocol.frame_bytes([255, 0], "uint8") == b"\xff\x00"


# -- clocks and UART rates ---------------------------------------------------------------

def _tool_output(cmd):
    try:
        exe = tool(cmd[0])
    except ToolError:
        pytest.skip(f"{cmd[0]} is not installed")
    return subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("mhz", [16, 24, 30, 36, 48, 100])
def test_ice40_pll_matches_icepll(mhz):
    out = _tool_output(["yowasp-icepll", "-i", "12", "-o", str(mhz)])
    got = {k: int(v) for k, v in re.findall(r"^(DIVR|DIVF|DIVQ|FILTER_RANGE):\s+(\d+)", out,
                                            re.MULTILINE)}
    s = ice40_pll(12, mhz)
    assert (s.divr, s.divf, s.divq, s.filter_range) == \
        (got["DIVR"], got["DIVF"], got["DIVQ"], got["FILTER_RANGE"])
    achieved = float(re.search(r"F_PLLOUT:\s+([\d.]+) MHz \(achieved\)", out).group(1))
    assert s.f_out == pytest.approx(achieved, abs=1e-3)


@pytest.mark.parametrize("mhz", [33.333, 40, 50, 65, 100])
def test_ecp5_pll_matches_ecppll(mhz):
    out = _tool_output(["yowasp-ecppll", "-i", "25", "-o", str(mhz)])
    s = ecp5_pll(25, mhz)
    assert s.clki_div == int(re.search(r"Refclk divisor: (\d+)", out).group(1))
    assert s.clkfb_div == int(re.search(r"Feedback divisor: (\d+)", out).group(1))
    assert s.clkop_div == int(re.search(r"clkout0 divisor: (\d+)", out).group(1))


def test_pll_limits_and_board_clocks():
    with pytest.raises(HwconvError, match="16..275 MHz"):
        ice40_pll(12, 13)
    ice = boards.board("icebreaker")
    assert ice.clock() == (None, 12.0)               # the oscillator, no PLL
    settings, mhz = ice.clock(24)
    assert mhz == 24 and settings.divf == 63
    with pytest.raises(HwconvError, match="PLL cannot make"):
        boards.board("ULX3S").clock(48)              # ecppll's closest is 46.875
    with pytest.raises(HwconvError, match="unknown board"):
        boards.board("arty")


def test_baud_divisor():
    assert baud_divisor(12e6, 115200) == 104
    assert baud_divisor(50e6, 115200) == 434
    with pytest.raises(HwconvError, match="off by"):
        baud_divisor(1e6, 115200)
    with pytest.raises(HwconvError, match="too fast"):
        baud_divisor(12e6, 4e6)


# -- platforms ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, clock, pins, pll", [
    ("icebreaker", None, {"uart_0__rx__io": "6", "uart_0__tx__io": "9",
                          "led_0__io": "11", "led_1__io": "37"}, None),
    ("icebreaker", 24, {"clk12_0__io": "35"}, "SB_PLL40_PAD"),
    ("ulx3s", None, {"uart_0__rx__io": "M1", "uart_0__tx__io": "L4", "led_0__io": "B2",
                     "clk25_0__io": "G2"}, "EHXPLLL"),
])
def test_platform_files(digits, name, clock, pins, pll):
    """The platform gets the UART pins, two LEDs, the clock (PLL and its constraint) and
    a Yosys script that writes the statistics the fit check reads (and no -dsp)."""
    board = boards.board(name)
    c = compiler.compile(digits, max_multipliers=40)
    top = BoardTop(board, c, clock_mhz=clock)
    plan = board.platform().build(top, name=board_build.NAME, do_build=False,
                                  script_after_synth="tee -q -o x.stat.json stat -json")
    cons = plan.files[f"{board_build.NAME}.{'pcf' if board.family == 'ice40' else 'lpf'}"]
    for port, pin in pins.items():
        assert re.search(rf'{port}"? (SITE ")?{pin}\b', cons), (port, pin, cons)
    rtlil = plan.files[f"{board_build.NAME}.il"]
    ys = plan.files[f"{board_build.NAME}.ys"]
    assert "stat -json" in ys and "-dsp" not in ys
    if pll is None:
        assert "SB_PLL40" not in rtlil
    else:
        assert f"cell \\{pll}" in rtlil
        assert re.search(r"(set_frequency|FREQUENCY NET) .*sync_pll_clk", cons)


# -- the pipeline under a board's budget -------------------------------------------------

def wide_cnn(folder):
    """8x8x1 -> 3x3 conv 64 -> ReLU -> 3x3 conv 64 -> ReLU -> 2x2 max-pool -> dense 10:
    37,000 weights, 295 Kbit against the UP5K's 120 Kbit of block RAM.  Saved in
    ``folder`` as float ONNX with its calibration inputs; returns their paths."""
    rng = np.random.default_rng(3)
    net = Network((8, 8, 1))
    x = net.input
    for k, c_in in enumerate((1, 64)):
        x = net.add(f"conv{k}", Conv2D(conv_weight(rng, 64, 3, c_in), np.zeros(64),
                                       padding="same"), x)
        x = net.add(f"relu{k}", Activation("relu"), x)
    x = net.add("flat", Flatten(), net.add("pool", MaxPool(2), x))
    net.add("fc", Dense(rng.normal(0, 0.02, (10, net.shapes[x][0])), np.zeros(10)), x)
    model, cal = folder / "wide_cnn.onnx", folder / "cal.npy"
    export_onnx(net, model)
    np.save(cal, rng.uniform(0, 1, (16, 1, 8, 8)).astype(np.float32))     # NCHW
    return model, cal


def test_a_model_too_big_for_the_icebreaker_fails_needed_vs_available(tmp_path):
    """Its smallest folding needs several times the UP5K's 30 block RAMs: refused before
    any tool runs, each short resource named with what it needs and what the part has;
    the CLI exits 2 and leaves no output folder."""
    onnx_path, cal = wide_cnn(tmp_path)
    model = compiler.load(str(onnx_path), calibration=np.load(cal))
    with pytest.raises(FitError, match=r"wide_cnn does not fit the iCEBreaker \(iCE40UP5K\)"
                                       r": its smallest folding .* needs .*BRAM (\d+) "
                                       r"\(the part has 30\)") as e:
        board_build.choose_pipeline(boards.board("icebreaker"), model)
    assert int(re.search(r"BRAM (\d+)", str(e.value)).group(1)) > 60
    out = tmp_path / "out"
    assert main(["board", "build", "icebreaker", str(onnx_path), "--calibration", str(cal),
                 "-o", str(out)]) == 2
    assert not out.exists()


def test_digits_fits_the_icebreaker_at_its_smallest_folding(digits):
    """One multiplier per MAC array, limb-serial requantizers with their limb tables in
    block RAM, plain register slices: about 4,800 of the UP5K's 5,280 logic cells
    (placed: 4,774), and no more DSP or block RAM than the part has."""
    board = boards.board("icebreaker")
    c = board_build.choose_pipeline(board, digits)
    assert c.plan.skid is False and c.plan.backend == "ice40"
    assert c.plan.multipliers == 4
    assert c.plan.fps >= board_build.uart_fps(c.qnet, 115200)


def test_board_budget_picks_the_smallest_pipeline_that_keeps_up_with_the_uart(digits):
    ulx = boards.board("ulx3s")
    c = board_build.choose_pipeline(ulx, digits)
    assert c.plan.clock_mhz == 50.0
    uart = board_build.uart_fps(c.qnet, 115200)
    assert c.plan.fps >= uart
    fast = board_build.choose_pipeline(ulx, digits, fps=150000)
    assert fast.plan.fps >= 150000 and fast.plan.multipliers > c.plan.multipliers
    with pytest.raises(FitError, match="needs <= 50 cycles/frame; the fastest folding "
                                       "that fits takes"):
        board_build.choose_pipeline(ulx, digits, fps=1e6)
    fixed = board_build.choose_pipeline(ulx, digits, max_multipliers=40)
    assert fixed.plan.multipliers <= 40


# -- what the flow reads from the tools ----------------------------------------------------

def test_nextpnr_utilisation_from_a_failed_log(tmp_path):
    log = tmp_path / "x.tim"
    log.write_text("Info: Device utilisation:\nInfo: \t         ICESTORM_LC:  11020/  5280   "
                   "208%\nInfo: \t        ICESTORM_RAM:     14/    30    46%\n"
                   "ERROR: Unable to place cell 'x'\n")
    util = board_build._log_utilisation(log)
    assert util == {"ICESTORM_LC": (11020, 5280), "ICESTORM_RAM": (14, 30)}
    assert board_build._over(util) == ["logic cells (LUT4+FF) (ICESTORM_LC) 11020 needed, "
                                       "5280 available"]


def test_synthesis_overflow_names_each_resource():
    from hwconv.devices import device
    from rtl_gen.synth import Resources

    res = Resources(lut=10650, ff=4560, dsp=0, bram=13)
    with pytest.raises(FitError, match=r"after synthesis: LUT4 10650 needed, 5280 "
                                       r"available$"):
        board_build._check_synth(res, device("ice40-up5k"), boards.board("icebreaker"))


def test_timing_miss_names_the_clock_and_the_critical_path(tmp_path):
    board = boards.board("icebreaker")
    pnr = {"fmax": {"clk": {"achieved": 24.4, "constraint": 15.9439}},
           "critical_paths": [{"from": "clk", "to": "clk", "path": [
               {"from": {"cell": "a_DFF"}, "to": {"cell": "b"}, "delay": 1.0},
               {"from": {"cell": "b"}, "to": {"cell": "c_DFF"}, "delay": 2.0}]}]}
    assert board_build._timing(pnr, 15.9375, board, tmp_path)[:3] == ("clk", 24.4, 15.9439)
    with pytest.raises(FitError, match=r"^timing fails on the iCEBreaker \(iCE40UP5K\): "
                                       r"clock clk reaches 24.4 MHz, 32 MHz requested; "
                                       r"critical path a_DFF -> c_DFF"):
        board_build._timing(pnr, 32, board, tmp_path)
