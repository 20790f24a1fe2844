"""Requantizer vs hwconv.numerics.Requant, with random valid gaps and ready stalls."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hwconv.hw.dsp import BACKENDS
from hwconv.hw.requant import Requantizer
from hwconv.hw.testbench import run_streams
from hwconv.numerics import Requant


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("channels,lanes,dtype,acc_bits",
                         [(6, 2, "int8", 20), (4, 4, "uint8", 31), (3, 1, "int8", 12)])
def test_requantizer_bit_exact(channels, lanes, dtype, acc_bits, backend):
    rng = np.random.default_rng(channels * 10 + lanes)
    # ratios over several octaves: per-channel shifts differ and fold into the multipliers
    rq = Requant.from_ratio(rng.uniform(1e-4, 0.05, channels) * 2.0 ** -rng.integers(
        0, 6, channels), rounding="half_even" if lanes == 2 else "half_up")
    zp, (lo, hi) = (-3, (-128, 127)) if dtype == "int8" else (17, (17, 255))
    dut = Requantizer(rq, channels, lanes, acc_bits, zp, lo, hi,
                      signed(8) if dtype == "int8" else unsigned(8), backend=backend)
    n = 40
    acc = rng.integers(-(1 << (acc_bits - 1)), 1 << (acc_bits - 1), (n, channels))
    acc[0] = 0
    acc[1] = -(1 << (acc_bits - 1))        # the products' extremes
    acc[2] = (1 << (acc_bits - 1)) - 1
    beats = []
    for p in range(n):
        for g in range(channels // lanes):
            beats.append({"acc": list(acc[p, g * lanes:(g + 1) * lanes]), "group": g,
                          "last": int(p == n - 1 and g == channels // lanes - 1)})
    expect = np.clip(zp + rq.apply(acc), lo, hi)
    run = run_streams(dut, {"i": beats}, {"o": len(beats)}, valid_prob=0.6, ready_prob=0.5,
                      seed=lanes)
    got = np.array([v for v, _ in run.outputs["o"]]).reshape(n, channels)
    np.testing.assert_array_equal(got, expect)
    assert [last for _, last in run.outputs["o"]] == [b["last"] for b in beats]


def test_requantizer_product_too_wide_for_the_pipeline():
    rq = Requant.from_ratio(np.array([0.01, 0.3]))
    with pytest.raises(Exception, match="takes 6 cycles on the ice40 back end"):
        Requantizer(rq, 2, 1, 40, 0, -128, 127, signed(8), backend="ice40")
