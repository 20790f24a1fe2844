"""Hardware stages at several foldings: measured cycles per frame vs the folding's ideal.

Each stage runs in the Amaranth simulator on back-to-back frames (default 4 frames of
32 x 32) with ``valid`` and ``ready`` always high; its output is checked against the
golden model.  Columns:

* ``model``: the cost model's cycles per frame (:mod:`hwconv.cost`).
* ``measured``: cycles between the last beats of the first and last frames / (frames-1).
* ``ideal``: MACs / multipliers for MAC stages; input beats (one per cycle) otherwise.
  Depthwise/pointwise foldings ``dw_simd/pw_simd/pw_pe`` are chosen so that both halves
  take the same cycles per pixel (otherwise the faster half idles by design).
* ``util``: ``frames * ideal / cycles`` from the first input beat to the last output
  beat, so pipeline fill and drain count against it.  For MAC stages it is multiplier
  utilization; for the others, the fraction of cycles moving a beat.

Layers are one-layer float networks quantized by :func:`hwconv.quant.quantize` with
random calibration data, so scales and zero points are realistic.  Channel counts are
small so the whole run takes a few minutes at most.
"""

import argparse
import time

import numpy as np

from hwconv import golden, quant, zoo
from hwconv.hw.add import Add
from hwconv.hw.conv import Conv2D
from hwconv.hw.dense import Dense
from hwconv.hw.dwpw import DepthwisePointwise
from hwconv.hw.gap import GlobalAvgPool
from hwconv.hw.linebuffer import LineBuffer
from hwconv.hw.pool import PoolActivate
from hwconv.hw.stream import encode_frame
from hwconv.hw.testbench import run_streams
from hwconv.ir import Activation, Flatten, MaxPool, Network
from hwconv.ir import Conv2D as FloatConv2D
from hwconv.ir import Dense as FloatDense
from hwconv.ir import GlobalAvgPool as FloatGAP
from hwconv.numerics import QParams


def quantized(shape, layers, seed):
    """The last integer layer of ``input -> layers...`` quantized on random data."""
    rng = np.random.default_rng(seed)
    net = Network(shape)
    x = net.input
    for k, layer in enumerate(layers):
        x = net.add(f"l{k}", layer, x)
    qnet = quant.quantize(net, rng.normal(size=(8,) + shape))
    node = qnet.nodes[-1]
    return node.op, qnet.shapes[node.inputs[0]], qnet


def beats(xs, lanes):
    return [b for x in xs for b in encode_frame(x, lanes)]


def conv_case(size, c, o, k):
    rng = np.random.default_rng(1)
    op, _, _ = quantized((size, size, c),
                         [FloatConv2D(rng.normal(size=(o, k, k, c)), rng.normal(size=o),
                                      padding="same")], 1)

    def build(pe, simd):
        return Conv2D(op, (size, size, c), pe=pe, simd=simd)
    return op, (size, size, c), build, lambda x: golden.conv2d(x, op)


def dense_case(size, c, o):
    """Dense over a flattened frame, streamed as the vector (so any simd dividing N)."""
    rng = np.random.default_rng(2)
    n = size * size * c
    op, _, _ = quantized((size, size, c), [Flatten(), FloatDense(rng.normal(size=(o, n)) /
                                                                 np.sqrt(n))], 2)

    def build(pe, simd):
        return Dense(op, (n,), pe=pe, simd=simd)
    return op, (n,), build, lambda x: golden.dense(x, op)


def dwpw_case(size, c, o):
    """MobileNet block; foldings are (dw_simd, pw_simd, pw_pe)."""
    net = zoo.mobilenet_block(size=size, cin=c, cout=o, seed=6)
    qnet = quant.quantize(net, np.random.default_rng(6).normal(size=(8, size, size, c)))
    dw, dw_act, pw, pw_act = [n.op for n in qnet.nodes]

    def build(dw_simd, pw_simd, pw_pe):
        return DepthwisePointwise(dw, dw_act, pw, pw_act, (size, size, c), dw_simd=dw_simd,
                                  pw_simd=pw_simd, pw_pe=pw_pe)
    return dw, (size, size, c), build, \
        lambda x: golden.depthwise_pointwise(x, dw, dw_act, pw, pw_act)


def gap_case(size, c):
    op, _, _ = quantized((size, size, c), [FloatGAP()], 3)

    def build(lanes):
        return GlobalAvgPool(op, (size, size, c), lanes=lanes)
    return op, (size, size, c), build, lambda x: golden.global_avg_pool(x, op)


def add_case(size, c):
    op = quant.quantize_add(QParams(0.05, 3), QParams(0.08, -7), QParams(0.1, 1))

    def build(lanes):
        return Add(op, (size, size, c), lanes=lanes, skip_depth=4)
    return op, (size, size, c), build, None


def linebuffer_case(size, c, k):
    rng = np.random.default_rng(4)
    op, _, _ = quantized((size, size, c),
                         [FloatConv2D(rng.normal(size=(1, k, k, c)), padding="same")], 4)

    def build(lanes):
        return LineBuffer(op, (size, size, c), lanes=lanes)
    return op, (size, size, c), build, None


def pool_case(size, c):
    act, _, _ = quantized((size, size, c), [Activation("relu6")], 5)
    pool = MaxPool(2, 2)

    def build(lanes):
        return PoolActivate(pool, act, (size, size, c), lanes=lanes)
    return act, (size, size, c), build, lambda x: golden.pool_activate(x, pool, act)


def measure(dut, inputs, out_port, out_beats_per_frame, frames):
    t = time.perf_counter()
    run = run_streams(dut, inputs, {out_port: out_beats_per_frame * frames},
                      max_cycles=10_000_000)
    wall = time.perf_counter() - t
    oc = run.out_cycles[out_port]
    first_in = min(c[0] for c in run.in_cycles.values())
    ends = oc[out_beats_per_frame - 1::out_beats_per_frame]
    per_frame = (ends[-1] - ends[0]) / (frames - 1)
    span = oc[-1] - first_in + 1
    return run, per_frame, span, wall


def row(name, folding, dut, ideal, per_frame, span, frames, exact, wall):
    util = frames * ideal / span
    print(f"{name:<14} {folding:<12} {dut.multipliers:>5} {dut.cycles_per_frame:>8} "
          f"{per_frame:>9.1f} {ideal:>8.0f} {util:>6.3f} {'yes' if exact else 'NO':>5} "
          f"{wall:>6.1f}s")
    return util


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=32, help="frame height and width")
    p.add_argument("--frames", type=int, default=4)
    a = p.parse_args()
    size, frames = a.size, a.frames
    rng = np.random.default_rng(0)
    print(f"{frames} back-to-back {size}x{size} frames, valid/ready always 1")
    print(f"{'stage':<14} {'folding':<12} {'mults':>5} {'model':>8} {'measured':>9} "
          f"{'ideal':>8} {'util':>6} {'exact':>5} {'sim':>7}")
    utils = {}
    all_exact = True
    t0 = time.perf_counter()

    def record(kind, util, exact):
        nonlocal all_exact
        utils.setdefault(kind, []).append(util)
        all_exact &= exact

    # MAC stages: ideal = MACs / multipliers.
    # (folding label, constructor arguments, input lanes, output lanes)
    def pe_simd(pe, simd):
        return f"pe={pe} simd={simd}", (pe, simd), simd, pe

    def dwpw(dw_simd, pw_simd, pw_pe):
        return f"{dw_simd}/{pw_simd}/{pw_pe}", (dw_simd, pw_simd, pw_pe), dw_simd, pw_pe

    for kind, (op, shape, build, ref), foldings in [
        ("conv3x3", conv_case(size, 2, 4, 3),
         [pe_simd(1, 1), pe_simd(2, 1), pe_simd(2, 2), pe_simd(4, 2)]),
        ("dense", dense_case(size, 1, 8),
         [pe_simd(1, 1), pe_simd(2, 4), pe_simd(4, 8), pe_simd(8, 16)]),
        ("dw3x3_pw", dwpw_case(size, 4, 8), [dwpw(1, 2, 4), dwpw(2, 4, 4), dwpw(4, 4, 8)]),
    ]:
        xs = rng.integers(op.in_q.qmin, op.in_q.qmax + 1, (frames,) + shape)
        expect = ref(xs)
        for label, args, lanes_in, lanes_out in foldings:
            dut = build(*args)
            out_per_frame = int(np.prod(expect.shape[1:])) // lanes_out
            run, per_frame, span, wall = measure(dut, {"i": beats(xs, lanes_in)}, "o",
                                                 out_per_frame, frames)
            got = np.array([v for vals, _ in run.outputs["o"] for v in vals])
            exact = np.array_equal(got, expect.ravel())
            ideal = dut.macs_per_frame / dut.multipliers
            util = row(kind, label, dut, ideal, per_frame, span, frames, exact, wall)
            record(kind, util, exact)

    # Streaming stages: ideal = input beats per frame.
    for kind, (op, shape, build, ref), lanes_list in [
        ("global_avg", gap_case(size, 4), [1, 2, 4]),
        ("add", add_case(size, 4), [1, 2, 4]),
        ("linebuffer3", linebuffer_case(size, 2, 3), [1, 2]),
        ("maxpool2_relu6", pool_case(size, 4), [1, 4]),
    ]:
        for lanes in lanes_list:
            dut = build(lanes)
            in_per_frame = int(np.prod(shape)) // lanes
            if kind == "add":
                xa = rng.integers(-128, 128, (frames,) + shape)
                xb = rng.integers(-128, 128, (frames,) + shape)
                inputs, expect = {"a": beats(xa, lanes), "b": beats(xb, lanes)}, \
                    golden.add(xa, xb, op)
            else:
                xs = rng.integers(op.in_q.qmin, op.in_q.qmax + 1, (frames,) + shape)
                inputs, expect = {"i": beats(xs, lanes)}, None if ref is None else ref(xs)
            if kind == "linebuffer3":
                out_per_frame = size * size * shape[2] // lanes
            else:
                out_per_frame = int(np.prod(expect.shape[1:])) // lanes
            run, per_frame, span, wall = measure(dut, inputs, "o", out_per_frame, frames)
            if expect is None:
                exact = len(run.outputs["o"]) == out_per_frame * frames
            else:
                got = np.array([v for vals, _ in run.outputs["o"] for v in vals])
                exact = np.array_equal(got, expect.ravel())
            util = row(kind, f"lanes={lanes}", dut, in_per_frame, per_frame, span, frames,
                       exact, wall)
            record(kind, util, exact)

    total = time.perf_counter() - t0
    worst = min(min(v) for v in utils.values())
    print(f"lowest utilization {worst:.3f} (target >= 0.95 at foldings dividing the "
          f"channels); simulated in {total:.0f} s")
    figures = " ".join(f"{k}_util_min={min(v):.3f}" for k, v in utils.items())
    print(f"summary: min_util={worst:.3f} {figures} all_exact={int(all_exact)} "
          f"sim_seconds={total:.0f}")


if __name__ == "__main__":
    main()
