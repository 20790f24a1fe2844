"""PoolActivate stage vs golden.pool_activate: pool geometries, every activation kind,
int8/uint8, lanes, exact full-rate timing, construction errors."""

import pytest
from window_cases import check_timing, make_act, qparams, random_frames, reduced, run_frames

from hwconv import cost, golden
from hwconv.errors import HwconvError
from hwconv.hw.pool import PoolActivate
from hwconv.ir import MaxPool

ACTS = {
    "relu": dict(fn="relu", same_scale=True),               # pure clamp at the zero point
    "relu6": dict(fn="relu6", same_scale=True),
    "relu_rescale": dict(fn="relu"),                        # ReLU with a scale change
    "clip": dict(fn="clip", lo=-1.0, hi=2.5),
    "leaky": dict(fn="leaky_relu", alpha=0.1),
    "leaky_same": dict(fn="leaky_relu", same_scale=True, alpha=0.25),
    "identity": dict(fn="identity"),
}


def activation(name, dtype):
    return make_act(in_q=qparams(dtype, 0.05, 3, 120), **ACTS[name])


def check_pool(shape, pool, act_name, lanes=1, dtype="int8", frames=3, seed=0, timing=False,
               skid=True, levels_per_stage=1):
    act = activation(act_name, dtype) if act_name else None
    dut = PoolActivate(pool, act, shape, lanes=lanes, dtype=dtype, skid=skid,
                       levels_per_stage=levels_per_stage)
    q = act.in_q if act else qparams(dtype, 1.0, 0, 0)
    xs = random_frames(q, shape, frames, seed, extreme=True)
    expect = golden.pool_activate(xs, pool, act)
    if timing:
        check_timing(dut, xs, lanes, expect, lanes)
    else:
        run_frames(dut, xs, lanes, expect, lanes, seed=seed)
    return dut


CASES = [
    # shape, (kernel, stride, padding), act, lanes, dtype
    ((6, 7, 2), (2, None, 0), "relu", 1, "int8"),
    ((6, 7, 2), (2, None, 0), "relu_rescale", 2, "uint8"),
    ((7, 13, 2), (3, 2, 1), "leaky", 2, "int8"),              # ResNet-style 3x3/2 pad 1
    ((7, 13, 1), (3, 2, 1), "leaky", 1, "uint8"),
    ((6, 7, 2), (2, 1, 0), "relu6", 1, "int8"),
    ((6, 7, 4), (3, 1, "same"), None, 2, "uint8"),            # pool only
    ((6, 7, 4), (2, 1, "same"), "clip", 4, "int8"),           # even k, same
    ((6, 7, 2), None, "identity", 2, "int8"),                 # activation only
    ((6, 7, 2), None, "leaky_same", 1, "uint8"),
    ((5, 6, 2), (1, 2, 0), "relu", 1, "int8"),                # 1x1 subsampling
    ((9, 9, 1), (5, 2, 2), "clip", 1, "uint8"),
]


@pytest.mark.parametrize("skid", [True, False], ids=["credit", "stall"])
@pytest.mark.parametrize("shape,pool,act,lanes,dtype", CASES)
def test_pool_activate_bit_exact(shape, pool, act, lanes, dtype, skid):
    """Random valid gaps and ready stalls; credit queues (skid) or a global stall."""
    pool = MaxPool(*pool) if pool else None
    check_pool(shape, pool, act, lanes, dtype, seed=lanes + len(shape), skid=skid)


@pytest.mark.parametrize("shape,pool,act,lanes", [
    ((6, 7, 2), (2, None, 0), "relu", 1), ((6, 7, 2), (3, 1, 1), "leaky", 2),
    ((6, 7, 2), None, "leaky", 1), ((7, 9, 2), (3, 2, "same"), None, 2)])
@pytest.mark.parametrize("skid", [True, False], ids=["credit", "stall"])
def test_timing_exact(shape, pool, act, lanes, skid):
    """One slot per cycle: H*W*C/lanes cycles per frame, exact latency."""
    dut = check_pool(shape, MaxPool(*pool) if pool else None, act, lanes, frames=4,
                     timing=True, skid=skid)
    assert dut.cycles_per_frame == shape[0] * shape[1] * shape[2] // lanes
    assert dut.multipliers == 0


@pytest.mark.parametrize("levels_per_stage", [0, 2, 3])
@pytest.mark.parametrize("skid", [True, False], ids=["credit", "stall"])
def test_comparator_register_spacing(levels_per_stage, skid):
    """A 5x5 window (25 taps, 5 comparator levels, odd counts at every level) with a
    register every 0 (combinational), 2 or 3 levels: exact values and latency."""
    dut = check_pool((9, 9, 2), MaxPool(5, 2, 2), "leaky", 2, frames=3, timing=True,
                     skid=skid, levels_per_stage=levels_per_stage)
    assert dut.latency == cost.pool_activate(MaxPool(5, 2, 2), activation("leaky", "int8"),
                                             (9, 9, 2), lanes=2,
                                             levels_per_stage=levels_per_stage).latency


def test_figures():
    dut = PoolActivate(MaxPool(3, 2, 1), None, (8, 10, 4), lanes=2, dtype="int8")
    assert dut.linebuffer_words == 2 * 10 * 4
    assert dut.out_shape == (4, 5, 4)
    assert dut.cost == cost.pool_activate(MaxPool(3, 2, 1), None, (8, 10, 4), lanes=2,
                                          dtype="int8")


@pytest.mark.parametrize("args,kw,match", [
    ((None, None, (6, 6, 2)), {}, "needs a pool, an activation or both"),
    ((MaxPool(2), None, (6, 6, 2)), {}, "dtype must be 'int8' or 'uint8'"),
    ((MaxPool(2), None, (6, 6, 3)), dict(lanes=2, dtype="int8"), "lanes=2 must divide the 3"),
    ((MaxPool(5), None, (3, 3, 1)), dict(dtype="int8"), "kernel span 5 is larger"),
    ((MaxPool(2), activation("relu", "int8"), (6, 6, 2)), dict(dtype="uint8"),
     "activation input type int8 != stream type uint8"),
    (("pool", None, (6, 6, 2)), dict(dtype="int8"), "pool must be a MaxPool or None"),
])
def test_errors(args, kw, match):
    with pytest.raises(HwconvError, match=f"PoolActivate: {match}"):
        PoolActivate(*args, **kw)


SWEEP = [((7, 13, 2), (k, s, p), act, lanes, dt)
         for k in (2, 3) for s in (1, 2) for p in (0, "same") for act in ("relu", "leaky")
         for lanes in (1, 2) for dt in ("int8", "uint8")]


@pytest.mark.slow
@pytest.mark.parametrize("shape,pool,act,lanes,dtype", reduced(SWEEP))
def test_pool_sweep(shape, pool, act, lanes, dtype):
    check_pool(shape, MaxPool(*pool), act, lanes, dtype, frames=2, seed=pool[0])
