"""Mapper + Pipeline: whole networks in the Amaranth simulator, bit-exact with golden,
under random valid gaps and ready stalls; folding under budgets; clear refusals."""

from pathlib import Path

import numpy as np
import pytest

from hwconv import compiler, golden, mapper, zoo
from hwconv.errors import FitError, UnsupportedError
from hwconv.hw.pipeline import Pipeline, sanitize
from hwconv.hw.stream import encode_frame
from hwconv.hw.testbench import run_streams
from hwconv.ir import Activation, Add, AvgPool, Conv2D, Dense, Flatten, GlobalAvgPool, \
    MaxPool, Network


DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits_qdq.onnx"


def residual_net(rng, shape=(6, 7, 2)):
    net = Network(shape)
    x = net.add("c1", Conv2D(zoo.conv_weight(rng, 4, 3, shape[2]), padding="same"),
                net.input)
    x = net.add("r1", Activation("relu"), x)
    x = net.add("p1", MaxPool(2, 1), x)
    y = net.add("c2", Conv2D(zoo.conv_weight(rng, 4, 3, 4), padding="same"), x)
    z = net.add("add", Add(), y, x)            # skip operand second: the mapper reorders
    z = net.add("r2", Activation("relu"), z)
    z = net.add("gap", GlobalAvgPool(), z)
    z = net.add("fl", Flatten(), z)
    net.add("fc", Dense(rng.normal(size=(3, 4))), z)
    return net


def strided_net(rng):
    net = Network((9, 9, 2))
    x = net.add("s2", Conv2D(zoo.conv_weight(rng, 4, 3, 2), None, 2, "same"), net.input)
    x = net.add("relu", Activation("relu6"), x)
    x = net.add("c", Conv2D(zoo.conv_weight(rng, 2, 2, 4), None, 1, "valid"), x)
    x = net.add("fl", Flatten(), x)
    net.add("fc", Dense(rng.normal(size=(4, 32))), x)
    return net


def simulate(compiled, frames, **traffic):
    p = Pipeline(compiled.plan, compiled.qnet.qparams, compiled.qnet.input_name,
                 in_lanes=compiled.in_lanes, out_lanes=compiled.out_lanes)
    beats = [b for f in frames for b in encode_frame(f, compiled.in_lanes)]
    per = int(np.prod(compiled.qnet.output_shape)) // compiled.out_lanes
    run = run_streams(p, {"i": beats}, {"o": per * len(frames)}, **traffic)
    got = np.array([v for vals, _ in run.outputs["o"] for v in vals])
    lasts = [last for _, last in run.outputs["o"]]
    assert lasts == ([0] * (per - 1) + [1]) * len(frames)
    return got.reshape((len(frames),) + compiled.qnet.output_shape), run


@pytest.mark.parametrize("budget", [20, 60, None])
@pytest.mark.parametrize("make", [residual_net, strided_net])
def test_pipeline_bit_exact_under_backpressure(make, budget):
    rng = np.random.default_rng(budget or 7)
    net = make(rng)
    c = compiler.compile(net, calibration=rng.normal(size=(8,) + net.input_shape),
                         max_multipliers=budget)
    if budget is not None:
        assert c.plan.multipliers <= budget
    frames = [c.qnet.input_q.quantize(rng.normal(size=net.input_shape)) for _ in range(3)]
    got, _ = simulate(c, frames, valid_prob=0.7, ready_prob=0.6, seed=budget or 0)
    np.testing.assert_array_equal(got, golden.run(c.qnet, np.stack(frames)))


def test_pipeline_cycles_match_the_plan():
    rng = np.random.default_rng(3)
    net = residual_net(rng, (8, 8, 2))
    c = compiler.compile(net, calibration=rng.normal(size=(8,) + net.input_shape),
                         max_multipliers=40)
    n = 5
    frames = [c.qnet.input_q.quantize(rng.normal(size=net.input_shape)) for _ in range(n)]
    _, run = simulate(c, frames)
    ends = run.out_cycles["o"][2::3]                      # last beat of each frame
    measured = (ends[-1] - ends[0]) / (n - 1)
    predicted = c.plan.cycles_per_frame
    assert abs(measured - predicted) <= 0.05 * predicted, (measured, predicted)


def test_transforms_and_fusion_reported():
    rng = np.random.default_rng(0)
    c = compiler.compile(residual_net(rng), calibration=rng.normal(size=(4, 6, 7, 2)))
    text = " | ".join(str(r) for r in c.plan.report)
    assert "pool_before_activate applied at r1 -> p1" in text
    kinds = [s.kind for s in c.plan.stages]
    assert kinds == ["conv", "pool_activate", "conv", "add", "pool_activate", "gap", "dense"]
    add = c.plan.stages[3]
    assert add.inputs == ("r1", "c2") and add.folding["skip_depth"] > 20


def test_relu_after_conv_fuses_into_the_requantizer():
    rng = np.random.default_rng(1)
    net = Network((5, 5, 2))
    x = net.add("c", Conv2D(zoo.conv_weight(rng, 3, 3, 2), padding="same"), net.input)
    x = net.add("r", Activation("relu"), x)
    x = net.add("g", GlobalAvgPool(), x)
    c = compiler.compile(net, calibration=rng.normal(size=(4, 5, 5, 2)))
    assert [s.nodes for s in c.plan.stages] == [("c", "r"), ("g",)]


def test_budget_too_small_names_needed_and_allowed():
    rng = np.random.default_rng(0)
    net = residual_net(rng)
    with pytest.raises(FitError, match=r"needs 3 multipliers, the budget allows 2"):
        compiler.compile(net, calibration=rng.normal(size=(4, 6, 7, 2)), max_multipliers=2)
    with pytest.raises(FitError, match=r"slowest stage 'c\d'"):
        compiler.compile(net, calibration=rng.normal(size=(4, 6, 7, 2)),
                         max_multipliers=40, fps=1e9, clock_mhz=100)


def test_unsupported_layer_is_named():
    net = Network((6, 6, 2))
    x = net.add("avg", AvgPool(2), net.input)
    net.add("fc", Dense(np.ones((2, 18))), net.add("fl", Flatten(), x))
    with pytest.raises(UnsupportedError, match="layer 'avg' \\(AvgPool\\)"):
        compiler.compile(net, calibration=np.random.default_rng(0).normal(size=(2, 6, 6, 2)))


def test_folding_is_balanced_to_the_bottleneck():
    rng = np.random.default_rng(2)
    c = compiler.compile(residual_net(rng), calibration=rng.normal(size=(4, 6, 7, 2)),
                         max_multipliers=60)
    ii = c.plan.cycles_per_frame
    for s in c.plan.stages:
        cheaper = [f for f, k in mapper.foldings(s)
                   if k.cycles_per_frame <= ii and
                   (k.multipliers, k.requant_multipliers) < (s.cost.multipliers,
                                                             s.cost.requant_multipliers)]
        assert not cheaper, (s.name, s.folding, cheaper)


def test_sanitize():
    assert sanitize("conv/1:0") == "conv_1_0" and sanitize("1x") == "n_1x"


@pytest.mark.parametrize("make", [residual_net, strided_net])
def test_plain_register_slices_keep_results_and_cycles(make):
    """``skid=False`` (plain registers for every register slice, as on the iCEBreaker):
    bit-exact under stalls, and frame for frame the cycles of the skid design."""
    rng = np.random.default_rng(11)
    net = make(rng)
    cal = rng.normal(size=(8,) + net.input_shape)
    runs = {}
    for skid in (True, False):
        c = compiler.compile(net, calibration=cal, max_multipliers=40, skid=skid)
        assert c.plan.skid is skid and c.manifest()["skid"] is skid
        frames = [c.qnet.input_q.quantize(np.random.default_rng(k).normal(
            size=net.input_shape)) for k in range(4)]
        want = golden.run(c.qnet, np.stack(frames))
        got, _ = simulate(c, frames, valid_prob=0.7, ready_prob=0.6, seed=5)
        np.testing.assert_array_equal(got, want)
        _, runs[skid] = simulate(c, frames)
    assert runs[False].out_cycles["o"] == runs[True].out_cycles["o"]


@pytest.mark.parametrize("backend", ["generic", "ecp5", "ice40", "xilinx"])
def test_plan_costs_stages_with_their_back_end(backend):
    """The plan's stage latencies and requantizer limbs are those of the hardware it
    builds on that back end (DSP pipeline depths; limb-serial requantizers with 1-bit
    limbs on ice40), so the plan's latency and skip-FIFO sizes hold."""
    c = compiler.compile(str(DIGITS), max_multipliers=4, backend=backend)
    p = Pipeline(c.plan, c.qnet.qparams, c.qnet.input_name, in_lanes=1, out_lanes=1)
    for s in c.plan.stages:
        assert p.stages[s.name].latency == s.cost.latency, s.name
    conv = c.plan.stages[0]
    assert conv.cost.requant_limbs == (9 if backend == "ice40" else 7)
