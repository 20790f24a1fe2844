"""Requantizer vs hwconv.numerics.Requant, with random valid gaps and ready stalls."""

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from hwconv import cost
from hwconv.errors import HwconvError
from hwconv.hw.dsp import BACKENDS
from hwconv.hw.requant import Requantizer, at_least, round_threshold
from hwconv.hw.testbench import run_streams
from hwconv.numerics import Requant, round_shift


def make_requant(rng, channels, octaves=6, rounding="half_up"):
    """Ratios over ``octaves`` octaves (the first two channels at both ends): per-channel
    shifts differ and fold into multipliers ``MULT_BITS + octaves - 1`` bits wide."""
    k = rng.integers(0, octaves, max(channels, 2))
    k[:2] = 0, octaves - 1
    ratio = rng.uniform(2.0 ** -7, 2.0 ** -6, len(k)) * 2.0 ** -k
    return Requant.from_ratio(ratio[:channels], rounding=rounding)


def check_stream(dut, rq, channels, acc_bits, zp, lo, hi, rng, n=40, acc=None, **run_kw):
    """Random accumulators (and their extremes), or ``acc`` (positions x channels),
    through ``dut``: beat for beat the golden model's; returns the run."""
    lanes = len(dut.i.payload.acc)
    if acc is None:
        acc = rng.integers(-(1 << (acc_bits - 1)), 1 << (acc_bits - 1), (n, channels))
        acc[3::2] >>= rng.integers(0, acc_bits, (len(acc[3::2]), channels))  # in range too
        acc[0] = 0
        acc[1] = -(1 << (acc_bits - 1))        # the products' extremes
        acc[2] = (1 << (acc_bits - 1)) - 1
    n = len(acc)
    beats = []
    for p in range(n):
        for g in range(channels // lanes):
            beats.append({"acc": list(acc[p, g * lanes:(g + 1) * lanes]), "group": g,
                          "last": int(p == n - 1 and g == channels // lanes - 1)})
    expect = np.clip(zp + rq.apply(acc), lo, hi)
    run = run_streams(dut, {"i": beats}, {"o": len(beats)}, **run_kw)
    got = np.array([v for v, _ in run.outputs["o"]]).reshape(n, channels)
    np.testing.assert_array_equal(got, expect)
    assert [last for _, last in run.outputs["o"]] == [b["last"] for b in beats]
    return run


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("channels,lanes,dtype,acc_bits",
                         [(6, 2, "int8", 20), (4, 4, "uint8", 31), (3, 1, "int8", 12)])
def test_requantizer_bit_exact(channels, lanes, dtype, acc_bits, backend):
    rng = np.random.default_rng(channels * 10 + lanes)
    rq = make_requant(rng, channels, rounding="half_even" if lanes == 2 else "half_up")
    zp, (lo, hi) = (-3, (-128, 127)) if dtype == "int8" else (17, (17, 255))
    dut = Requantizer(rq, channels, lanes, acc_bits, zp, lo, hi,
                      signed(8) if dtype == "int8" else unsigned(8), backend=backend)
    check_stream(dut, rq, channels, acc_bits, zp, lo, hi, rng, valid_prob=0.6,
                 ready_prob=0.5, seed=lanes)


@pytest.mark.parametrize("rounding", ["half_up", "half_even"])
def test_round_threshold(rounding):
    """The smallest value that rounds to t or more, for every t, shift and rounding."""
    for shift in range(6):
        for t in range(-20, 21):
            v = round_threshold(t, shift, rounding)
            assert round_shift(v, shift, rounding) >= t > round_shift(v - 1, shift, rounding)


def test_at_least_is_a_full_compare():
    """The narrowed compare equals ``v >= t`` for every 7-bit v and every t in and
    around its range (multiples of powers of two, one more than those, and the rest),
    including the thresholds of every shift (round_threshold)."""
    width = 7
    ts = sorted(set(range(-70, 71)) | {round_threshold(t, s, r) for s in range(1, 7)
                                       for t in (-3, -1, 0, 1, 2, 5)
                                       for r in ("half_up", "half_even")})
    m = Module()
    v = Signal(signed(width))
    flags = [Signal(name=f"ge{k}") for k in range(len(ts))]
    m.d.comb += [f.eq(at_least(v, t)) for f, t in zip(flags, ts)]
    sim = Simulator(m)
    wrong = []

    async def bench(ctx):
        for x in range(-(1 << (width - 1)), 1 << (width - 1)):
            ctx.set(v, x)
            wrong.extend((x, t) for f, t in zip(flags, ts) if ctx.get(f) != (x >= t))

    sim.add_testbench(bench)
    sim.run()
    assert wrong == []


@pytest.mark.parametrize("limbs", [1, 3])
@pytest.mark.parametrize("rounding", ["half_up", "half_even"])
def test_saturation_edges(rounding, limbs):
    """Accumulators on both sides of each channel's saturation points (the flags
    compare the unrounded product): every output the golden model's."""
    rng = np.random.default_rng(7)
    channels, acc_bits, zp, lo, hi = 4, 12, -3, -100, 90
    # small multipliers, so the products reach the rounding ties at the edges
    rq = Requant(np.array([1, 3, 1, 5]), np.array([3, 5, 4, 6]), rounding=rounding)
    span = np.arange(-(1 << 11), 1 << 11)
    unclamped = zp + rq.apply(np.stack([span] * channels, axis=1))
    cols = []
    for u in unclamped.T:
        # where the unclamped output leaves the range, at either end
        edges = [np.flatnonzero(np.diff(u < lo))[0], np.flatnonzero(np.diff(u > hi))[0]]
        cols.append(np.concatenate([span[e - 2:e + 3] for e in edges]))
    acc = np.stack(cols, axis=1)
    dut = Requantizer(rq, channels, 2, acc_bits, zp, lo, hi, signed(8), limbs=limbs)
    check_stream(dut, rq, channels, acc_bits, zp, lo, hi, rng, acc=acc,
                 idle={"i": limbs - 1})


def test_requantizer_product_too_wide_for_the_pipeline():
    rq = Requant.from_ratio(np.array([0.01, 0.3]))
    cycles = cost.mul_latency("ecp5") + 3       # 3 x 2 cells: three adder levels
    with pytest.raises(Exception, match=f"takes {cycles} cycles on the ecp5 back end"):
        Requantizer(rq, 2, 1, 40, 0, -128, 127, signed(8), backend="ecp5")
    # on ice40 the requantizer multiplies in fabric (cost.requant_backend)
    dut = Requantizer(rq, 2, 1, 40, 0, -128, 127, signed(8), backend="ice40")
    assert dut.latency == cost.requant_latency("generic")


# -- limb-serial mode ------------------------------------------------------------------

@pytest.mark.parametrize("rounding", ["half_up", "half_even"])
@pytest.mark.parametrize("per_channel", [True, False], ids=["per_channel", "scalar"])
@pytest.mark.parametrize("lanes", [1, 2])
@pytest.mark.parametrize("limbs", [2, 3, 7])
def test_limb_serial_bit_exact(limbs, lanes, per_channel, rounding):
    """Per-channel multipliers 21 bits wide (7 limbs of 3 bits), scalar ones 16 (7 limbs
    of 3 bits, the top limb partly beyond the multiplier), random valid gaps and ready
    stalls."""
    rng = np.random.default_rng(limbs * 100 + lanes * 10 + per_channel)
    rq = make_requant(rng, 4 if per_channel else 1, octaves=6, rounding=rounding)
    dut = Requantizer(rq, 4, lanes, 20, -3, -128, 127, signed(8), limbs=limbs)
    assert dut.limbs == limbs
    check_stream(dut, rq, 4, 20, -3, -128, 127, rng, valid_prob=0.6, ready_prob=0.5,
                 seed=limbs)


@pytest.mark.parametrize("limbs", [4, 15, 16])
def test_limb_serial_narrow_limbs(limbs):
    """Limbs of 4, 2 (the top seven all zero) and 1 bit (``limbs == Wm``) of 16-bit
    multipliers into an unsigned output with a fused ReLU clamp."""
    rng = np.random.default_rng(limbs)
    rq = make_requant(rng, 6, octaves=1)
    assert cost.requant_width(rq, 6) == 16
    dut = Requantizer(rq, 6, 3, 18, 5, 5, 255, unsigned(8), limbs=limbs)
    check_stream(dut, rq, 6, 18, 5, 5, 255, rng, n=20, valid_prob=0.7, ready_prob=0.6,
                 seed=limbs)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_limb_serial_on_every_backend(backend):
    """The 21-bit accumulator times 9-bit limbs splits over two DSP cells on ECP5 and
    iCE40, one on Xilinx."""
    rng = np.random.default_rng(7)
    rq = make_requant(rng, 6, octaves=11, rounding="half_even")
    assert cost.requant_width(rq, 6) == 26
    dut = Requantizer(rq, 6, 2, 21, 0, -128, 127, signed(8), backend=backend, limbs=3)
    check_stream(dut, rq, 6, 21, 0, -128, 127, rng, n=24, valid_prob=0.5, ready_prob=0.6,
                 seed=3)


@pytest.mark.parametrize("backend", ["generic", "ice40"])
@pytest.mark.parametrize("rounding", ["half_up", "half_even"])
@pytest.mark.parametrize("shift,octave,limbs,kept", [(3, 4, 8, 5), (4, 2, 3, 3),
                                                      (0, 3, 4, 3)])
def test_limb_serial_round_point(shift, octave, limbs, kept, rounding, backend):
    """Ratios ``2**octave`` to ``2**(octave+1)`` with small shifts ``S``, so that the
    rounding point falls among the product bits a limb-serial unit shifts out of its
    running sum (``kept`` of them exactly, a sticky bit for those below) or, with
    ``S = 0``, nothing rounds; the outputs span the whole int8 range and beyond."""
    rng = np.random.default_rng(shift * 31 + limbs)
    top = shift + octave
    mult = rng.integers(1 << top, 1 << (top + 1), 4)
    rq = Requant(multiplier=mult, shift=np.full(4, shift), rounding=rounding)
    w = cost.requant_limb_bits(rq, 4, limbs)
    low, _ = cost.requant_round_point(shift, w, limbs)
    assert w * (limbs - 1) - low == kept
    dut = Requantizer(rq, 4, 2, 10, 0, -128, 127, signed(8), backend=backend, limbs=limbs)
    n = 60
    acc = rng.integers(-(1 << 9), 1 << 9, (n, 4)) >> (octave + 2)
    beats = [{"acc": list(acc[p, g * 2:(g + 1) * 2]), "group": g,
              "last": int(p == n - 1 and g == 1)} for p in range(n) for g in range(2)]
    exact = acc * mult
    if shift:       # ties, and values just above and below them, occur
        rem = exact % (1 << shift)
        assert {(1 << (shift - 1)) - 1, 1 << (shift - 1), (1 << (shift - 1)) + 1} <= \
            set(rem.ravel().tolist())
    expect = np.clip(rq.apply(acc), -128, 127)
    assert ((expect > -128) & (expect < 127)).mean() > 0.4
    run = run_streams(dut, {"i": beats}, {"o": len(beats)}, valid_prob=0.7,
                      ready_prob=0.6, seed=shift)
    got = np.array([v for v, _ in run.outputs["o"]]).reshape(n, 4)
    np.testing.assert_array_equal(got, expect)


@pytest.mark.parametrize("backend,limbs", [("generic", 1), ("generic", 2), ("generic", 7),
                                           ("ecp5", 1), ("ecp5", 3), ("ice40", 5),
                                           ("xilinx", 2), ("xilinx", 26)])
def test_latency_is_measured(backend, limbs):
    """Clock edges from a lone beat's input transfer to its output transfer."""
    rng = np.random.default_rng(limbs)
    rq = make_requant(rng, 4, octaves=11)
    dut = Requantizer(rq, 4, 2, 21, 0, -128, 127, signed(8), backend=backend, limbs=limbs)
    assert dut.latency == cost.requant_latency(backend, limbs)
    run = check_stream(dut, rq, 4, 21, 0, -128, 127, rng, n=3, idle=60)
    ins, outs = run.in_cycles["i"], run.out_cycles["o"]
    assert [o - i for i, o in zip(ins, outs)] == [dut.latency] * len(ins)


@pytest.mark.parametrize("backend,limbs", [("generic", 2), ("generic", 7), ("ice40", 3),
                                           ("xilinx", 5)])
def test_limb_serial_throughput(backend, limbs):
    """A producer spaced ``limbs`` cycles apart never waits; one back to back delivers a
    beat every ``limbs`` cycles; either way the output runs at the input's rate."""
    rng = np.random.default_rng(limbs)
    rq = make_requant(rng, 4, octaves=11)
    for idle in (limbs - 1, 0):
        dut = Requantizer(rq, 4, 2, 21, 0, -128, 127, signed(8), backend=backend,
                          limbs=limbs)
        run = check_stream(dut, rq, 4, 21, 0, -128, 127, rng, n=12, idle=idle)
        assert set(np.diff(run.in_cycles["i"])) == {limbs}
        assert set(np.diff(run.out_cycles["o"])) == {limbs}


def test_requant_limbs_fills_the_gap():
    rq = make_requant(np.random.default_rng(1), 16, octaves=11)
    assert cost.requant_width(rq, 16) == 26
    # gap <= 1: parallel; limbs no narrower than 4 bits (26 bits: at most 7 limbs)
    got = {gap: cost.requant_limbs(rq, 16, gap) for gap in (0, 1, 2, 3, 4, 5, 6, 7, 9, 64)}
    assert got == {0: 1, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 9: 7, 64: 7}
    # 16 bits in 5 limbs of 4 bits wastes a cycle: 4 limbs do it
    assert cost.requant_limbs(Requant.from_ratio(0.01), 1, 5) == 4
    # on ice40 (limb table in block RAM) limbs go down to one bit: 9 limbs of 3 bits
    # behind a kfold=9 array, 26 of 1 bit behind a 128-cycle dense
    ice = {gap: cost.requant_limbs(rq, 16, gap, "ice40") for gap in (1, 2, 9, 13, 26, 128)}
    assert ice == {1: 1, 2: 2, 9: 9, 13: 13, 26: 26, 128: 26}


def test_limb_table_in_block_ram_on_ice40():
    """A serial unit with per-channel multipliers keeps its limb table in one block RAM
    on ice40 (no table LUTs), in logic elsewhere; a parallel one has no table memory."""
    rq = make_requant(np.random.default_rng(1), 16, octaves=11)
    mult, _ = cost.requant_multipliers(rq, 16)
    assert cost.requant_table_block(mult, 1, "ice40", 9)
    assert not cost.requant_table_block(mult, 1, "ice40", 1)
    assert not cost.requant_table_block(mult, 1, "generic", 9)
    assert not cost.requant_table_block([mult[0]] * 16, 1, "ice40", 9)
    ice = cost.requantizer_inventory(rq, 16, 1, 21, "ice40", limbs=9)
    assert [(m.width, m.depth, m.rom, m.block) for m in ice.memories] == [(3, 256, True, True)]
    assert cost.estimate(ice, "ice40").bram == 1
    assert cost.requantizer_inventory(rq, 16, 1, 21, "generic", limbs=9).memories == ()


def test_limb_serial_inventory_is_smaller():
    """The serial unit's estimate: narrower multiplies, more flip-flops; limbs=1 is the
    parallel unit's."""
    rq = make_requant(np.random.default_rng(1), 16, octaves=11)
    par = cost.requantizer_inventory(rq, 16, 1, 21, "generic")
    assert cost.requantizer_inventory(rq, 16, 1, 21, "generic", limbs=1) == par
    ser = cost.requantizer_inventory(rq, 16, 1, 21, "generic", limbs=7)
    assert [(mul.a_bits, mul.b_bits, mul.const) for mul in ser.multiplies] == [(21, 4, None)]
    assert ser.ff > par.ff
    lut_par, lut_ser = (cost.estimate(inv, "ice40").lut for inv in (par, ser))
    assert lut_ser < lut_par / 2


@pytest.mark.parametrize("limbs,why", [(0, "not 0"), (27, "from 1 to 26"),
                                       (2.0, "not 2.0"), (True, "not True")])
def test_bad_limbs_are_refused(limbs, why):
    rq = make_requant(np.random.default_rng(1), 4, octaves=11)
    with pytest.raises(HwconvError, match=f"Requantizer: limbs must be an integer .*{why}"):
        Requantizer(rq, 4, 2, 21, 0, -128, 127, signed(8), limbs=limbs)
