"""Every stage kind's generated Verilog under Icarus Verilog via cocotb (sim/), against
the golden model, with random valid gaps and ready stalls; one build folder per case."""

import numpy as np
import pytest
from amaranth.hdl import signed
from test_hw_add import frames_of, make_add
from test_hw_dense import make_dense, random_input
from test_hw_gap import make_gap

from hwconv import cost, golden, kernels, quant, zoo
from hwconv.hw.add import Add
from hwconv.hw.axis import AxiStreamTop
from hwconv.hw.conv import Conv2D
from hwconv.hw.dense import Dense
from hwconv.hw.dsp import BACKENDS
from hwconv.hw.dwpw import DepthwisePointwise
from hwconv.hw.fork import Fork
from hwconv.hw.gap import GlobalAvgPool
from hwconv.hw.lanes import LaneConverter
from hwconv.hw.linebuffer import LineBuffer
from hwconv.hw.pool import PoolActivate
from hwconv.hw.requant import Requantizer
from hwconv.hw.stream import beat_signature, encode_frame
from hwconv.ir import Activation, MaxPool, Network, normalize_padding, pair
from hwconv.ir import Conv2D as FloatConv2D
from hwconv.numerics import Requant
from sim.runner import (
    SimulationError,
    axis_ports,
    simulate_component,
    simulator_available,
)

pytestmark = [
    pytest.mark.cocotb,
    pytest.mark.skipif(not simulator_available("icarus"),
                       reason="Icarus Verilog (iverilog) is not installed"),
]


def frames(xs, lanes):
    return [b for x in xs for b in encode_frame(x, lanes)]


def quantized(shape, layers, seed):
    """Integer nodes of ``input -> layers...`` quantized on random calibration data."""
    net = Network(shape)
    x = net.input
    for k, layer in enumerate(layers):
        x = net.add(f"l{k}", layer, x)
    qnet = quant.quantize(net, np.random.default_rng(seed).normal(size=(8,) + shape))
    return [n.op for n in qnet.nodes]


def windows(xs, kernel, stride, padding, dilation, lanes, pad_value):
    """Line-buffer window beats: per output position and channel group, taps x lanes."""
    (kh, kw), (sh, sw), (dh, dw) = pair(kernel), pair(stride), pair(dilation)
    top, left, bottom, right = normalize_padding(padding, (kh, kw), (dh, dw))
    xp = kernels.pad(xs, (top, left, bottom, right), pad_value)
    oh = (xp.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[2] - (kw - 1) * dw - 1) // sw + 1
    c = xs.shape[3]
    out = []
    for f in range(len(xs)):
        n = oh * ow * (c // lanes)
        for r in range(oh):
            for q in range(ow):
                for g in range(c // lanes):
                    taps = [[int(xp[f, r * sh + i * dh, q * sw + j * dw, g * lanes + ln])
                             for ln in range(lanes)] for i in range(kh) for j in range(kw)]
                    out.append((taps, int(len(out) % n == n - 1)))
    return out


def case_requantizer(backend="generic", limbs=1):
    rng = np.random.default_rng(1)
    rq = Requant.from_ratio(rng.uniform(1e-4, 0.05, 6))
    dut = Requantizer(rq, 6, 2, 20, -3, -128, 127, signed(8), backend=backend, limbs=limbs)
    acc = rng.integers(-(1 << 19), 1 << 19, (12, 6))
    beats = [{"acc": list(acc[p, g * 2:g * 2 + 2]), "group": g, "last": int(g == 2)}
             for p in range(12) for g in range(3)]
    y = np.clip(-3 + rq.apply(acc), -128, 127)
    return dut, {"i": beats}, {"o": frames(y, 2)}, {}


def case_requantizer_serial(backend="generic"):
    """Limb-serial: 3 limbs of 7 bits of the 19-bit folded multipliers."""
    return case_requantizer(backend, limbs=3)


def case_dense(backend="generic"):
    op = make_dense(6, 12, seed=5, in_dtype="uint8")
    xs = random_input(op, (12,), 4, seed=5, extreme=True)
    return Dense(op, (12,), pe=2, simd=3, backend=backend), {"i": frames(xs, 3)}, \
        {"o": frames(golden.dense(xs, op), 2)}, {}


def case_dense_flatten_axis():
    """A Dense reading a flattened feature map, behind the AXI4-Stream top level."""
    shape = (3, 5, 4)
    op = make_dense(4, 60, seed=6)
    xs = random_input(op, shape, 3, seed=6)
    core = Dense(op, shape, pe=2, simd=2)
    top = AxiStreamTop(core, 16, 16)
    y = golden.dense(golden.flatten(xs), op)
    return top, {"i": frames(xs, 2)}, {"o": frames(y, 2)}, \
        {"ports": axis_ports(core), "payloads": core}


def case_global_avg_pool(backend="generic"):
    shape = (3, 13, 4)
    op = make_gap(shape, "uint8", "int8")
    xs = np.random.default_rng(7).integers(0, 256, (3,) + shape)
    return GlobalAvgPool(op, shape, lanes=2, backend=backend), {"i": frames(xs, 2)}, \
        {"o": frames(golden.global_avg_pool(xs, op), 2)}, {}


def case_add():
    shape = (3, 5, 4)
    op = make_add("int8", "uint8", "int8")
    a, b = frames_of(op, shape, 3, seed=8)
    return Add(op, shape, lanes=2, skip_depth=8), {"a": frames(a, 2), "b": frames(b, 2)}, \
        {"o": frames(golden.add(a, b, op), 2)}, {"valid_prob": {"a": 0.9, "b": 0.4}}


def case_conv2d(backend="generic"):
    """3x3 'same' conv on an odd width, folded (pe=2 of 4, simd=1 of 2), fused ReLU."""
    rng = np.random.default_rng(11)
    shape = (5, 7, 2)
    conv, relu = quantized(shape, [FloatConv2D(rng.normal(size=(4, 3, 3, 2)),
                                               rng.normal(size=4), padding="same"),
                                   Activation("relu")], 11)
    xs = rng.integers(conv.in_q.qmin, conv.in_q.qmax + 1, (3,) + shape)
    y = golden.activation(golden.conv2d(xs, conv), relu)
    return Conv2D(conv, shape, pe=2, simd=1, act=relu, backend=backend), \
        {"i": frames(xs, 1)}, \
        {"o": frames(y, 2)}, {}


def case_conv2d_strided(backend="generic"):
    """2x2 kernel, stride 2, valid padding, fully unrolled (constant weights)."""
    rng = np.random.default_rng(12)
    shape = (6, 5, 2)
    (conv,) = quantized(shape, [FloatConv2D(rng.normal(size=(3, 2, 2, 2)), stride=2)], 12)
    xs = rng.integers(conv.in_q.qmin, conv.in_q.qmax + 1, (3,) + shape)
    return Conv2D(conv, shape, pe=3, simd=2, backend=backend), {"i": frames(xs, 2)}, \
        {"o": frames(golden.conv2d(xs, conv), 3)}, {}


def case_line_buffer():
    """5x5 window, stride 2, 'same' padding with the zero point, two lanes."""
    rng = np.random.default_rng(13)
    shape = (7, 9, 4)
    (conv,) = quantized(shape, [FloatConv2D(rng.normal(size=(1, 5, 5, 4)), stride=2,
                                            padding="same")], 13)
    xs = rng.integers(conv.in_q.qmin, conv.in_q.qmax + 1, (2,) + shape)
    expect = windows(xs, 5, 2, "same", 1, 2, conv.in_q.zero_point)
    return LineBuffer(conv, shape, lanes=2), {"i": frames(xs, 2)}, {"o": expect}, {}


def case_pool_activate():
    """2x2/2 max-pool then a LeakyReLU on the pooled values."""
    rng = np.random.default_rng(14)
    shape = (6, 7, 2)
    (leaky,) = quantized(shape, [Activation("leaky_relu", alpha=0.1)], 14)
    pool = MaxPool(2, 2)
    xs = rng.integers(leaky.in_q.qmin, leaky.in_q.qmax + 1, (3,) + shape)
    y = golden.pool_activate(xs, pool, leaky)
    return PoolActivate(pool, leaky, shape, lanes=2), {"i": frames(xs, 2)}, \
        {"o": frames(y, 2)}, {}


def _mobilenet_block(seed, backend, **folding):
    """A quantized MobileNet block (5x5x4 -> 6) as a DepthwisePointwise at ``folding``,
    three frames in at ``dw_simd`` lanes, the golden frames out at ``pw_pe`` lanes."""
    net = zoo.mobilenet_block(size=5, cin=4, cout=6, seed=seed)
    qnet = quant.quantize(net, np.random.default_rng(seed).normal(size=(8, 5, 5, 4)))
    dw, dw_act, pw, pw_act = [n.op for n in qnet.nodes]
    xs = np.random.default_rng(seed + 1).integers(dw.in_q.qmin, dw.in_q.qmax + 1,
                                                  (3, 5, 5, 4))
    y = golden.depthwise_pointwise(xs, dw, dw_act, pw, pw_act)
    dut = DepthwisePointwise(dw, dw_act, pw, pw_act, (5, 5, 4), backend=backend, **folding)
    return dut, {"i": frames(xs, folding["dw_simd"])}, {"o": frames(y, folding["pw_pe"])}, {}


def case_depthwise_pointwise(backend="generic"):
    """MobileNet block: depthwise 3x3 + ReLU6 into pointwise 1x1 + ReLU6, both folded."""
    return _mobilenet_block(15, backend, dw_simd=2, pw_simd=2, pw_pe=3)


def case_conv2d_kfold(backend="generic"):
    """The kernel folded: one multiplier over 9 cycles per output channel, the chunk
    partial sums, a 7-limb serial requantizer behind it."""
    rng = np.random.default_rng(13)
    shape = (5, 6, 1)
    (conv,) = quantized(shape, [FloatConv2D(rng.normal(size=(3, 3, 3, 1)),
                                            rng.normal(size=3), padding="same")], 13)
    xs = rng.integers(conv.in_q.qmin, conv.in_q.qmax + 1, (3,) + shape)
    return Conv2D(conv, shape, pe=1, simd=1, kfold=9, backend=backend), \
        {"i": frames(xs, 1)}, {"o": frames(golden.conv2d(xs, conv), 1)}, {}


def case_depthwise_pointwise_kfold(backend="generic"):
    """Both halves kernel-folded (dw 9 cycles per window, pw a 4-lane pixel over 4
    cycles): digits' smallest folding in miniature."""
    return _mobilenet_block(17, backend, dw_simd=1, pw_simd=4, pw_pe=1, dw_kfold=9,
                            pw_kfold=4)


def case_lane_converter():
    xs = np.random.default_rng(9).integers(-128, 128, (3, 2, 3, 6))
    return LaneConverter(signed(8), 6, 2, 3), {"i": frames(xs, 2)}, {"o": frames(xs, 3)}, {}


def case_fork():
    xs = np.random.default_rng(10).integers(-128, 128, (2, 3, 3, 2))
    beats = frames(xs, 2)
    return Fork(beat_signature(signed(8), 2)), {"i": beats}, {"o0": beats, "o1": beats}, \
        {"ready_prob": {"o0": 0.3, "o1": 0.8}}


CASES = {
    "requantizer": case_requantizer,
    "requantizer_serial": case_requantizer_serial,
    "line_buffer": case_line_buffer,
    "conv2d": case_conv2d,
    "conv2d_strided": case_conv2d_strided,
    "pool_activate": case_pool_activate,
    "depthwise_pointwise": case_depthwise_pointwise,
    "conv2d_kfold": case_conv2d_kfold,
    "depthwise_pointwise_kfold": case_depthwise_pointwise_kfold,
    "dense": case_dense,
    "dense_flatten_axis": case_dense_flatten_axis,
    "global_avg_pool": case_global_avg_pool,
    "add": case_add,
    "lane_converter": case_lane_converter,
    "fork": case_fork,
}


#: the stage kinds that multiply, so have a multiplier back end (hwconv.hw.dsp)
MULTIPLYING = ["requantizer", "requantizer_serial", "conv2d", "conv2d_strided", "conv2d_kfold",
               "depthwise_pointwise", "depthwise_pointwise_kfold", "dense", "global_avg_pool"]
#: the ones whose only multiplies are requantizers': fabric on ice40 (cost.requant_backend)
REQUANT_ONLY = {"requantizer", "requantizer_serial", "global_avg_pool"}


@pytest.mark.parametrize("case", list(CASES))
def test_stage_verilog_matches_golden(case, tmp_path):
    top, inputs, outputs, kwargs = CASES[case]()
    kwargs = {"valid_prob": 0.6, "ready_prob": 0.5, **kwargs}
    run = simulate_component(top, inputs, outputs, tmp_path / case, name=f"stage_{case}",
                             seed=3, **kwargs)
    for port, beats in outputs.items():
        name = kwargs["ports"][port].name if "ports" in kwargs else port
        assert len(run.outputs[name]) == len(beats)


@pytest.mark.parametrize("backend", ["ecp5", "ice40", "xilinx"])
@pytest.mark.parametrize("case", MULTIPLYING)
def test_stage_verilog_on_vendor_dsp_cells(case, backend, tmp_path):
    """The stages with MULT18X18D / SB_MAC16 / DSP48E1 instances, simulated with the
    cells' models (Yosys's, and hwconv's for MULT18X18D), stay bit-exact."""
    top, inputs, outputs, kwargs = CASES[case](backend)
    kwargs = {"valid_prob": 0.6, "ready_prob": 0.5, **kwargs}
    simulate_component(top, inputs, outputs, tmp_path / case, name=f"stage_{case}",
                       seed=3, cells=backend, **kwargs)
    text = (tmp_path / case / f"stage_{case}.v").read_text()
    fabric = case in REQUANT_ONLY and cost.requant_backend(backend) == "generic"
    assert (BACKENDS[backend].primitive in text) != fabric


def test_failure_leaves_waveform(tmp_path):
    """A wrong expected value fails with the beat, the log and an existing FST file."""
    top, inputs, outputs, _ = case_global_avg_pool()
    values, last = outputs["o"][3]
    outputs["o"][3] = ([values[0] + 1] + values[1:], last)
    with pytest.raises(SimulationError, match=r"o: beat 3: got .* expected") as err:
        simulate_component(top, inputs, outputs, tmp_path / "bad", name="gap_bad")
    wave = str(err.value).split("waveform: ")[1].split()[0]
    assert wave.endswith(".fst") and (tmp_path / "bad" / "sim_build" / "gap_bad.fst").exists()


def test_missing_beats_time_out(tmp_path):
    """More expected beats than the design makes: the bench stops at its timeout."""
    top, inputs, outputs, _ = case_global_avg_pool()
    outputs["o"] = outputs["o"] + outputs["o"][:2]
    with pytest.raises(SimulationError, match="timeout"):
        simulate_component(top, inputs, outputs, tmp_path / "short", name="gap_short",
                           timeout_cycles=600)


@pytest.mark.parametrize("case,out_port,lanes", [("dense", "o", 2), ("conv2d", "o", 2),
                                                 ("global_avg_pool", "o", 2)])
def test_verilog_cycles_per_frame_match_model(case, out_port, lanes, tmp_path):
    """At full rate the Verilog's cycles per frame (measured by the cocotb monitor) are
    the cost model's."""
    top, inputs, outputs, _ = CASES[case]()
    run = simulate_component(top, inputs, outputs, tmp_path / case, name=f"rate_{case}",
                             valid_prob=1.0, ready_prob=1.0)
    frames_out = sum(last for _, last in outputs[out_port])
    per_frame = len(outputs[out_port]) // frames_out
    assert run.frame_cycles(out_port, per_frame) == [top.cycles_per_frame] * (frames_out - 1)
