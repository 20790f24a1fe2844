"""DepthwisePointwise engine vs golden.depthwise_pointwise: depth multiplier, fused and
general activations, both halves' folding (with lane re-packing between them), timing,
construction errors."""

import pytest
from window_cases import (
    check_timing,
    make_act,
    make_conv,
    memories,
    qparams,
    random_frames,
    reduced,
    run_frames,
)

from hwconv import cost, golden
from hwconv.errors import HwconvError
from hwconv.hw.dwpw import DepthwisePointwise


def dwpw_case(c, m, o, k, stride=1, padding="same", dilation=1, dtype="int8", dw_act=None,
              pw_act=None, seed=0):
    """Depthwise (C*m outputs) [+ activation] -> pointwise 1x1 (O outputs) [+ act]."""
    dw = make_conv(c * m, c, k, stride, padding, dilation, groups=c, seed=seed,
                   in_dtype=dtype, out_dtype=dtype)
    da = make_act(in_q=dw.out_q, **dw_act) if dw_act else None
    mid_q = da.out_q if da else dw.out_q
    pw = make_conv(o, c * m, 1, seed=seed + 1, in_q=mid_q, out_dtype=dtype)
    pa = make_act(in_q=pw.out_q, **pw_act) if pw_act else None
    return dw, da, pw, pa


RELU6 = dict(fn="relu6", same_scale=True)
LEAKY = dict(fn="leaky_relu", alpha=0.1)
RELU = dict(fn="relu", same_scale=True)


def check_dwpw(shape, m, o, k, stride=1, padding="same", dilation=1, dw_simd=1, pw_simd=1,
               pw_pe=1, dtype="int8", dw_act=None, pw_act=None, frames=3, seed=0,
               timing=False, exact=True, backend="generic", dw_kfold=1, pw_kfold=1):
    layers = dwpw_case(shape[2], m, o, k, stride, padding, dilation, dtype, dw_act, pw_act,
                       seed)
    dut = DepthwisePointwise(*layers, shape, dw_simd=dw_simd, pw_simd=pw_simd, pw_pe=pw_pe,
                             dw_kfold=dw_kfold, pw_kfold=pw_kfold, backend=backend)
    xs = random_frames(layers[0].in_q, shape, frames, seed + 2, extreme=True)
    expect = golden.depthwise_pointwise(xs, *layers)
    if timing:
        check_timing(dut, xs, dw_simd, expect, pw_pe, exact=exact)
    else:
        run_frames(dut, xs, dw_simd, expect, pw_pe, seed=seed)
    return dut


CASES = [
    # shape, m, O, K, stride, padding, dw_simd, pw_simd, pw_pe, dtype, dw_act, pw_act
    ((5, 7, 4), 1, 4, 3, 1, "same", 1, 1, 1, "int8", None, None),
    ((5, 7, 4), 2, 4, 3, 1, "same", 2, 4, 2, "int8", RELU6, RELU),      # multiplier 2
    ((5, 7, 4), 1, 6, 3, 2, "same", 2, 1, 3, "uint8", LEAKY, LEAKY),    # stride 2
    ((6, 13, 2), 3, 4, 3, 1, "valid", 1, 3, 4, "uint8", RELU6, None),   # m=3, W=13
    ((6, 7, 6), 1, 4, 3, 1, "same", 3, 2, 2, "int8", None, RELU6),      # mixed re-packing
    ((7, 7, 2), 1, 3, 5, 1, "same", 2, 1, 1, "int8", LEAKY, None),
    ((9, 9, 2), 1, 2, 3, 1, "same", 1, 2, 2, "int8", None, None),       # dilation 2 below
    ((6, 6, 4), 1, 4, 1, 1, "valid", 2, 4, 2, "uint8", None, None),     # 1x1 depthwise
    ((6, 7, 2), 2, 2, 2, 2, "valid", 2, 2, 1, "int8", RELU, LEAKY),     # even K
]


@pytest.mark.parametrize("shape,m,o,k,stride,padding,dw_simd,pw_simd,pw_pe,dtype,dw_act,"
                         "pw_act", CASES)
def test_dwpw_bit_exact(shape, m, o, k, stride, padding, dw_simd, pw_simd, pw_pe, dtype,
                        dw_act, pw_act):
    dilation = 2 if shape == (9, 9, 2) else 1
    check_dwpw(shape, m, o, k, stride, padding, dilation, dw_simd, pw_simd, pw_pe, dtype,
               dw_act, pw_act, seed=k + m + o)


@pytest.mark.parametrize("shape,m,o,k,stride,padding,dw_simd,pw_simd,pw_pe,exact", [
    ((6, 6, 4), 1, 4, 3, 1, "same", 1, 1, 1, True),     # pointwise-bound
    ((6, 6, 4), 1, 4, 3, 1, "same", 4, 4, 4, True),     # one pixel beat per cycle
    ((6, 6, 4), 2, 4, 3, 1, "same", 1, 2, 4, True),
    ((6, 6, 4), 1, 8, 3, 1, "same", 4, 2, 8, True),     # scatter 4 -> 2 lanes
    ((6, 6, 4), 1, 4, 3, 1, "same", 1, 4, 2, True),     # gather 1 -> 4 lanes
    ((6, 6, 6), 1, 4, 3, 1, "same", 3, 2, 1, True),     # mixed 3 -> 2 lanes
    ((6, 6, 4), 1, 4, 3, 1, "valid", 1, 1, 1, False),   # upper bound off "same"/stride 1
    ((7, 7, 4), 1, 4, 3, 2, "same", 2, 2, 2, False),
])
def test_timing(shape, m, o, k, stride, padding, dw_simd, pw_simd, pw_pe, exact):
    """Full rate: exact latency; frame spacing equal to cycles_per_frame for stride 1 and
    "same" padding, never above it otherwise."""
    dut = check_dwpw(shape, m, o, k, stride, padding, 1, dw_simd, pw_simd, pw_pe, frames=4,
                     timing=True, exact=exact)
    c = shape[2]
    per_pixel = max(c // dw_simd, (c * m // pw_simd) * (o // pw_pe))
    if exact:
        assert dut.cycles_per_frame == shape[0] * shape[1] * per_pixel
    assert dut.multipliers == dw_simd * m * k * k + pw_pe * pw_simd


@pytest.mark.parametrize("backend", ["ecp5", "ice40", "xilinx"])
def test_multiplier_backends(backend):
    """Vendor DSP cells (their behavioural models here): bit-exact under stalls, and the
    same cycles per frame; latency as the cost model says for the back end."""
    check_dwpw((5, 7, 4), 2, 4, 3, 1, "same", 1, 2, 4, 2, "uint8", RELU6, LEAKY,
               backend=backend)
    check_dwpw((6, 6, 4), 1, 4, 3, 1, "same", 1, 1, 2, 2, "int8", None, None, frames=4,
               timing=True, backend=backend)


@pytest.mark.parametrize("shape,m,o,k,stride,padding,dw_simd,pw_simd,pw_pe,dw_kf,pw_kf,"
                         "exact", [
    ((6, 6, 4), 1, 4, 3, 1, "same", 1, 4, 1, 9, 4, True),    # one multiplier per half
    ((6, 6, 4), 1, 8, 3, 1, "same", 1, 4, 2, 3, 2, True),    # gather 1 -> 4, chunks of 2
    ((6, 6, 4), 2, 4, 3, 1, "same", 2, 8, 1, 3, 8, True),    # multiplier 2, 4 -> 8 lanes
    ((6, 6, 4), 1, 4, 3, 1, "same", 1, 2, 2, 9, 1, True),    # dw folded, pw banked
    ((6, 6, 4), 1, 4, 3, 1, "same", 1, 1, 1, 9, 1, True),    # depthwise-bound: 4 * 9
    ((7, 7, 4), 1, 4, 3, 2, "same", 1, 4, 1, 3, 2, False),   # strided: upper bound
])
def test_kernel_folding(shape, m, o, k, stride, padding, dw_simd, pw_simd, pw_pe, dw_kf,
                        pw_kf, exact):
    """dw_kfold / pw_kfold: bit-exact under stalls, exact latency, frame time (exact for
    stride 1 "same"), fewer multipliers, limb-serial requantizers."""
    kw = dict(dw_kfold=dw_kf, pw_kfold=pw_kf)
    check_dwpw(shape, m, o, k, stride, padding, 1, dw_simd, pw_simd, pw_pe, "int8",
               RELU6, None, seed=dw_kf + pw_kf, **kw)
    dut = check_dwpw(shape, m, o, k, stride, padding, 1, dw_simd, pw_simd, pw_pe, frames=4,
                     timing=True, exact=exact, **kw)
    c = shape[2]
    per_pixel = max(c // dw_simd * dw_kf, (c * m // pw_simd) * (o // pw_pe) * pw_kf)
    if exact:
        assert dut.cycles_per_frame == shape[0] * shape[1] * per_pixel
    assert dut.multipliers == dw_simd * m * k * k // dw_kf + pw_pe * pw_simd // pw_kf
    assert dut.cost.requant_limbs > 2 or dw_kf == pw_kf == 1


def test_kernel_folding_errors():
    layers = dwpw_case(4, 1, 4, 3)
    with pytest.raises(HwconvError, match="dw_kfold=4 must divide the 9 kernel taps"):
        DepthwisePointwise(*layers, (6, 6, 4), dw_kfold=4)
    with pytest.raises(HwconvError, match="pw_kfold=3 must divide the 4 pointwise channels"):
        DepthwisePointwise(*layers, (6, 6, 4), pw_simd=4, pw_kfold=3)
    with pytest.raises(HwconvError, match="dw_kfold=3 needs pw_simd=1 to be a multiple of "
                                          "the 2 depthwise lanes"):
        DepthwisePointwise(*layers, (6, 6, 4), dw_simd=2, pw_simd=1, dw_kfold=3)


def test_no_intermediate_feature_map():
    """The only memories are the line buffer, the weight ROMs and the MAC arrays'
    credit queues (a pipeline's depth of accumulators, not a feature map)."""
    layers = dwpw_case(4, 2, 6, 3, seed=5)
    dut = DepthwisePointwise(*layers, (6, 7, 4), dw_simd=2, pw_simd=2, pw_pe=3)
    mems = memories(dut)
    rows = [v for name, v in mems.items() if name.endswith("rows")]
    assert [d * w for d, w in rows] == [2 * 7 * 4 * 8]
    assert dut.linebuffer_words == 2 * 7 * 4
    assert dut.weight_words == 8 * 9 + 6 * 8
    assert dut.cost == cost.depthwise_pointwise(*layers, (6, 7, 4), dw_simd=2, pw_simd=2,
                                                pw_pe=3)
    queues = {name: v for name, v in mems.items() if name.endswith("words")}
    assert queues and all(d <= 16 for d, _ in queues.values()), queues
    assert all(name.endswith(("rows", "weights")) for name in mems if name not in queues)


def test_errors():
    dw, da, pw, pa = dwpw_case(4, 1, 4, 3)
    with pytest.raises(HwconvError, match="DepthwisePointwise: dw_simd=3 must divide the 4"):
        DepthwisePointwise(dw, da, pw, pa, (5, 5, 4), dw_simd=3)
    with pytest.raises(HwconvError, match="DepthwisePointwise: pw_simd=3 must divide the 4 "
                                          "intermediate"):
        DepthwisePointwise(dw, da, pw, pa, (5, 5, 4), pw_simd=3)
    with pytest.raises(HwconvError, match="DepthwisePointwise: pw_pe=3 must divide the 4"):
        DepthwisePointwise(dw, da, pw, pa, (5, 5, 4), pw_pe=3)
    with pytest.raises(HwconvError, match="DepthwisePointwise: dw must be depthwise"):
        DepthwisePointwise(pw, None, pw, None, (5, 5, 4))
    with pytest.raises(HwconvError, match="DepthwisePointwise: pw must be a 1x1"):
        DepthwisePointwise(dw, None, make_conv(4, 4, 3), None, (5, 5, 4))
    with pytest.raises(HwconvError, match="DepthwisePointwise: kernel span 3 is larger"):
        DepthwisePointwise(dwpw_case(4, 1, 4, 3, padding="valid")[0], None, pw, None,
                           (2, 5, 4))
    other = make_conv(4, 4, 1, in_q=qparams("uint8", 0.3, 0, 9))
    with pytest.raises(HwconvError, match="pw.in_q must equal the depthwise output"):
        DepthwisePointwise(dw, None, other, None, (5, 5, 4))


SWEEP = [((7, 9, 4), m, 4, k, s, p, ds, ps, pp, dt)
         for m in (1, 2) for k in (1, 3, 5) for s in (1, 2) for p in ("valid", "same")
         for (ds, ps, pp) in ((1, 2, 2), (2, 1, 4)) for dt in ("int8", "uint8")
         if not (k == 1 and p == "same")]


@pytest.mark.slow
@pytest.mark.parametrize("shape,m,o,k,stride,padding,dw_simd,pw_simd,pw_pe,dtype",
                         reduced(SWEEP))
def test_dwpw_sweep(shape, m, o, k, stride, padding, dw_simd, pw_simd, pw_pe, dtype):
    check_dwpw(shape, m, o, k, stride, padding, 1, dw_simd, pw_simd, pw_pe, dtype,
               dw_act=RELU6, pw_act=LEAKY, frames=2, seed=k * m)
