"""LineBuffer: windows vs a NumPy reference, storage read from the elaborated design,
full-rate timing, construction errors."""

import numpy as np
import pytest
from window_cases import memories, reduced, window_beats

from hwconv.errors import HwconvError
from hwconv.hw.linebuffer import LineBuffer
from hwconv.hw.stream import encode_frame
from hwconv.hw.testbench import run_streams
from hwconv.ir import Conv2D, MaxPool


def conv_geometry(k, stride=1, padding="valid", dilation=1):
    """A float Conv2D carrying only the window geometry."""
    k = (k, k) if isinstance(k, int) else k
    return Conv2D(np.zeros((1,) + tuple(k) + (1,)), stride=stride, padding=padding,
                  dilation=dilation)


def check_windows(shape, op, lanes, dtype="int8", pad_value=-7, frames=3, seed=0,
                  valid_prob=0.6, ready_prob=0.5, credit=False, lookahead=True):
    lb = LineBuffer(op, shape, lanes=lanes, dtype=dtype, pad_value=pad_value, credit=credit,
                    lookahead=lookahead)
    lo, hi = (-128, 128) if dtype == "int8" else (0, 256)
    xs = np.random.default_rng(seed).integers(lo, hi, (frames,) + shape)
    expect = window_beats(xs, lb.geometry, pad_value)
    beats = [b for x in xs for b in encode_frame(x, lanes)]
    run = run_streams(lb, {"i": beats}, {"o": len(expect)}, valid_prob=valid_prob,
                      ready_prob=ready_prob, seed=seed)
    assert run.outputs["o"] == expect
    return lb, run


WINDOW_CASES = [
    # shape, kernel, stride, padding, dilation, lanes, dtype
    ((5, 7, 2), 3, 1, "same", 1, 1, "int8"),
    ((5, 7, 2), 3, 1, "valid", 1, 2, "uint8"),
    ((6, 13, 1), 3, 2, "same", 1, 1, "int8"),
    ((6, 7, 2), 2, 1, "same", 1, 2, "int8"),         # even K: extra pad bottom/right
    ((6, 7, 1), 2, 2, "valid", 1, 1, "uint8"),
    ((7, 7, 1), 1, 2, "valid", 1, 1, "int8"),          # K=1: decimation only, no memory
    ((7, 8, 1), 5, 1, "same", 1, 1, "int8"),
    ((7, 9, 1), 7, 1, "same", 1, 1, "uint8"),
    ((9, 9, 2), 3, 1, "same", 2, 2, "int8"),          # dilation 2
    ((6, 7, 1), 3, 2, (0, 1, 2, 1), 1, 1, "int8"),    # explicit, asymmetric
    ((5, 6, 1), (3, 2), (2, 1), (1, 0, 1, 1), 1, 1, "int8"),   # KH != KW
    ((5, 2, 1), 3, 1, "same", 1, 1, "int8"),          # delay line of 2 words: registers
    ((6, 1, 2), (3, 1), 1, (1, 0, 1, 0), 1, 2, "int8"),   # 1 word
    ((6, 3, 1), 3, 1, "same", 1, 1, "uint8"),         # 3 words: the shallowest memory
]


#: (credit, lookahead): how the stages use the line buffer (a conv stage for fast clocks
#: whose slots do not all emit stalls, with its cursors' flags still a slot ahead)
MODES = pytest.mark.parametrize("credit,lookahead", [(False, False), (False, True),
                                                     (True, True)],
                                ids=["stall", "stall-lookahead", "credit"])


@MODES
@pytest.mark.parametrize("shape,k,stride,padding,dilation,lanes,dtype", WINDOW_CASES)
def test_windows_bit_exact(shape, k, stride, padding, dilation, lanes, dtype, credit,
                           lookahead):
    """Random valid/ready: the windows equal the golden ones, with the stages stalling
    together or running free on credits of the output queue, the cursors' flags
    computed from the counters or a slot ahead."""
    check_windows(shape, conv_geometry(k, stride, padding, dilation), lanes, dtype,
                  pad_value=-7 if dtype == "int8" else 9, seed=hash(shape) % 100,
                  credit=credit, lookahead=lookahead)


def test_maxpool_geometry_and_default_pad():
    op = MaxPool(3, 2, 1)
    check_windows((7, 6, 2), op, 2, pad_value=-128)


def test_frames_separated_by_long_gaps():
    """The last windows of a frame come out even when the next frame is far away
    (virtual slots flush the padding tail)."""
    check_windows((5, 6, 1), conv_geometry(5, 1, "same"), 1, valid_prob=0.1,
                  ready_prob=0.9)


@pytest.mark.parametrize("shape,k,dilation,lanes", [((5, 7, 4), 3, 1, 2), ((6, 13, 3), 5, 1, 3),
                                                    ((9, 9, 2), 3, 2, 1), ((5, 7, 2), 2, 1, 2),
                                                    ((5, 7, 2), 7, 1, 1)])
def test_storage_is_k_minus_1_rows(shape, k, dilation, lanes):
    """Memory bits read from the elaborated design: (K-1) * dilation * W * C values of
    rows, and the window's K-1 older columns of every channel group (a delay line of
    dilation * C / lanes words when that is 3 or more, else registers)."""
    h, w, c = shape
    lb = LineBuffer(conv_geometry(k, 1, "same", dilation), shape, lanes=lanes)
    mems = memories(lb)
    assert lb.storage_words == (k - 1) * dilation * w * c
    assert lb.storage_bits == (k - 1) * dilation * w * c * 8
    depth, width = mems.pop("\\rows")
    assert depth == dilation * w * c // lanes and width == (k - 1) * lanes * 8
    assert depth * width == (k - 1) * dilation * w * c * 8
    span = dilation * c // lanes
    if span >= 3:
        assert mems == {"\\chain": (span, (k - 1) * k * lanes * 8)}
    else:
        assert mems == {}


def test_no_memory_for_1x1():
    assert memories(LineBuffer(conv_geometry(1, 2), (6, 6, 2))) == {}


@pytest.mark.parametrize("shape,k,stride,padding,lanes", [
    ((9, 9, 2), 3, 1, "same", 1), ((9, 9, 2), 3, 1, "valid", 2), ((9, 9, 1), 5, 1, "same", 1),
    ((9, 9, 1), 2, 2, "valid", 1), ((8, 13, 2), 3, 2, "same", 2)])
@MODES
def test_full_rate(shape, k, stride, padding, lanes, credit, lookahead):
    """Input always valid, output always ready: one beat per cycle, frames back to back
    (a frame's padding windows overlap the next frame's top rows), exact latency; the
    credit queue (4 windows for 2 edges of flight) keeps the full rate."""
    frames = 4
    lb, run = check_windows(shape, conv_geometry(k, stride, padding), lanes, frames=frames,
                            valid_prob=1.0, ready_prob=1.0, credit=credit,
                            lookahead=lookahead)
    cycles = run.in_cycles["i"]
    assert cycles == list(range(cycles[0], cycles[0] + len(cycles)))
    assert lb.cycles_per_frame == shape[0] * shape[1] * shape[2] // lanes
    assert run.out_cycles["o"][0] - cycles[0] == lb.latency
    per = len(run.outputs["o"]) // frames
    ends = [run.out_cycles["o"][(f + 1) * per - 1] for f in range(frames)]
    assert list(np.diff(ends)) == [lb.cycles_per_frame] * (frames - 1)


@pytest.mark.parametrize("shape,op,lanes,match", [
    ((5, 7, 3), conv_geometry(3), 2, "lanes=2 must divide the 3"),
    ((2, 7, 1), conv_geometry(3), 1, "kernel span 3 is larger than the padded rows 2"),
    ((5, 7, 1), conv_geometry(3, 1, 2), 1, "padding 2\\+2 must be smaller than the kernel"),
    ((5, 1, 1), conv_geometry(3, 1, "same"), 1, "first window must end inside"),
    ((9, 9, 1), conv_geometry(3, 1, "valid", 5), 1, "kernel span 11"),
    ((5, 7), conv_geometry(3), 1, "in_shape must be"),
])
def test_errors(shape, op, lanes, match):
    with pytest.raises(HwconvError, match=match):
        LineBuffer(op, shape, lanes=lanes)


def test_pad_value_range():
    with pytest.raises(HwconvError, match="pad_value=-1 is outside uint8"):
        LineBuffer(conv_geometry(3), (5, 5, 1), dtype="uint8", pad_value=-1)


SWEEP = [((h, w, c), k, s, p, d, lanes, dt)
         for (h, w, c) in [(7, 13, 2)] for k in (1, 2, 3, 5, 7) for s in (1, 2)
         for p in ("valid", "same") for d in (1, 2) for lanes in (1, 2)
         for dt in ("int8",) if (k - 1) * d + 1 <= h]


@pytest.mark.slow
@pytest.mark.parametrize("shape,k,stride,padding,dilation,lanes,dtype", reduced(SWEEP))
def test_windows_sweep(shape, k, stride, padding, dilation, lanes, dtype):
    check_windows(shape, conv_geometry(k, stride, padding, dilation), lanes, dtype,
                  seed=k * 10 + stride)


@pytest.mark.parametrize("shape,k,stride,padding,dilation,lanes", [
    ((5, 6, 6), 3, 1, "same", 1, 1),         # column delay line of 6 words
    ((5, 6, 6), 3, 1, "same", 1, 2),         # 3 words: the shallowest in memory
    ((6, 7, 4), 3, 2, "valid", 2, 2),        # dilation: 2 * 4 / 2 = 4 words
    ((6, 6, 8), 2, 2, "valid", 1, 1),        # max-pool shape: 2x2 stride 2, 8 words
])
def test_column_delay_line_in_memory(shape, k, stride, padding, dilation, lanes):
    """Channel-folded windows keep their older columns in a memory delay line: windows
    stay exact under random valid gaps and backpressure (stalls between the read at
    stage A and the write at stage C)."""
    op = conv_geometry(k, stride, padding, dilation)
    lb = LineBuffer(op, shape, lanes=lanes)
    assert "\\chain" in memories(lb)
    for seed, (vp, rp) in enumerate([(0.6, 0.5), (1.0, 0.3), (0.3, 1.0)]):
        check_windows(shape, op, lanes, seed=seed, valid_prob=vp, ready_prob=rp)
