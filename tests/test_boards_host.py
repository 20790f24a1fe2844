"""``hwconv board run``: the host side of the UART protocol over a real (pseudo-)terminal.

A thread plays the board behind a pty (requests parsed with :mod:`boards.protocol`,
outputs from the golden model), so pyserial opens an actual tty device.  Checked: OUT
equals ``hwconv golden``'s OUT for the same input; a board running another model, a
rejected frame, a corrupted reply and a short reply are each reported (exit 2, one line)
and never mis-read; ``--retries`` resends a rejected frame.
"""

import os
import re
import select
import threading
import tty
from pathlib import Path

import numpy as np
import pytest

from boards import protocol
from hwconv import compiler, datasets, golden
from hwconv.cli import main

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits_qdq.onnx"
pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pty")


class FakeBoard:
    """The board's protocol behaviour in Python; ``mode`` injects one fault."""

    def __init__(self, qnet, mode="ok"):
        self.qnet, self.mode = qnet, mode
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        os.close(self.master)
        os.close(self.slave)

    def _reply(self, payload):
        q = self.qnet
        if not payload:
            fp = protocol.fingerprint(q) ^ (1 if self.mode == "other_model" else 0)
            info = protocol.BoardInfo(int(np.prod(q.input_shape)),
                                      int(np.prod(q.output_shape)), fp)
            return protocol.encode_reply(protocol.OK, info.to_payload())
        self.frames += 1
        if self.mode == "reject" or (self.mode == "flaky" and self.frames == 1):
            return protocol.encode_reply(protocol.BAD_CHECKSUM)
        x = protocol.frame_codes(payload, q.input_q.dtype, q.input_shape)
        y = golden.run(q, x[None])[0]
        rep = protocol.encode_reply(protocol.OK, protocol.frame_bytes(y, q.output_q.dtype))
        if self.mode == "corrupt" or (self.mode == "noisy" and self.frames == 1):
            rep = rep[:6] + bytes([rep[6] ^ 0x10]) + rep[7:]
        if self.mode == "short":
            rep = rep[:9]
        return rep

    def _answer(self, body):
        if self.mode != "silent":
            os.write(self.master, self._reply(body[2:]))

    def _serve(self):
        buf = bytearray()
        while not self._stop.is_set():
            if select.select([self.master], [], [], 0.02)[0]:
                buf += os.read(self.master, 4096)
            while True:
                k = buf.find(protocol.SYNC)
                if k < 0 or len(buf) < k + 4:
                    break
                n = int.from_bytes(buf[k + 2:k + 4], "little")
                if len(buf) < k + 6 + n:
                    break
                body, crc = bytes(buf[k + 2:k + 4 + n]), buf[k + 4 + n:k + 6 + n]
                del buf[:k + 6 + n]
                if protocol.crc16(body) != int.from_bytes(crc, "little"):
                    os.write(self.master, protocol.encode_reply(protocol.BAD_CHECKSUM))
                else:
                    self._answer(body)


@pytest.fixture(scope="module")
def model():
    return compiler.load(str(DIGITS))


@pytest.fixture
def inputs(tmp_path):
    x = datasets.load("digits").x_test[:5]
    path = tmp_path / "in.npy"
    np.save(path, x)
    return x, str(path)


def test_board_run_writes_what_golden_writes(model, inputs, tmp_path):
    _, path = inputs
    out, gold = tmp_path / "out.npy", tmp_path / "golden.npy"
    with FakeBoard(compiler.compile(model, max_multipliers=40).qnet) as board:
        assert main(["board", "run", "icebreaker", str(DIGITS), "--port", board.port,
                     "--input", path, "--output", str(out)]) == 0
        assert board.frames == 5
    assert main(["golden", str(DIGITS), "--input", path, "--output", str(gold)]) == 0
    y = np.load(out)
    assert y.dtype == np.float32 and y.shape == (5, 10)
    np.testing.assert_array_equal(y, np.load(gold))


@pytest.mark.parametrize("mode, match", [
    ("other_model", "fingerprint .* the bitstream is for another model"),
    ("reject", "frame 0: board rejected it \\(bad checksum\\)"),
    ("corrupt", "frame 0: corrupted reply: CRC"),
    ("short", "short reply: got 9 of 17 bytes"),
    ("silent", "no reply from the board on /dev/pts/\\d+ within 0.3 s: is its bitstream "
               "loaded, is the baud rate 115200\\?"),
])
def test_board_run_reports_faults_and_writes_nothing(model, inputs, tmp_path, capsys, mode,
                                                     match):
    _, path = inputs
    out = tmp_path / "out.npy"
    with FakeBoard(model.qnet, mode) as board:
        assert main(["board", "run", "icebreaker", str(DIGITS), "--port", board.port,
                     "--input", path, "--output", str(out), "--timeout", "0.3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hwconv: error: ") and len(err.splitlines()) == 1
    assert re.search(match, err), err
    assert not out.exists()


@pytest.mark.parametrize("mode", ["flaky", "noisy"])
def test_retries_resend_a_rejected_frame_or_a_corrupted_reply(model, inputs, tmp_path, mode):
    x, path = inputs
    out = tmp_path / "out.npy"
    with FakeBoard(model.qnet, mode) as board:
        assert main(["board", "run", "icebreaker", str(DIGITS), "--port", board.port,
                     "--input", path, "--output", str(out), "--retries", "1"]) == 0
        assert board.frames == 6
    np.testing.assert_array_equal(np.load(out), model.golden(x))


def test_an_unopenable_port_is_one_line(inputs, tmp_path, capsys):
    _, path = inputs
    assert main(["board", "run", "ulx3s", str(DIGITS), "--port", str(tmp_path / "nope"),
                 "--input", path, "--output", str(tmp_path / "o.npy")]) == 2
    assert "cannot open serial port" in capsys.readouterr().err
