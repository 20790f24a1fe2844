"""Shared helpers of the windowed-stage tests (line buffer, conv, pool, dw/pw).

Layer builders with small random integer parameters, a NumPy reference for line-buffer
windows, and :func:`run_frames`, which streams frames through a stage with valid gaps and
ready stalls and checks every frame bit for bit (``decode_beats`` checks the beat count
and that ``last`` is on each frame's final beat only).
"""

import os
import re

import numpy as np
from amaranth.back import rtlil

from hwconv import kernels
from hwconv.hw.stream import decode_beats, encode_frame
from hwconv.hw.testbench import run_streams
from hwconv.ir import Activation
from hwconv.numerics import QParams, Requant
from hwconv.quant import QConv2D, quantize_activation

#: CI runs a reduced form of the slow sweeps when this is set.
REDUCED = bool(os.environ.get("HWCONV_SLOW_REDUCED"))


def reduced(cases, keep=4):
    """All ``cases``, or an evenly spread ``keep`` of them under HWCONV_SLOW_REDUCED."""
    if not REDUCED or len(cases) <= keep:
        return cases
    step = len(cases) / keep
    return [cases[int(k * step)] for k in range(keep)]


def qparams(dtype, scale, zp_int8, zp_uint8):
    return QParams(scale, zp_int8 if dtype == "int8" else zp_uint8, dtype)


def make_conv(o, c, k, stride=1, padding="valid", dilation=1, *, groups=1, seed=0,
              in_dtype="int8", out_dtype="int8", weight_bits=8, extreme=False,
              in_q=None):
    """A QConv2D with random integer weights/bias and a requantizer keeping outputs
    spread over the output range (some saturating)."""
    rng = np.random.default_rng(seed)
    lim = (1 << (weight_bits - 1)) - 1
    k = (k, k) if isinstance(k, int) else tuple(k)
    w = rng.integers(-lim, lim + 1, (o,) + k + (c // groups,))
    if extreme:
        w[0] = lim
        w[-1] = -lim - 1
    in_q = in_q or qparams(in_dtype, 0.05, 7, 131)
    out_q = qparams(out_dtype, 0.1, -5, 20)
    spread = 3 * np.sqrt(w[0].size) * lim * 80
    return QConv2D(w, rng.integers(-3000, 3000, o), stride, padding, dilation, groups,
                   in_q=in_q, out_q=out_q,
                   requant=Requant.from_ratio(rng.uniform(0.5, 2, o) * 128 / spread),
                   weight_bits=weight_bits)


def make_act(fn, in_q, same_scale=False, alpha=0.1, lo=None, hi=None):
    """Integer activation ``fn`` from ``in_q`` to ``in_q`` (a pure clamp for ReLU-like
    functions) or to a different output quantization."""
    out_q = in_q if same_scale else qparams(in_q.dtype, in_q.scale * 0.6, -10, 40)
    return quantize_activation(Activation(fn, alpha=alpha, lo=lo, hi=hi), in_q, out_q)


def random_frames(q, shape, frames, seed, extreme=False):
    x = np.random.default_rng(seed).integers(q.qmin, q.qmax + 1, (frames,) + tuple(shape))
    if extreme and frames >= 3:
        x[0], x[1] = q.qmax, q.qmin
    return x


def run_frames(dut, xs, in_lanes, expect, out_lanes, *, valid_prob=0.6, ready_prob=0.5,
               seed=0):
    """Stream ``xs`` through ``dut``; assert every output frame equals ``expect``."""
    beats = [b for x in xs for b in encode_frame(x, in_lanes)]
    per = int(np.prod(expect.shape[1:])) // out_lanes
    run = run_streams(dut, {"i": beats}, {"o": per * len(xs)}, valid_prob=valid_prob,
                      ready_prob=ready_prob, seed=seed)
    out = run.outputs["o"]
    got = np.stack([decode_beats(out[f * per:(f + 1) * per], expect.shape[1:], out_lanes)
                    for f in range(len(xs))])
    np.testing.assert_array_equal(got, expect)
    return run


def frame_spacing(run, frames, per_frame):
    """Cycles between the last output beats of consecutive frames."""
    ends = [run.out_cycles["o"][(f + 1) * per_frame - 1] for f in range(frames)]
    return [int(d) for d in np.diff(ends)]


def check_timing(dut, xs, in_lanes, expect, out_lanes, *, exact=True):
    """Full-rate run (input always valid, output always ready): bit-exact, first-output
    latency equal to ``dut.latency``, and the steady-state frame spacing equal to
    ``dut.cycles_per_frame`` (``exact``) or at most that (an upper bound)."""
    run = run_frames(dut, xs, in_lanes, expect, out_lanes, valid_prob=1.0, ready_prob=1.0)
    assert run.out_cycles["o"][0] - run.in_cycles["i"][0] == dut.latency
    per = int(np.prod(expect.shape[1:])) // out_lanes
    spacing = frame_spacing(run, len(xs), per)
    if exact:
        assert spacing == [dut.cycles_per_frame] * (len(xs) - 1)
    else:
        assert max(spacing) <= dut.cycles_per_frame
    return run, spacing


def window_beats(xs, geo, pad_value):
    """Reference line-buffer output: ``(taps x lanes, last)`` per position and group."""
    rows, cols, lanes = geo.rows, geo.cols, geo.lanes
    xp = kernels.pad(np.asarray(xs), (rows.before, cols.before, rows.after, cols.after),
                     pad_value)
    oh, ow, c = geo.out_shape
    per = oh * ow * geo.groups
    out = []
    for f in range(len(xs)):
        for r in range(oh):
            for q in range(ow):
                for g in range(geo.groups):
                    taps = [[int(v) for v in xp[f, r * rows.stride + i * rows.dilation,
                                                q * cols.stride + j * cols.dilation,
                                                g * lanes:(g + 1) * lanes]]
                            for i in range(rows.kernel) for j in range(cols.kernel)]
                    out.append((taps, int(len(out) % per == per - 1)))
    return out


def memories(dut):
    """``{name: (depth, width)}`` of every memory in the elaborated design (from RTLIL)."""
    text = rtlil.convert(dut)
    return {name: (int(size), int(width)) for width, size, name in
            re.findall(r"^\s*memory width (\d+) size (\d+) (\S+)", text, re.M)}
