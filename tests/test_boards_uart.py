"""The board's UART path: receiver, transmitter and frame loader in the Amaranth
simulator around an echo core (every error path, quickly), then the whole board design
minus its PLL (UART + frame loader + the digits pipeline) in cocotb under Icarus, bytes
in and bytes out against the golden model.
"""

from pathlib import Path

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

import boards
from boards import build as board_build
from boards import protocol
from boards import sim as board_sim
from boards.top import BoardCore
from boards.uart import FrameLoader, UartRx, UartTx
from hwconv import compiler, datasets, golden
from hwconv.errors import HwconvError
from sim.runner import simulator_available

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits_qdq.onnx"
DIV = 4
TIMEOUT = 200


class Echo(wiring.Component):
    """UART + frame loader whose pipeline is a wire: the reply repeats the frame."""

    def __init__(self, shape=(2, 3, 2), lanes=2, dtype="int8"):
        self.loader = FrameLoader(shape, shape, dtype, dtype, in_lanes=lanes, out_lanes=lanes,
                                  timeout=TIMEOUT, fingerprint=0xDEADBEEF)
        super().__init__({"rx": In(1, init=1), "tx": Out(1), "busy": Out(1),
                          "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = UartRx(DIV)
        m.submodules.tx = tx = UartTx(DIV)
        m.submodules.loader = ld = self.loader
        wiring.connect(m, rx.o, ld.rx)
        wiring.connect(m, ld.tx, tx.i)
        wiring.connect(m, ld.to_core, ld.from_core)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx), self.busy.eq(ld.busy),
                     self.error.eq(ld.error)]
        return m


def run_echo(steps, dut=None):
    """Send each step's bytes (``(data, expected_reply_len)``; a byte given as
    ``("bad_stop", b)`` is sent with a low stop bit), wait for the reply and an idle gap;
    return the bytes received after each step and the error LED after it."""
    dut = dut or Echo()
    got, leds = [], []
    received = bytearray()

    async def monitor(ctx):
        while True:
            await ctx.tick()
            if ctx.get(dut.tx) == 0:
                await ctx.tick().repeat(DIV // 2)
                v = 0
                for i in range(8):
                    await ctx.tick().repeat(DIV)
                    v |= ctx.get(dut.tx) << i
                await ctx.tick().repeat(DIV)
                assert ctx.get(dut.tx) == 1, "stop bit"
                received.append(v)

    async def host(ctx):
        for data, reply_len in steps:
            start = len(received)
            for byte in data:
                stop = 1
                if isinstance(byte, tuple):
                    byte, stop = byte[1], 0
                for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [stop]:
                    ctx.set(dut.rx, bit)
                    await ctx.tick().repeat(DIV)
                ctx.set(dut.rx, 1)
            for _ in range(100 * DIV * (reply_len + 2) + 2 * TIMEOUT):
                if len(received) - start >= reply_len:
                    break
                await ctx.tick()
            await ctx.tick().repeat(2 * TIMEOUT)
            got.append(bytes(received[start:]))
            leds.append((ctx.get(dut.busy), ctx.get(dut.error)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(monitor, background=True)
    sim.add_testbench(host)
    sim.run()
    return got, leds


PAYLOAD = bytes([0x80, 0x7F, 1, 2, 3, 4, 250, 6, 7, 8, 9, 10])


def test_echo_frames_identify_and_a_corrupted_frame():
    good = protocol.encode_request(PAYLOAD)
    bad = board_sim.corrupted(protocol.encode_request(PAYLOAD[::-1]))
    ok = protocol.encode_reply(protocol.OK, PAYLOAD)
    steps = [(good, len(ok)), (protocol.encode_request(b""), 15), (bad, 7),
             (protocol.encode_request(PAYLOAD[::-1]), len(ok))]
    got, leds = run_echo(steps)
    assert got[0] == ok
    info = protocol.BoardInfo.from_payload(protocol.parse_reply(got[1]).payload)
    assert info == protocol.BoardInfo(12, 12, 0xDEADBEEF)
    assert got[2] == protocol.encode_reply(protocol.BAD_CHECKSUM)
    assert got[3] == protocol.encode_reply(protocol.OK, PAYLOAD[::-1])
    assert leds == [(0, 0), (0, 0), (0, 1), (0, 0)]


def test_bad_length_is_refused_and_its_bytes_discarded():
    """A wrong length is answered at once; the rest of that frame (which could hold a
    sync pattern) is ignored until the line is idle, then a good frame is processed."""
    wrong = protocol.encode_request(PAYLOAD + b"\xa5\x5a\x0c\x00")
    steps = [(wrong, 7), (protocol.encode_request(PAYLOAD), 19)]
    got, leds = run_echo(steps)
    assert got == [protocol.encode_reply(protocol.BAD_LENGTH),
                   protocol.encode_reply(protocol.OK, PAYLOAD)]
    assert leds == [(0, 1), (0, 0)]


def test_short_frame_times_out_and_noise_before_sync_is_ignored():
    short = protocol.encode_request(PAYLOAD)[:-3]
    noise = b"\x00\xa5\x00\xff\x5a"
    steps = [(short, 7), (noise + protocol.encode_request(PAYLOAD), 19)]
    got, _ = run_echo(steps)
    assert got == [protocol.encode_reply(protocol.TIMEOUT),
                   protocol.encode_reply(protocol.OK, PAYLOAD)]


def test_a_byte_with_a_framing_error_is_dropped():
    req = list(protocol.encode_request(PAYLOAD))
    req[6] = ("bad_stop", req[6])            # the frame becomes one byte short
    got, _ = run_echo([(req, 7), (protocol.encode_request(PAYLOAD), 19)])
    assert got == [protocol.encode_reply(protocol.TIMEOUT),
                   protocol.encode_reply(protocol.OK, PAYLOAD)]


def test_single_lane_uint8_frames():
    payload = bytes(range(250, 256)) + bytes(range(6))
    dut = Echo(shape=(12,), lanes=1, dtype="uint8")
    got, _ = run_echo([(protocol.encode_request(payload), 19)], dut)
    assert got == [protocol.encode_reply(protocol.OK, payload)]


def test_frame_loader_refuses_bad_parameters():
    with pytest.raises(HwconvError, match="lanes=4 must divide the 6 values"):
        FrameLoader((3, 2), (6,), "int8", "int8", in_lanes=4, timeout=10)
    with pytest.raises(HwconvError, match="16-bit length"):
        FrameLoader((256, 256, 1), (10,), "int8", "int8", timeout=10)
    with pytest.raises(HwconvError, match="divisor"):
        UartTx(2)


# -- the whole board design in cocotb ------------------------------------------------------

@pytest.mark.cocotb
@pytest.mark.skipif(not simulator_available("icarus"),
                    reason="Icarus Verilog (iverilog) is not installed")
@pytest.mark.parametrize("config", ["generic40", "icebreaker"])
def test_board_core_through_the_uart_matches_golden(tmp_path, config):
    """Several digits frames, an identify, a frame with a corrupted checksum (rejected,
    and the next frame still processed), a wrong length and a short frame.  Two
    pipelines: 40 multipliers on the generic back end, and the iCEBreaker's own choice
    (4 multipliers in SB_MAC16, limb tables in block RAM, plain register slices),
    simulated with Yosys's iCE40 cell models."""
    family = None
    if config == "icebreaker":
        c = board_build.choose_pipeline(boards.board("icebreaker"), str(DIGITS))
        assert (c.plan.backend, c.plan.skid, c.plan.multipliers) == ("ice40", False, 4)
        family = "ice40"
    else:
        c = compiler.compile(str(DIGITS), max_multipliers=40, clock_mhz=12)
    x = datasets.load("digits").x_test[:4]
    codes = c.model.quantize_input(x)
    fp = protocol.fingerprint(c.qnet)
    div, timeout = 4, 40 * 4 * 10
    core = BoardCore(c, divisor=div, timeout=timeout, fingerprint=fp)
    frames = [board_sim.frame_transaction(c, codes[k], f"frame {k}") for k in range(4)]
    good2 = bytes.fromhex(frames[2]["send"])
    txs = [frames[0],
           board_sim.identify_transaction(c, fp),
           frames[1],
           board_sim.error_transaction(board_sim.corrupted(good2, byte=20, mask=0x40),
                                       protocol.BAD_CHECKSUM, "frame 2, corrupted"),
           frames[2],
           board_sim.error_transaction(protocol.encode_request(good2[4:-3]),
                                       protocol.BAD_LENGTH, "63 bytes"),
           board_sim.error_transaction(good2[:-5], protocol.TIMEOUT, "frame 2, cut short"),
           frames[3]]
    board_sim.write_testbench(tmp_path, core, txs, divisor=div, gap_cycles=2 * timeout,
                              family=family)
    result = board_sim.run_testbench(tmp_path)
    # the host side decodes what the RTL sent: outputs equal the golden model
    ok = [r for r in result.replies if r.status == protocol.OK and len(r.payload) == 10]
    got = np.stack([protocol.frame_codes(r.payload, "int8", (10,)) for r in ok])
    np.testing.assert_array_equal(got, golden.run(c.qnet, codes))
    assert [r.status for r in result.replies] == [0, 0, 0, protocol.BAD_CHECKSUM, 0,
                                                   protocol.BAD_LENGTH, protocol.TIMEOUT, 0]
    assert (tmp_path / "Makefile").exists() and (tmp_path / "uart_tb.py").exists()
