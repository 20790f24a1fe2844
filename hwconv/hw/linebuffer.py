"""Line buffer and sliding-window generator: a pixel stream in, a window stream out.

Storage
-------
``KH - 1`` rows of ``W x C`` values in one :class:`~amaranth.lib.memory.Memory` (depth
``dilation_h * W * C / lanes``, one word = the ``KH - 1`` older rows of one beat, so a
single read port and a single write port serve every row: Yosys infers one simple
dual-port block RAM), plus a register window.  The memory is a delay line: the word read
for a beat holds the same column ``dh, 2*dh, ...`` rows up; it is written back shifted by
one row with the new beat on top.  The read is issued two stages before its data is used
and the read data is registered again, so block RAM output never sets the clock; the
write of a slot lands before the read of the slot ``depth`` later for ``depth >= 3``
(shallower delay lines are registers).  With dilation ``d`` the rows are ``d`` apart and
the memory holds ``(KH - 1) * d`` rows.  The window's older columns come from a second
delay line of the same kind, ``dw * C / lanes`` words deep (one word = the ``KW - 1``
column vectors of ``KH x lanes`` values ``dw * C / lanes``, ``2 * dw * C / lanes`` ...
slots old, written back shifted by one column): a channel-folded window costs a block
RAM (or LUT RAM) instead of ``(KW - 1) * dw * C / lanes`` column vectors of flip-flops.

Slots and emission
------------------
Every cycle the generator takes at most one *slot*: an input beat, or (only between
frames, see below) a *virtual* beat of padding.  Slot ``s`` shifts one column vector
into the chain; the window whose newest (bottom-right) tap is slot ``s`` then sits at
fixed chain positions, and the generator emits it when an output position has its
newest tap there.  A window whose newest tap is padding beyond the right edge (or the
bottom edge) is emitted in the slot that occupies that position in the continuous stream
of slots: the next row's first beats (or the next frame's first rows).  Taps outside the
image (older rows/columns of the previous frame or row, newer ones of the next) are
replaced by ``pad_value``.  So windows leave in raster order at one per slot, without a
``K``-th row of storage, and frames stream back to back with no bubbles for
"same"-style padding: a frame's bottom/right padding windows come out while the next
frame's top rows, which emit nothing of their own, stream in.

When a frame ends and the next one is not there yet, the generator runs virtual slots
until the frame's last window is out (:attr:`tail_beats` of them at most), so no frame
ever waits for its successor.  Once a frame has started, its slots are real beats only.

Restrictions (checked at construction, :func:`hwconv.cost.window`): per axis, padding
``before + after`` smaller than the kernel span (at most "same"-style padding; a window
never holds only padding) and the first window ends inside the image
(``size >= span - before``).  Under these rules no two windows ever compete for a slot.

Output payload
--------------
``window_layout(elem, lanes, KH * KW)``: ``data[t][l]`` is tap ``t = i * KW + j``
(row ``i`` from the top, column ``j`` from the left) of lane ``l``; one window beat per
channel group, ``C / lanes`` beats per output position, raster order, ``last`` on the
frame's final beat.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .. import cost
from ..errors import HwconvError
from . import dsp
from .fifo import CreditQueue
from .stream import beat_signature, elem_shape

__all__ = ["LineBuffer", "window_layout", "window_signature"]


def window_layout(elem, lanes, taps):
    """Window beat: ``taps`` x ``lanes`` values (tap-major) plus ``last``."""
    return data.StructLayout({
        "data": data.ArrayLayout(data.ArrayLayout(elem, lanes), taps),
        "last": 1,
    })


def window_signature(elem, lanes, taps):
    return stream.Signature(window_layout(elem, lanes, taps))


def _mux(sel, a, b):
    """``Mux`` that also takes plain integers (to evaluate a flag on a constant state)."""
    if isinstance(sel, (bool, int)):
        return a if sel else b
    return Mux(sel, a, b)


def _decode(v, pred):
    """``pred(v)`` for a narrow unsigned ``v``: a bit of a constant table indexed by
    ``v`` (a LUT or two), or a constant; a compare would become a carry chain."""
    bits = sum(1 << i for i in range(1 << len(v)) if pred(i))
    if bits in (0, (1 << (1 << len(v))) - 1):
        return Const(int(bits != 0), 1)
    return Const(bits, 1 << len(v)).bit_select(v, 1)


class _Plus:
    """Counter ``v + d`` (no wrap) in a compare with a constant: the compare moves ``d``
    onto the constant, so no adder precedes it; a narrow counter compares by table
    (:func:`_decode`)."""

    WIDEST_TABLE = 6

    def __init__(self, v, d=0):
        self.v, self.d = v, d

    def _cmp(self, pred, k):
        if len(self.v) <= self.WIDEST_TABLE:
            return _decode(self.v, lambda i: pred(i + self.d, k))
        return pred(self.v, k - self.d)

    def __lt__(self, k):
        return self._cmp(lambda x, y: x < y, k)

    def __le__(self, k):
        return self._cmp(lambda x, y: x <= y, k)

    def __gt__(self, k):
        return self._cmp(lambda x, y: x > y, k)

    def __ge__(self, k):
        return self._cmp(lambda x, y: x >= y, k)

    def __eq__(self, k):
        return self._cmp(lambda x, y: x == y, k)

    __hash__ = None


class _NextPhase:
    """Phase counter ``(v + 1) mod stride`` in an equality with a constant."""

    def __init__(self, v, stride):
        self.v, self.stride = v, stride

    def __eq__(self, k):
        return self.v == (k - 1) % self.stride

    __hash__ = None


class _Cursor:
    """Position of the current slot relative to one frame's first beat.

    ``r`` runs past ``H - 1`` for a frame's tail (slots after its last beat).  The phase
    counters give ``(coord - first) mod stride`` without a divider; ``prev_emits`` says
    whether the previous row emitted (its right-padding windows come out in this row).

    The flags of a position (``emit``, ``final``, ``frame_end``, ``row_emits`` and the
    padding masks ``rmask``/``cmask``) are, with ``lookahead``, flip-flops loaded with
    the flags of the position the cursor moves to: those of the advanced position are
    computed from the counters alone, beside the slot logic, so no compare of a
    counter lies between the cursor and the slot's take, credit and stage-B registers
    (:meth:`drive`).  Without it they are logic on the counters (fewer cells, for slow
    clocks on small parts).  The cursor starts at, and reloads, the state ``init``.
    """

    def __init__(self, m, name, geo, init, lookahead=True):
        rows, cols = geo.rows, geo.cols
        self._geo, self._m, self._init = geo, m, init
        r_top = max(rows.size, rows.last + 1) + 1
        self._state = {
            "r": Signal(range(r_top + 1), name=f"{name}_r", init=init["r"]),
            "c": Signal(range(cols.size), name=f"{name}_c"),
            "g": Signal(range(geo.groups), name=f"{name}_g"),
            "rph": Signal(range(rows.stride), name=f"{name}_rph", init=init["rph"]),
            "cph": Signal(range(cols.stride), name=f"{name}_cph", init=init["cph"]),
            "prev": Signal(name=f"{name}_prev", init=init["prev"]),
        }
        self._lookahead = lookahead
        self._start = start = self._flags(self._const_state(init))
        self._flag = {
            "row_emits": Signal(name=f"{name}_row_emits", init=start["row_emits"]),
            "emit": Signal(name=f"{name}_emit", init=start["emit"]),
            "final": Signal(name=f"{name}_final", init=start["final"]),
            "frame_end": Signal(name=f"{name}_frame_end", init=start["frame_end"]),
            "rmask": Signal(rows.kernel, name=f"{name}_rmask", init=start["rmask"]),
            "cmask": Signal(cols.kernel, name=f"{name}_cmask", init=start["cmask"]),
        }
        for k, v in self._flag.items():
            setattr(self, k, v)
        if not lookahead:
            now = self._flags(self._state, tables=False)
            m.d.comb += [v.eq(now[k]) for k, v in self._flag.items()]

    @staticmethod
    def init_at(geo, r):
        """Cursor state at row ``r``, column 0, group 0."""
        rows, cols = geo.rows, geo.cols
        return {"r": r, "rph": (r - rows.first) % rows.stride,
                "cph": (-cols.first) % cols.stride,
                "prev": int(r >= 1 and rows.emits(r - 1))}

    @staticmethod
    def _const_state(init):
        return {"r": init["r"], "c": 0, "g": 0, "rph": init["rph"], "cph": init["cph"],
                "prev": init["prev"]}

    def _flags(self, st, tables=True):
        """The flags of state ``st``: signals, counters with an increment pending
        (:class:`_Plus`, :class:`_NextPhase`), or integers for a constant state;
        ``tables``: narrow signals compare by table (:func:`_decode`)."""
        geo = self._geo
        rows, cols = geo.rows, geo.cols
        w = cols.size
        st = {k: _Plus(v) if tables and isinstance(v, Value) and k != "prev" else v
              for k, v in st.items()}
        r, c, g = st["r"], st["c"], st["g"]
        row_emits = (r >= rows.first) & (r <= rows.last) & (st["rph"] == 0)
        normal = row_emits & (c >= cols.first) & (c <= min(cols.last, w - 1)) & \
            (st["cph"] == 0)
        wrap = 0
        if cols.last >= w:
            wrap = st["prev"] & (c <= cols.last - w) & (st["cph"] == (-w) % cols.stride)
        # The emitted window's newest tap sits at (er, ec) = (r, c), or (r - 1, c + w) for
        # a wrapped window; a tap k rows up / j columns left is padding when outside the
        # frame.  The bounds move onto the constants, so no subtracter or adder sits
        # between the counters and the masks.
        def outside(v, shift, off, size):       # (v + shift) outside [off, size + off)
            return (v < off - shift) | (v >= size + off - shift)

        rmask = [_mux(wrap, outside(r, -1, k * rows.dilation, rows.size),
                      outside(r, 0, k * rows.dilation, rows.size))
                 for k in range(rows.kernel)]
        cmask = [_mux(wrap, outside(c, w, j * cols.dilation, w),
                      outside(c, 0, j * cols.dilation, w))
                 for j in range(cols.kernel)]
        fr, fc = divmod(geo.final_pixel, w)
        last_group = g == geo.groups - 1
        flags = {"row_emits": row_emits, "emit": normal | wrap,
                 "final": (r == fr) & (c == fc) & last_group,
                 "frame_end": (r == rows.size - 1) & (c == w - 1) & last_group}
        if all(isinstance(v, int) for v in st.values()):
            flags = {k: int(bool(v)) for k, v in flags.items()}
            flags["rmask"] = sum(int(bool(v)) << k for k, v in enumerate(rmask))
            flags["cmask"] = sum(int(bool(v)) << j for j, v in enumerate(cmask))
        else:
            def bit(v):
                return Const(int(v), 1) if isinstance(v, int) else v
            flags["rmask"] = Cat(*(bit(v) for v in rmask))
            flags["cmask"] = Cat(*(bit(v) for v in cmask))
        return flags

    def _advanced(self):
        """The state one slot on (signals computed from the counters alone)."""
        m, geo, st = self._m, self._geo, self._state
        rows, cols = geo.rows, geo.cols
        nxt = {k: Signal.like(v, name=f"{v.name}_next") for k, v in st.items()}
        m.d.comb += [nxt[k].eq(v) for k, v in st.items()]
        with m.If(st["g"] == geo.groups - 1):
            m.d.comb += nxt["g"].eq(0)
            with m.If(st["c"] == cols.size - 1):
                m.d.comb += [
                    nxt["c"].eq(0), nxt["cph"].eq((-cols.first) % cols.stride),
                    nxt["r"].eq(st["r"] + 1), nxt["prev"].eq(self.row_emits),
                    nxt["rph"].eq(Mux(st["rph"] == rows.stride - 1, 0, st["rph"] + 1)),
                ]
            with m.Else():
                m.d.comb += [nxt["c"].eq(st["c"] + 1),
                             nxt["cph"].eq(Mux(st["cph"] == cols.stride - 1, 0,
                                               st["cph"] + 1))]
        with m.Else():
            m.d.comb += nxt["g"].eq(st["g"] + 1)
        return nxt

    def _moved_flags(self):
        """The flags of the advanced position, from compares of the counters as they
        are (the advance's increments moved onto the constants) chosen by the row and
        group ends: no adder before a compare."""
        geo, st = self._geo, self._state
        rows, cols = geo.rows, geo.cols
        same_col = {**st, "g": _Plus(st["g"], 1)}
        next_col = {**st, "g": 0, "c": _Plus(st["c"], 1),
                    "cph": _NextPhase(st["cph"], cols.stride)}
        next_row = {**st, "g": 0, "c": 0, "cph": (-cols.first) % cols.stride,
                    "r": _Plus(st["r"], 1), "rph": _NextPhase(st["rph"], rows.stride),
                    "prev": self.row_emits}
        g_end, c_end = st["g"] == geo.groups - 1, st["c"] == cols.size - 1
        fa, fb, fc = (self._flags(x) for x in (same_col, next_col, next_row))
        return {k: Mux(g_end, Mux(c_end, fc[k], fb[k]), fa[k]) for k in fa}

    def drive(self, adv, load):
        """Move one slot on when ``adv``; go back to ``init`` when ``load`` (first)."""
        m = self._m
        regs, start, moved = dict(self._state), self._const_state(self._init), self._advanced()
        if self._lookahead:
            regs.update(self._flag)
            start.update(self._start)
            moved.update(self._moved_flags())
        with m.If(load):
            m.d.sync += [v.eq(start[k]) for k, v in regs.items()]
        with m.Elif(adv):
            m.d.sync += [v.eq(moved[k]) for k, v in regs.items()]


class LineBuffer(wiring.Component):
    """Sliding-window generator for a windowed layer (see module docstring).

    Parameters
    ----------
    op : layer with ``kernel``, ``stride``, ``padding`` (and optional ``dilation``)
        A :class:`~hwconv.quant.QConv2D`, :class:`~hwconv.ir.MaxPool`, ... ; only its
        window geometry is used.
    in_shape : (H, W, C)
    lanes : int
        Channels per beat, in and out; divides ``C``.
    dtype : {"int8", "uint8"}
        Value type (``op.in_q.dtype`` when the op has one).
    pad_value : int
        Value of padding taps (the input zero point for a convolution, the type's minimum
        for max-pooling).  Defaults to ``op.in_q.zero_point`` when the op has one.
    credit : bool
        Stages A-C run free, a slot waits for a credit of the output
        :class:`~hwconv.hw.fifo.CreditQueue` (4 windows, LUT RAM) and takes it if it
        emits a window; the queue stands where the output register would (the same
        latency): the consumer's ``ready`` reaches no register here (for fast clocks).
        Otherwise the stages stall together when stage C emits into a full output
        register.  Every slot waits for a credit, so while the queue is full a slow
        consumer also holds up slots that emit nothing (which the stall mode lets
        through), and the queue lets the generator run up to 4 windows ahead: the frame
        time then differs from what :func:`hwconv.cost.window_cycles` predicts, unless
        every slot emits (:func:`hwconv.cost.window_slice`).  So a folded consumer
        inside a stage (a MAC array) uses it only there; a stage whose consumer is the
        next stage, through its own queue (a pool), uses it everywhere.
    lookahead : bool
        The cursors' position flags in flip-flops computed a slot ahead (default, for
        fast clocks: no counter compare before the slot logic), or logic on the
        counters (``False``: about ten flip-flops fewer per cursor, for small parts).

    Attributes
    ----------
    i : In(beat_signature(elem, lanes))
    o : Out(window_signature(elem, lanes, KH * KW))
    geometry : hwconv.cost.Window
    out_shape : (OH, OW, C)
    storage_words : int
        Memory values, ``(KH - 1) * dilation_h * W * C`` (bits: ``storage_bits``).
    tail_beats : int
        Slots a frame's last windows may trail its last input beat (see module docstring).
    cycles_per_frame, latency : int
        As :func:`hwconv.cost.line_buffer`.
    """

    def __init__(self, op, in_shape, *, lanes=1, dtype=None, pad_value=None, credit=False,
                 lookahead=True):
        in_q = getattr(op, "in_q", None)
        dtype = dtype if dtype is not None else (in_q.dtype if in_q else "int8")
        if pad_value is None:
            pad_value = in_q.zero_point if in_q else 0
        self._elem = elem_shape(dtype)
        lo, hi = (-128, 127) if self._elem.signed else (0, 255)
        if not lo <= pad_value <= hi:
            raise HwconvError(f"LineBuffer: pad_value={pad_value} is outside {dtype}")
        self._geo = cost.window("LineBuffer", in_shape, op.kernel, op.stride, op.padding,
                                getattr(op, "dilation", 1), lanes)
        self._pad = pad_value
        self._credit = bool(credit)
        self._lookahead = bool(lookahead)
        taps = self._geo.rows.kernel * self._geo.cols.kernel
        super().__init__({
            "i": In(beat_signature(self._elem, lanes)),
            "o": Out(window_signature(self._elem, lanes, taps)),
        })

    @property
    def geometry(self):
        return self._geo

    @property
    def out_shape(self):
        return self._geo.out_shape

    @property
    def storage_words(self):
        return self._geo.storage_words

    @property
    def storage_bits(self):
        return self._geo.storage_words * self._elem.width

    @property
    def tail_beats(self):
        return self._geo.tail_beats

    @property
    def cycles_per_frame(self):
        return cost.line_buffer(self._geo).cycles_per_frame

    @property
    def latency(self):
        return cost.line_buffer(self._geo).latency

    @property
    def multipliers(self):
        return 0

    def elaborate(self, platform):
        m = Module()
        geo = self._geo
        rows, cols = geo.rows, geo.cols
        kh, kw, lanes, groups = rows.kernel, cols.kernel, geo.lanes, geo.groups
        column = data.ArrayLayout(data.ArrayLayout(self._elem, lanes), kh)

        # Stage B holds the slot taken last cycle while the memory reads its word, stage C
        # the slot before (with the word); the pipeline may only stall when stage C emits
        # into a full output register, so slots that emit nothing keep flowing.
        b_valid, b_emit, b_last = Signal(), Signal(), Signal()
        b_in = Signal(data.ArrayLayout(self._elem, lanes))
        b_rmask, b_cmask = Signal(kh), Signal(kw)
        c_valid, c_emit, c_last = Signal(), Signal(), Signal()
        c_in = Signal.like(b_in)
        c_rmask, c_cmask = Signal(kh), Signal(kw)
        if self._credit:
            adv = Const(1, 1)
            # stage A takes the credit, stage C writes: two edges
            m.submodules.out_queue = q = CreditQueue.covering(self.o.signature, 2)
            wiring.connect(m, q.o, wiring.flipped(self.o))
        else:
            adv = Signal()
            m.d.comb += [adv.eq(~(c_valid & c_emit & self.o.valid & ~self.o.ready)),
                         self.i.ready.eq(adv)]

        # Stage A: choose the slot (input beat, virtual beat or none).
        feed = _Cursor(m, "feed", geo, _Cursor.init_at(geo, 0), self._lookahead)
        tail = _Cursor(m, "tail", geo, _Cursor.init_at(geo, rows.size), self._lookahead)
        feeding, tail_on = Signal(), Signal()
        take, virt, slot = Signal(), Signal(), Signal()
        t_emit = Signal()
        m.d.comb += t_emit.eq(tail_on & tail.emit)
        if self._credit:
            # every slot waits for a credit (so the cursors' emit logic stays off the
            # take path; see the `credit` parameter); a slot that emits takes it: the feed's
            # window if it takes a beat, the tail's in any slot.  Two edges from here
            # to the queue's write.
            go = q.ok
            m.d.comb += [self.i.ready.eq(go),
                         q.reserve.eq((take & feed.emit) | (slot & t_emit))]
        else:
            go = adv
        m.d.comb += [take.eq(go & self.i.valid),
                     virt.eq(go & ~self.i.valid & tail_on & ~feeding),
                     slot.eq(take | virt)]

        depth = rows.dilation * cols.size * groups
        addr = Signal(range(depth))
        span = cols.dilation * groups           # slots between two columns of a window
        caddr = Signal(range(span), name="chain_addr")
        restart = take & feed.frame_end         # a frame's last beat: its tail starts
        feed.drive(take, restart)
        tail.drive(slot & tail_on, restart)
        with m.If(slot):
            m.d.sync += [addr.eq(Mux(addr == depth - 1, 0, addr + 1)),
                         caddr.eq(Mux(caddr == span - 1, 0, caddr + 1))]
            with m.If(tail_on & tail.final):
                m.d.sync += tail_on.eq(0)
        with m.If(take):
            m.d.sync += feeding.eq(1)
            with m.If(feed.frame_end):
                m.d.sync += [feeding.eq(0), tail_on.eq(int(geo.tail_beats > 0))]

        with m.If(adv):
            m.d.sync += [
                c_valid.eq(b_valid), c_emit.eq(b_emit), c_last.eq(b_last),
                c_rmask.eq(b_rmask), c_cmask.eq(b_cmask), c_in.eq(b_in),
                b_valid.eq(slot),
                b_emit.eq((take & feed.emit) | (slot & t_emit)),
                b_last.eq((take & feed.emit & feed.final) | (slot & t_emit & tail.final)),
                # while a frame's tail runs, only the tail emits (windows leave in
                # raster order, and the frame's last one ends the tail), so the masks
                # are chosen by `tail_on`, a flip-flop, not by the tail's emit logic
                b_rmask.eq(Mux(tail_on, tail.rmask, feed.rmask)),
                b_cmask.eq(Mux(tail_on, tail.cmask, feed.cmask)),
                b_in.eq(Mux(take, self.i.payload.data.as_value(),
                            Cat(*[self._pad_const()] * lanes))),
            ]

        def delay_line(name, width, length, rd_addr, write, attrs):
            """The word written ``length`` slots ago (``write`` at stage C of each slot):
            a memory read at stage A and registered, or registers when shallow."""
            if length >= 3:
                # no_rw_check: the write address trails the read address by two
                # slots that each advance it, and the line is >= 3 words long, so a
                # read never meets a write of the same word; without the attribute
                # Yosys adds collision bypass logic after the block RAM's output.
                m.submodules[name] = mem = Memory(shape=width, depth=length, init=[],
                                                  attrs={**attrs, "no_rw_check": 1})
                wr, rd = mem.write_port(), mem.read_port()
                m.d.comb += [rd.addr.eq(rd_addr), rd.en.eq(adv),
                             wr.addr.eq(dsp.delay(m, adv, rd_addr, 2, f"{name}_addr")),
                             wr.en.eq(adv & c_valid), wr.data.eq(write)]
                return dsp.delay(m, adv, rd.data, 1, f"{name}_rd", reset_less=True)
            line = [Signal(width, name=f"{name}{n}", reset_less=True) for n in range(length)]
            with m.If(adv & c_valid):
                m.d.sync += [reg.eq(write if n == 0 else line[n - 1])
                             for n, reg in enumerate(line)]
            return line[-1]

        # Stage C: the column vector (newest row first) from the input and the memory.
        # One memory word holds the KH - 1 older rows of a column, written back shifted
        # by one row with the new beat on top.
        colv = Signal(column)
        m.d.comb += colv[0].eq(c_in)
        if kh > 1:
            older = data.ArrayLayout(data.ArrayLayout(self._elem, lanes), kh - 1)
            rd_rows = data.View(older, delay_line("rows", older.size, depth, addr,
                                                  colv.as_value()[:older.size],
                                                  {"ram_style": "block"}))
            for k in range(1, kh):
                m.d.comb += colv[k].eq(rd_rows[k - 1])

        # The window's older columns, the same way: one word holds the KW - 1 column
        # vectors ``span``, ``2*span`` ... slots old, written back shifted by one column.
        cols_l = None
        if kw > 1:
            older = data.ArrayLayout(column, kw - 1)
            cols_l = Signal(older, name="cols")
            m.d.comb += cols_l.as_value().eq(delay_line(
                "chain", older.size, span, caddr,
                Cat(colv.as_value(), cols_l.as_value()[:(kw - 2) * column.size]), {}))

        def tap(k, j):          # k rows above, j columns left of the newest tap
            return (colv if j == 0 else cols_l[j - 1])[k]

        if self._credit:
            # the queue's write enable is a flip-flop of its own (stage C emits): it
            # reaches the enables of the queue's wide output register through one LUT
            c_write = Signal()
            m.d.sync += c_write.eq(b_valid & b_emit)        # adv is 1 in credit mode
            out, dom = q.w_data, m.d.comb
            m.d.comb += [q.w_en.eq(c_write), q.w_data.last.eq(c_last)]
        else:
            out, dom = self.o.payload, m.d.sync
            with m.If(adv & c_valid & c_emit):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.last.eq(c_last)]
            with m.Elif(self.o.ready):
                m.d.sync += self.o.valid.eq(0)
        # credit mode: plain wires into the queue (written only on w_en)
        taken = Const(1, 1) if self._credit else adv & c_valid & c_emit
        with m.If(taken):
            for k in range(kh):
                for j in range(kw):
                    t = (kh - 1 - k) * kw + (kw - 1 - j)
                    pad = c_rmask[k] | c_cmask[j]
                    for lane in range(lanes):
                        dom += out.data[t][lane].eq(
                            Mux(pad, self._pad_const(), tap(k, j)[lane]))
        return m

    def _pad_const(self):
        return Const(self._pad, self._elem)
