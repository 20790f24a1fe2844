"""Conv2D stage vs golden.conv2d: kernel/stride/padding/dilation/folding sweep with valid
gaps and ready stalls, exact full-rate timing, fused clamps, construction errors."""

import pytest
from window_cases import check_timing, make_act, make_conv, random_frames, reduced, run_frames

from hwconv import cost, golden
from hwconv.errors import HwconvError
from hwconv.hw.conv import Conv2D
from hwconv.hw.dsp import BACKENDS


def conv_case(shape, o, k, stride=1, padding="valid", dilation=1, *, seed=0, **kw):
    op = make_conv(o, shape[2], k, stride, padding, dilation, seed=seed, **kw)
    op.infer_shape("conv", shape)
    return op


def check_conv(shape, o, k, stride=1, padding="valid", dilation=1, pe=1, simd=1,
               in_dtype="int8", out_dtype="int8", frames=3, seed=0, extreme=False,
               weight_bits=8, **stage):
    op = conv_case(shape, o, k, stride, padding, dilation, seed=seed, in_dtype=in_dtype,
                   out_dtype=out_dtype, extreme=extreme, weight_bits=weight_bits)
    dut = Conv2D(op, shape, pe=pe, simd=simd, **stage)
    xs = random_frames(op.in_q, shape, frames, seed + 1, extreme=extreme)
    run_frames(dut, xs, simd, golden.conv2d(xs, op), pe, seed=seed)
    return dut


CASES = [
    # shape, O, K, stride, padding, dilation, pe, simd, in, out
    ((5, 7, 2), 3, 3, 1, "same", 1, 1, 1, "int8", "int8"),
    ((6, 13, 2), 4, 3, 1, "valid", 1, 2, 2, "uint8", "int8"),       # odd width 13
    ((5, 7, 4), 4, 1, 1, "valid", 1, 2, 2, "int8", "uint8"),        # 1x1: no line buffer
    ((7, 9, 2), 2, 1, 2, "valid", 1, 1, 1, "uint8", "uint8"),       # 1x1 stride 2
    ((6, 7, 2), 2, 2, 1, "same", 1, 2, 1, "int8", "int8"),          # even K, same
    ((6, 7, 2), 2, 2, 2, "valid", 1, 1, 2, "uint8", "int8"),
    ((7, 7, 1), 2, 5, 1, "same", 1, 2, 1, "int8", "int8"),
    ((7, 8, 1), 1, 7, 1, "same", 1, 1, 1, "uint8", "int8"),
    ((9, 9, 1), 2, 5, 2, (1, 2, 2, 1), 1, 1, 1, "int8", "int8"),    # explicit, stride 2
    ((9, 9, 2), 2, 3, 1, "same", 2, 1, 2, "int8", "int8"),          # dilation 2
    ((7, 13, 2), 3, 3, 2, (1, 0, 1, 1), 1, 3, 1, "uint8", "int8"),
]


@pytest.mark.parametrize("shape,o,k,stride,padding,dilation,pe,simd,in_dtype,out_dtype",
                         CASES)
def test_conv_bit_exact(shape, o, k, stride, padding, dilation, pe, simd, in_dtype,
                        out_dtype):
    check_conv(shape, o, k, stride, padding, dilation, pe, simd, in_dtype, out_dtype,
               seed=k * 10 + stride * 3 + pe)


@pytest.mark.parametrize("in_dtype", ["int8", "uint8"])
def test_extreme_values_and_accumulator_width(in_dtype):
    """All-max and all-min frames against extreme weights: no accumulator overflow."""
    dut = check_conv((5, 6, 4), 3, 3, 1, "same", pe=3, simd=2, in_dtype=in_dtype,
                     extreme=True, frames=3)
    assert dut.acc_bits >= 8 + 8 + 5


def test_narrow_weights_and_pipelining_knobs():
    check_conv((5, 7, 2), 2, 3, 1, "same", pe=1, simd=2, weight_bits=4, levels_per_stage=0)
    check_conv((5, 7, 2), 2, 3, 1, "same", pe=2, simd=1, levels_per_stage=2)


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("pe,simd,in_dtype", [(1, 2, "int8"), (2, 2, "uint8")])
def test_multiplier_backends(backend, pe, simd, in_dtype):
    """Folded (weights from ROM) and unrolled (constant weights, zeros and powers of two
    among them) on every back end: bit-exact, same cycles and latency."""
    shape = (5, 6, 2)
    op = conv_case(shape, 2, 3, 1, "same", seed=4, in_dtype=in_dtype, extreme=True)
    op.weight[0, 0, :, 0] = [0, 1, -1]       # wiring, not multipliers
    op.weight[1, 1, :, 1] = [64, -64, 0]
    dut = Conv2D(op, shape, pe=pe, simd=simd, backend=backend)
    xs = random_frames(op.in_q, shape, 3, 5, extreme=True)
    run_frames(dut, xs, simd, golden.conv2d(xs, op), pe, seed=1)
    check_timing(dut, xs, simd, golden.conv2d(xs, op), pe)


@pytest.mark.parametrize("fn,same_scale", [("relu", True), ("relu6", True),
                                           ("clip", True)])
def test_fused_clamp(fn, same_scale):
    op = conv_case((5, 6, 2), 4, 3, 1, "same", seed=3)
    act = make_act(fn, op.out_q, same_scale, lo=-1.0, hi=2.0)
    dut = Conv2D(op, (5, 6, 2), pe=2, simd=1, act=act)
    xs = random_frames(op.in_q, (5, 6, 2), 2, 4)
    run_frames(dut, xs, 1, golden.activation(golden.conv2d(xs, op), act), 2)


@pytest.mark.parametrize("shape,o,k,stride,padding,pe,simd", [
    ((6, 6, 4), 4, 3, 1, "same", 4, 4),      # fully unrolled: one beat per cycle
    ((6, 6, 4), 4, 3, 1, "same", 2, 2),      # folded: (C/simd) * (O/pe) per position
    ((6, 6, 4), 4, 3, 1, "same", 1, 1),
    ((6, 6, 4), 4, 3, 1, "valid", 1, 1),     # top rows of each frame idle the array
    ((6, 6, 4), 4, 3, 1, "valid", 4, 4),
    ((7, 9, 2), 4, 3, 2, "same", 4, 2),
    ((7, 9, 2), 4, 3, 2, "valid", 2, 1),
    ((5, 7, 4), 6, 1, 1, "valid", 2, 2),
    ((7, 9, 2), 4, 5, 1, "same", 2, 2),
])
def test_timing_exact(shape, o, k, stride, padding, pe, simd):
    """Input always valid, output always ready: first-output latency and the spacing of
    back-to-back frames equal the stage's (and cost.conv2d's) prediction exactly."""
    op = conv_case(shape, o, k, stride, padding)
    dut = Conv2D(op, shape, pe=pe, simd=simd)
    xs = random_frames(op.in_q, shape, 4, 1)
    check_timing(dut, xs, simd, golden.conv2d(xs, op), pe)
    oh, ow, _ = dut.out_shape
    g, f = shape[2] // simd, o // pe
    assert dut.cycles_per_frame >= max(shape[0] * shape[1] * g, oh * ow * g * f)
    if padding == "same" and stride == 1:
        assert dut.cycles_per_frame == shape[0] * shape[1] * g * f
    assert dut.multipliers == pe * simd * k * k


@pytest.mark.parametrize("shape,o,k,stride,padding,pe,simd,kfold", [
    ((6, 6, 1), 4, 3, 1, "same", 1, 1, 9),     # one multiplier: gaps of 9 for the requant
    ((6, 6, 2), 4, 3, 1, "same", 2, 1, 3),     # accumulator bank and chunks together
    ((6, 7, 2), 2, 3, 1, "valid", 1, 2, 3),    # simd lanes within a chunk
    ((7, 9, 1), 3, 3, 2, "same", 3, 1, 9),     # strided windows
    ((5, 5, 1), 2, 2, 1, "same", 1, 1, 2),     # even kernel
])
def test_kernel_folding(shape, o, k, stride, padding, pe, simd, kfold):
    """kfold spreads a window beat over kfold cycles per output group: bit-exact under
    stalls, exact timing, K*K*simd*pe/kfold multipliers, a limb-serial requantizer."""
    op = conv_case(shape, o, k, stride, padding, seed=kfold + pe, extreme=True)
    dut = Conv2D(op, shape, pe=pe, simd=simd, kfold=kfold)
    xs = random_frames(op.in_q, shape, 3, kfold, extreme=True)
    want = golden.conv2d(xs, op)
    run_frames(dut, xs, simd, want, pe, seed=kfold)
    check_timing(dut, xs, simd, want, pe)
    assert dut.multipliers == pe * simd * k * k // kfold
    assert dut.cost.requant_limbs == cost.requant_limbs(op.requant, o, kfold)
    if padding == "same" and stride == 1:
        assert dut.cycles_per_frame == shape[0] * shape[1] * (shape[2] // simd) * \
            (o // pe) * kfold


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_kernel_folding_on_every_backend(backend):
    shape = (5, 6, 1)
    op = conv_case(shape, 2, 3, 1, "same", seed=6, extreme=True)
    dut = Conv2D(op, shape, pe=1, simd=1, kfold=3, backend=backend)
    xs = random_frames(op.in_q, shape, 3, 7, extreme=True)
    want = golden.conv2d(xs, op)
    run_frames(dut, xs, 1, want, 1, seed=2)
    check_timing(dut, xs, 1, want, 1)


def test_figures():
    op = conv_case((8, 8, 4), 6, 3, 1, "same")
    dut = Conv2D(op, (8, 8, 4), pe=3, simd=2)
    assert dut.linebuffer_words == 2 * 8 * 4
    assert dut.weight_words == 6 * 3 * 3 * 4
    assert dut.macs_per_frame == 64 * 6 * 9 * 4
    assert dut.cost.utilization == 1.0
    assert dut.out_shape == (8, 8, 6)
    assert dut.cost == cost.conv2d(op, (8, 8, 4), pe=3, simd=2)


@pytest.mark.parametrize("kw,match", [
    (dict(simd=3), "Conv2D: simd=3 must divide the 4 input channels"),
    (dict(pe=4), "Conv2D: pe=4 must divide the 6 output channels"),
    (dict(pe=0), "Conv2D: pe=0 must be an integer >= 1"),
    (dict(kfold=4), "Conv2D: kfold=4 must divide the 9 kernel taps"),
    (dict(backend="dsp99"), "Conv2D: unknown multiplier back end 'dsp99'"),
    (dict(levels_per_stage=-1), "Conv2D: levels_per_stage=-1"),
])
def test_folding_errors(kw, match):
    op = conv_case((5, 5, 4), 6, 3)
    with pytest.raises(HwconvError, match=match):
        Conv2D(op, (5, 5, 4), **kw)


def test_geometry_and_layer_errors():
    with pytest.raises(HwconvError, match="Conv2D: kernel span 5 is larger than the padded"):
        Conv2D(make_conv(2, 1, 5), (3, 3, 1))
    with pytest.raises(HwconvError, match="Conv2D: in_shape .* must be \\(H, W, 2\\)"):
        Conv2D(make_conv(2, 2, 3), (5, 5, 3))
    with pytest.raises(HwconvError, match="Conv2D: groups=2 is not supported"):
        Conv2D(make_conv(4, 4, 3, groups=2), (5, 5, 4))
    with pytest.raises(HwconvError, match="Conv2D: op must be a QConv2D"):
        Conv2D(object(), (5, 5, 4))
    op = make_conv(2, 2, 3)
    op.weight_bits = 4
    with pytest.raises(HwconvError, match="Conv2D: weights exceed weight_bits=4"):
        Conv2D(op, (5, 5, 2))
    op = make_conv(2, 2, 3)
    with pytest.raises(HwconvError, match="act must be a clamping QActivation"):
        Conv2D(op, (5, 5, 2), act=make_act("leaky_relu", op.out_q))


SWEEP = [((7, 13, 2), o, k, s, p, d, pe, simd, dt)
         for k in (1, 2, 3, 5, 7) for s in (1, 2) for p in ("valid", "same", 1)
         for d in (1, 2) for (o, pe, simd) in ((2, 1, 2), (4, 2, 1)) for dt in ("int8", "uint8")
         if (k - 1) * d + 1 <= 7 and not (p == 1 and 2 >= (k - 1) * d + 1)]


@pytest.mark.slow
@pytest.mark.parametrize("shape,o,k,stride,padding,dilation,pe,simd,dtype", reduced(SWEEP, 6))
def test_conv_sweep(shape, o, k, stride, padding, dilation, pe, simd, dtype):
    check_conv(shape, o, k, stride, padding, dilation, pe, simd, dtype, "int8", frames=2,
               seed=k + 7 * stride + dilation)
