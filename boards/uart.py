"""UART (8N1) receiver and transmitter, and the frame loader that speaks
:mod:`boards.protocol` to the host and streams frames through a pipeline.

Every component here runs in the ``sync`` domain; the bit period is ``divisor`` clock
cycles (:func:`baud_divisor`).
"""

from __future__ import annotations

import math

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.crc import Processor as CrcProcessor
from amaranth.lib.crc import catalog
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hwconv.errors import HwconvError
from hwconv.hw.stream import beat_signature, elem_shape

from . import protocol

__all__ = ["baud_divisor", "UartRx", "UartTx", "FrameLoader"]

#: Largest baud-rate error (relative) a divisor may leave; 8N1 tolerates about 4 %
#: between both ends together.
MAX_BAUD_ERROR = 0.02


def baud_divisor(clock_hz, baud):
    """Clock cycles per bit for ``baud`` at ``clock_hz``; refuses a rate the clock
    cannot make within :data:`MAX_BAUD_ERROR`."""
    if baud <= 0:
        raise HwconvError(f"baud rate must be positive, not {baud}")
    div = round(clock_hz / baud)
    if div < 4:
        raise HwconvError(f"baud rate {baud} is too fast for a {clock_hz / 1e6:g} MHz clock "
                          f"(needs at least 4 cycles per bit)")
    err = abs(clock_hz / div / baud - 1)
    if err > MAX_BAUD_ERROR:
        raise HwconvError(f"baud rate {baud} at {clock_hz / 1e6:g} MHz is off by "
                          f"{100 * err:.1f} % (limit {100 * MAX_BAUD_ERROR:g} %)")
    return div


def _check_divisor(divisor):
    if not isinstance(divisor, int) or divisor < 4:
        raise HwconvError(f"UART divisor must be an integer >= 4, not {divisor!r}")


class UartRx(wiring.Component):
    """8N1 receiver.

    The line is synchronized (two flip-flops), a start bit is confirmed at its middle and
    each bit is sampled at its middle.  A byte whose stop bit is low is dropped and
    ``framing_error`` pulses; the receiver then waits for the line to go high.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit.

    Attributes
    ----------
    rx : In(1)
        The serial line (idle high).
    o : Out(stream.Signature(8, always_ready=True))
        One ``valid`` pulse per received byte (a UART cannot be stalled).
    framing_error : Out(1)
    """

    def __init__(self, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8, always_ready=True)),
                          "framing_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(div))
        bit = Signal(range(8))
        shreg = Signal(8)
        m.d.comb += self.o.payload.eq(shreg)
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(line):            # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [timer.eq(div - 1), bit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], line)), timer.eq(div - 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
                    with m.Else():
                        m.d.sync += bit.eq(bit + 1)
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(line):
                        m.d.comb += self.o.valid.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.framing_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """8N1 transmitter: takes a byte from ``i`` whenever it is idle.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit.

    Attributes
    ----------
    i : In(stream.Signature(8))
    tx : Out(1)
        The serial line (idle high).
    """

    def __init__(self, divisor):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1)})

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        timer = Signal(range(div))
        left = Signal(range(11))         # bits still to send, start and stop included
        shreg = Signal(10, init=0x3FF)
        m.d.comb += [self.tx.eq(shreg[0]), self.i.ready.eq(left == 0)]
        with m.If(left == 0):
            with m.If(self.i.valid):
                m.d.sync += [shreg.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))),
                             left.eq(10), timer.eq(div - 1)]
        with m.Elif(timer == 0):
            m.d.sync += [shreg.eq(Cat(shreg[1:], Const(1, 1))), left.eq(left - 1),
                         timer.eq(div - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


class FrameLoader(wiring.Component):
    """The board side of :mod:`boards.protocol` around a stream pipeline.

    A request's payload is written into a frame buffer while its CRC is computed; only a
    frame whose CRC matches is streamed into the pipeline (``to_core``), so a corrupted
    frame never reaches it.  The reply's header leaves as soon as the frame is accepted,
    the pipeline's output bytes follow as they appear (``from_core`` is stalled while the
    UART is busy; every stage honours backpressure) and the CRC closes the reply.

    Parameters
    ----------
    in_shape, out_shape : tuple
        The pipeline's input and output tensor shapes (channels last).
    in_dtype, out_dtype : str
        ``"int8"`` or ``"uint8"``.
    in_lanes, out_lanes : int
        Values per beat on ``to_core`` / ``from_core``.
    timeout : int
        Idle cycles that end a request cut short (and the discarding after a bad length).
    fingerprint : int
        32-bit model identity answered to an identify request.

    Attributes
    ----------
    rx : In(stream.Signature(8, always_ready=True))
        Bytes from the UART receiver.
    tx : Out(stream.Signature(8))
        Bytes to the UART transmitter.
    to_core : Out(beat stream)
        Input frames for the pipeline (hwconv beat format, ``last`` on the final beat).
    from_core : In(beat stream)
        The pipeline's output.
    busy : Out(1)
        A request or its reply is in progress.
    error : Out(1)
        The last request was rejected (cleared by the next good frame).
    """

    def __init__(self, in_shape, out_shape, in_dtype, out_dtype, *, in_lanes=1, out_lanes=1,
                 timeout, fingerprint=0):
        self._in_bytes = math.prod(in_shape)
        self._out_bytes = math.prod(out_shape)
        for what, n, lanes in (("input", self._in_bytes, in_lanes),
                               ("output", self._out_bytes, out_lanes)):
            if lanes < 1 or n % lanes:
                raise HwconvError(f"FrameLoader: {what} lanes={lanes} must divide the "
                                  f"{n} values of a frame")
            if n >= 1 << 16:
                raise HwconvError(f"FrameLoader: an {what} frame of {n} bytes exceeds the "
                                  f"protocol's 16-bit length")
        if timeout < 1:
            raise HwconvError(f"FrameLoader: timeout must be >= 1 cycle, not {timeout}")
        self._in_lanes, self._out_lanes = in_lanes, out_lanes
        self._timeout = timeout
        self._info = protocol.BoardInfo(self._in_bytes, self._out_bytes,
                                        fingerprint & 0xFFFFFFFF).to_payload()
        super().__init__({
            "rx": In(stream.Signature(8, always_ready=True)),
            "tx": Out(stream.Signature(8)),
            "to_core": Out(beat_signature(elem_shape(in_dtype), in_lanes)),
            "from_core": In(beat_signature(elem_shape(out_dtype), out_lanes)),
            "busy": Out(1), "error": Out(1),
        })

    @property
    def in_bytes(self):
        return self._in_bytes

    @property
    def out_bytes(self):
        return self._out_bytes

    def elaborate(self, platform):
        m = Module()
        li, lo = self._in_lanes, self._out_lanes
        n_in, n_out = self._in_bytes, self._out_bytes
        words = n_in // li
        sync0, sync1 = protocol.SYNC

        m.submodules.frame = frame = Memory(shape=8 * li, depth=max(words, 2), init=[])
        wr = frame.write_port(granularity=8)
        rd = frame.read_port()
        m.submodules.rx_crc = rx_crc = CrcProcessor(catalog.CRC16_CCITT_FALSE(8))
        m.submodules.tx_crc = tx_crc = CrcProcessor(catalog.CRC16_CCITT_FALSE(8))

        byte = self.rx.payload
        got = self.rx.valid
        length = Signal(16)
        count = Signal(16)
        crc_lo = Signal(8)
        idle = Signal(range(self._timeout + 1))
        timed_out = Signal()
        w_addr = Signal(range(max(words, 2)))
        w_lane = Signal(range(max(li, 2)))

        # reply request from the receiver to the sender
        start_reply = Signal()
        reply_status = Signal(8)
        reply_len = Signal(16)
        reply_info = Signal()
        sending = Signal()
        feeding = Signal()
        error = Signal()
        m.d.comb += [self.error.eq(error), rx_crc.data.eq(byte), wr.data.eq(byte.replicate(li))]

        with m.If(got):
            m.d.sync += idle.eq(0)
        with m.Elif(idle != self._timeout):
            m.d.sync += idle.eq(idle + 1)
        m.d.comb += timed_out.eq(idle == self._timeout)

        def reply(status, n=0, info=False):
            m.d.comb += start_reply.eq(1)
            m.d.comb += [reply_status.eq(status), reply_len.eq(n), reply_info.eq(info)]
            m.d.sync += error.eq(int(status != protocol.OK))

        in_frame = Signal()
        m.d.comb += self.busy.eq(in_frame | sending | feeding)
        with m.FSM(name="receiver"):
            with m.State("HUNT"):
                with m.If(got & (byte == sync0) & ~sending & ~feeding):
                    m.next = "SYNC1"
            with m.State("SYNC1"):
                with m.If(got):
                    with m.If(byte == sync1):
                        m.d.comb += rx_crc.start.eq(1)
                        m.next = "LEN0"
                    with m.Elif(byte != sync0):
                        m.next = "HUNT"
                with m.Elif(timed_out):
                    m.next = "HUNT"
            for state, nxt, field in (("LEN0", "LEN1", length[:8]),
                                      ("LEN1", "CHECK_LEN", length[8:])):
                with m.State(state):
                    m.d.comb += in_frame.eq(1)
                    with m.If(got):
                        m.d.comb += rx_crc.valid.eq(1)
                        m.d.sync += field.eq(byte)
                        m.next = nxt
                    with m.Elif(timed_out):
                        reply(protocol.TIMEOUT)
                        m.next = "HUNT"
            with m.State("CHECK_LEN"):
                m.d.comb += in_frame.eq(1)
                m.d.sync += [count.eq(0), w_addr.eq(0), w_lane.eq(0)]
                with m.If(length == 0):
                    m.next = "CRC0"
                with m.Elif(length == n_in):
                    m.next = "PAYLOAD"
                with m.Else():
                    reply(protocol.BAD_LENGTH)
                    m.next = "DISCARD"
            with m.State("PAYLOAD"):
                m.d.comb += in_frame.eq(1)
                with m.If(got):
                    m.d.comb += [rx_crc.valid.eq(1), wr.addr.eq(w_addr),
                                 wr.en.eq(Const(1, li) << w_lane)]
                    m.d.sync += count.eq(count + 1)
                    with m.If(w_lane == li - 1):
                        m.d.sync += [w_lane.eq(0), w_addr.eq(w_addr + 1)]
                    with m.Else():
                        m.d.sync += w_lane.eq(w_lane + 1)
                    with m.If(count == n_in - 1):
                        m.next = "CRC0"
                with m.Elif(timed_out):
                    reply(protocol.TIMEOUT)
                    m.next = "HUNT"
            with m.State("CRC0"):
                m.d.comb += in_frame.eq(1)
                with m.If(got):
                    m.d.sync += crc_lo.eq(byte)
                    m.next = "CRC1"
                with m.Elif(timed_out):
                    reply(protocol.TIMEOUT)
                    m.next = "HUNT"
            with m.State("CRC1"):
                m.d.comb += in_frame.eq(1)
                with m.If(got):
                    with m.If(Cat(crc_lo, byte) != rx_crc.crc):
                        reply(protocol.BAD_CHECKSUM)
                        m.next = "HUNT"
                    with m.Elif(length == 0):
                        reply(protocol.OK, protocol.INFO_BYTES, info=True)
                        m.next = "HUNT"
                    with m.Else():
                        reply(protocol.OK, n_out)
                        m.d.sync += feeding.eq(1)
                        m.next = "HUNT"
                with m.Elif(timed_out):
                    reply(protocol.TIMEOUT)
                    m.next = "HUNT"
            with m.State("DISCARD"):
                m.d.comb += in_frame.eq(1)
                with m.If(timed_out & ~got):
                    m.next = "HUNT"

        # feeder: frame buffer -> pipeline, one word per accepted beat (registered read)
        r_addr = Signal(range(max(words, 2)))
        loaded = Signal()                     # rd.data holds word r_addr
        m.d.comb += [rd.addr.eq(r_addr), self.to_core.payload.data.as_value().eq(rd.data),
                     self.to_core.payload.last.eq(r_addr == words - 1),
                     self.to_core.valid.eq(feeding & loaded)]
        m.d.comb += rd.en.eq(~loaded | self.to_core.ready)
        with m.If(feeding):
            with m.If(~loaded):
                m.d.sync += loaded.eq(1)
            with m.Elif(self.to_core.ready):
                with m.If(r_addr == words - 1):
                    m.d.sync += [feeding.eq(0), loaded.eq(0), r_addr.eq(0)]
                with m.Else():        # read the next word in the same cycle
                    m.d.sync += r_addr.eq(r_addr + 1)
                    m.d.comb += rd.addr.eq(r_addr + 1)

        # sender: header, payload (pipeline output or identify info), CRC
        status = Signal(8)
        n_payload = Signal(16)
        info = Signal()
        sent = Signal(16)
        o_lane = Signal(range(max(lo, 2)))
        tx_byte = Signal(8)
        tx_crc_byte = Signal()          # this byte enters the reply CRC
        info_bytes = Const(int.from_bytes(self._info, "little"), 8 * len(self._info))
        out_word = self.from_core.payload.data.as_value()
        m.d.comb += [self.tx.payload.eq(tx_byte), tx_crc.data.eq(tx_byte),
                     tx_crc.valid.eq(self.tx.valid & self.tx.ready & tx_crc_byte)]
        with m.FSM(name="sender") as sender:
            with m.State("IDLE"):
                with m.If(start_reply):
                    m.d.sync += [status.eq(reply_status), n_payload.eq(reply_len),
                                 info.eq(reply_info), sent.eq(0), o_lane.eq(0)]
                    m.d.comb += tx_crc.start.eq(1)
                    m.next = "SYNC0"
            steps = [("SYNC0", Const(sync0, 8), False), ("SYNC1", Const(sync1, 8), False),
                     ("STATUS", status, True), ("LEN0", n_payload[:8], True),
                     ("LEN1", n_payload[8:], True)]
            for k, (state, value, crc_it) in enumerate(steps):
                with m.State(state):
                    m.d.comb += [tx_byte.eq(value), tx_crc_byte.eq(crc_it),
                                 self.tx.valid.eq(1)]
                    with m.If(self.tx.ready):
                        if k + 1 < len(steps):
                            m.next = steps[k + 1][0]
                        else:
                            m.next = "PAYLOAD"
                            with m.If(n_payload == 0):
                                m.next = "CRC0"
            with m.State("PAYLOAD"):
                m.d.comb += tx_crc_byte.eq(1)
                with m.If(info):
                    m.d.comb += [tx_byte.eq(info_bytes.word_select(sent[:3], 8)),
                                 self.tx.valid.eq(1)]
                with m.Else():
                    m.d.comb += [tx_byte.eq(out_word.word_select(o_lane, 8)),
                                 self.tx.valid.eq(self.from_core.valid)]
                with m.If(self.tx.valid & self.tx.ready):
                    m.d.sync += sent.eq(sent + 1)
                    with m.If(~info):
                        with m.If(o_lane == lo - 1):
                            m.d.comb += self.from_core.ready.eq(1)
                            m.d.sync += o_lane.eq(0)
                        with m.Else():
                            m.d.sync += o_lane.eq(o_lane + 1)
                    with m.If(sent == n_payload - 1):
                        m.next = "CRC0"
            with m.State("CRC0"):
                m.d.comb += [tx_byte.eq(tx_crc.crc[:8]), self.tx.valid.eq(1)]
                with m.If(self.tx.ready):
                    m.next = "CRC1"
            with m.State("CRC1"):       # the CRC register holds: no byte enters it now
                m.d.comb += [tx_byte.eq(tx_crc.crc[8:]), self.tx.valid.eq(1)]
                with m.If(self.tx.ready):
                    m.next = "IDLE"
        m.d.comb += sending.eq(~sender.ongoing("IDLE"))
        return m

