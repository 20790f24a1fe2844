"""The UART frame protocol between a host and an hwconv board, and its host side.

One frame at a time (stop and wait): the host sends a request, the board answers with one
reply, and only then does the host send the next request.  Multi-byte fields are
little-endian; the checksum is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value
0xFFFF, no reflection, no final XOR; ``crc16(b"123456789") == 0x29B1``).

Request, host -> board::

    A5 5A | LEN (2) | PAYLOAD (LEN bytes) | CRC (2)      CRC over LEN and PAYLOAD

* ``LEN`` equal to the model's input size: ``PAYLOAD`` is one input frame, its int8/uint8
  codes in the pipeline's stream order (channels-last, raster order: ``x[h, w, c]``).
* ``LEN = 0``: identify; the board answers with :data:`INFO_BYTES` bytes ``IN_LEN (2)
  OUT_LEN (2) FINGERPRINT (4)`` (see :func:`fingerprint`), so the host can check that the
  bitstream runs the model it has.

Reply, board -> host::

    A5 5A | STATUS (1) | LEN (2) | PAYLOAD (LEN bytes) | CRC (2)    CRC over STATUS..PAYLOAD

``STATUS`` is :data:`OK` (``PAYLOAD`` is the output frame's codes, channels-last) or an
error with ``LEN = 0``:

* :data:`BAD_CHECKSUM`: the request's CRC did not match; the frame was dropped (nothing
  entered the pipeline).
* :data:`BAD_LENGTH`: ``LEN`` was neither the input size nor 0; the board then ignores
  the line until it has been idle for the timeout, since it cannot know where such a
  frame ends.
* :data:`TIMEOUT`: the line went idle for the timeout in the middle of a request (a
  short frame); the bytes received are dropped.

After any error the board waits for the next ``A5 5A``; the next good frame is processed
normally.  The host never interprets a reply whose CRC, sync bytes or length are wrong:
:class:`ProtocolError` names what was wrong.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np

from hwconv.errors import HwconvError

__all__ = ["SYNC", "OK", "BAD_CHECKSUM", "BAD_LENGTH", "TIMEOUT", "STATUS_NAMES",
           "INFO_BYTES", "crc16", "encode_request", "encode_reply", "parse_reply",
           "read_reply", "Reply", "BoardInfo", "ProtocolError", "NoReply", "BoardError",
           "fingerprint",
           "frame_bytes", "frame_codes", "BoardLink"]

SYNC = b"\xa5\x5a"
OK, BAD_CHECKSUM, BAD_LENGTH, TIMEOUT = 0, 1, 2, 3
STATUS_NAMES = {OK: "ok", BAD_CHECKSUM: "bad checksum", BAD_LENGTH: "bad length",
                TIMEOUT: "timeout (short frame)"}
INFO_BYTES = 8
_REPLY_HEADER = 5           # sync (2), status (1), length (2)


class ProtocolError(HwconvError):
    """A reply that cannot be trusted: short, corrupted, or not what was asked for."""


class NoReply(ProtocolError):
    """Not one byte of a reply arrived before the timeout."""


class BoardError(HwconvError):
    """The board rejected a request (its reply names the reason)."""

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE of ``data`` (bytes), continuing from ``crc``."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        crc &= 0xFFFF
    return crc


def _u16(n):
    return int(n).to_bytes(2, "little")


def encode_request(payload):
    """A request frame carrying ``payload`` (bytes; empty for identify)."""
    body = _u16(len(payload)) + bytes(payload)
    return SYNC + body + _u16(crc16(body))


def encode_reply(status, payload=b""):
    """A reply frame (what the board sends; used by tests and board models)."""
    body = bytes([status]) + _u16(len(payload)) + bytes(payload)
    return SYNC + body + _u16(crc16(body))


@dataclass(frozen=True)
class Reply:
    status: int
    payload: bytes


def parse_reply(data):
    """The :class:`Reply` in ``data`` (one whole reply, nothing more).

    Raises
    ------
    ProtocolError
        Missing sync bytes, a length that disagrees with the bytes present, or a CRC
        mismatch.
    """
    data = bytes(data)
    if len(data) < _REPLY_HEADER + 2:
        raise ProtocolError(f"short reply: {len(data)} bytes, a reply has at least "
                            f"{_REPLY_HEADER + 2}")
    if data[:2] != SYNC:
        raise ProtocolError(f"reply starts with {data[:2].hex()}, not the sync bytes "
                            f"{SYNC.hex()}")
    n = int.from_bytes(data[3:5], "little")
    if len(data) != _REPLY_HEADER + n + 2:
        raise ProtocolError(f"reply announces {n} payload bytes but carries "
                            f"{len(data) - _REPLY_HEADER - 2}")
    got = int.from_bytes(data[-2:], "little")
    want = crc16(data[2:-2])
    if got != want:
        raise ProtocolError(f"corrupted reply: CRC {got:04x}, computed {want:04x}")
    status = data[2]
    if status not in STATUS_NAMES:
        raise ProtocolError(f"reply has unknown status {status}")
    return Reply(status, data[_REPLY_HEADER:-2])


def _read_exactly(port, n, deadline, have=0):
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        port.timeout = left
        chunk = port.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    if len(buf) < n:
        error = NoReply if have + len(buf) == 0 else ProtocolError
        raise error(f"short reply: got {have + len(buf)} of {have + n} bytes before the "
                    f"timeout")
    return bytes(buf)


def read_reply(port, timeout):
    """Read one reply from ``port`` (a pyserial-like object) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    head = _read_exactly(port, _REPLY_HEADER, deadline)
    if head[:2] != SYNC:
        raise ProtocolError(f"reply starts with {head[:2].hex()}, not the sync bytes "
                            f"{SYNC.hex()}")
    n = int.from_bytes(head[3:5], "little")
    rest = _read_exactly(port, n + 2, deadline, have=_REPLY_HEADER)
    return parse_reply(head + rest)


def fingerprint(qnet, frames=16, seed=0x68776376):
    """32-bit identity of the integer function ``qnet`` computes and of its input and
    output quantization.

    A hash of the golden model's outputs on fixed pseudo-random frames and of the
    input/output scales and zero points: the same for every folding and clock of one
    network (and across exact transforms), different for another network, so the host
    can tell whether a bitstream runs its model.
    """
    from hwconv import golden

    q = qnet.input_q
    rng = np.random.default_rng(seed)
    x = rng.integers(q.qmin, q.qmax + 1, (frames,) + tuple(qnet.input_shape))
    y = golden.run(qnet, x)
    h = hashlib.sha256(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    io = [(q.scale, q.zero_point, q.dtype) for q in (qnet.input_q, qnet.output_q)]
    h.update(repr((tuple(qnet.input_shape), tuple(qnet.output_shape), io)).encode())
    return int.from_bytes(h.digest()[:4], "little")


@dataclass(frozen=True)
class BoardInfo:
    """What an identify request returns."""

    in_bytes: int
    out_bytes: int
    fingerprint: int

    @classmethod
    def from_payload(cls, payload):
        if len(payload) != INFO_BYTES:
            raise ProtocolError(f"identify reply has {len(payload)} payload bytes, not "
                                f"{INFO_BYTES}")
        return cls(int.from_bytes(payload[0:2], "little"),
                   int.from_bytes(payload[2:4], "little"),
                   int.from_bytes(payload[4:8], "little"))

    def to_payload(self):
        return _u16(self.in_bytes) + _u16(self.out_bytes) + \
            self.fingerprint.to_bytes(4, "little")


def frame_bytes(codes, dtype):
    """Bytes of one frame of integer codes (NHWC without the batch) in stream order."""
    return np.asarray(codes, dtype=np.int64).astype(np.dtype(dtype)).tobytes()


def frame_codes(payload, dtype, shape):
    """Integer codes (int64, ``shape``) of a reply payload."""
    return np.frombuffer(bytes(payload), dtype=np.dtype(dtype)).astype(np.int64) \
        .reshape(shape)


class BoardLink:
    """Host side of the protocol over a serial port.

    Parameters
    ----------
    port : str or serial.Serial-like
        A device (``/dev/ttyUSB1``), a pyserial URL (``socket://host:port``, ``loop://``)
        or an open port object with ``read``/``write``/``reset_input_buffer``.
    baud : int
    timeout : float
        Seconds to wait for each reply beyond its transmission time.
    """

    def __init__(self, port, baud=115200, *, timeout=2.0):
        if isinstance(port, str):
            import serial

            try:
                port = serial.serial_for_url(port, baudrate=baud, timeout=timeout)
            except (serial.SerialException, ValueError) as e:
                raise HwconvError(f"cannot open serial port {port}: {e}") from None
            self._owned = True
        else:
            self._owned = False
        self.port = port
        self.name = getattr(port, "name", None) or getattr(port, "port", None) or "the port"
        self.baud = baud
        self.timeout = timeout

    def close(self):
        if self._owned:
            self.port.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _line_seconds(self, n_bytes):
        return 10 * n_bytes / self.baud

    def transact(self, payload, reply_bytes=0):
        """Send one request; return the :class:`Reply` (any status)."""
        self.port.reset_input_buffer()
        self.port.write(encode_request(payload))
        wait = self.timeout + self._line_seconds(len(payload) + 6 + reply_bytes + 7)
        return read_reply(self.port, wait)

    def identify(self):
        """The board's :class:`BoardInfo` (input/output sizes and model fingerprint)."""
        try:
            r = self.transact(b"", INFO_BYTES)
        except NoReply:
            raise NoReply(f"no reply from the board on {self.name} within "
                          f"{self.timeout:g} s: is its bitstream loaded, is the baud rate "
                          f"{self.baud}?") from None
        if r.status != OK:
            raise BoardError(f"board rejected the identify request: "
                             f"{STATUS_NAMES[r.status]}", r.status)
        return BoardInfo.from_payload(r.payload)

    def run_frame(self, payload, out_bytes, *, retries=0, frame=0):
        """Output bytes of one input frame.

        A frame the board rejected, or whose reply arrived corrupted or short, is resent
        up to ``retries`` times (the board keeps no state between frames); then the last
        :class:`BoardError` or :class:`ProtocolError` is raised, naming the frame.
        """
        tries = f" ({retries + 1} attempts)" if retries else ""
        for _ in range(retries + 1):
            try:
                r = self.transact(payload, out_bytes)
            except ProtocolError as e:
                error = ProtocolError(f"frame {frame}: {e}{tries}")
                continue
            if r.status == OK:
                if len(r.payload) != out_bytes:
                    raise ProtocolError(f"frame {frame}: reply has {len(r.payload)} output "
                                        f"bytes, the model has {out_bytes}")
                return r.payload
            error = BoardError(f"frame {frame}: board rejected it "
                               f"({STATUS_NAMES[r.status]}){tries}", r.status)
        raise error
