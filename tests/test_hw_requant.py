"""Requantizer vs hwconv.numerics.Requant, with random valid gaps and ready stalls."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from hwconv.hw.requant import Requantizer
from hwconv.hw.testbench import run_streams
from hwconv.numerics import Requant


@pytest.mark.parametrize("channels,lanes,dtype", [(6, 2, "int8"), (4, 4, "uint8"), (3, 1, "int8")])
def test_requantizer_bit_exact(channels, lanes, dtype):
    rng = np.random.default_rng(channels * 10 + lanes)
    acc_bits = 20
    rq = Requant.from_ratio(rng.uniform(1e-4, 0.05, channels))
    zp, (lo, hi) = (-3, (-128, 127)) if dtype == "int8" else (17, (17, 255))
    dut = Requantizer(rq, channels, lanes, acc_bits, zp, lo, hi,
                      signed(8) if dtype == "int8" else unsigned(8))
    n = 40
    acc = rng.integers(-(1 << (acc_bits - 1)), 1 << (acc_bits - 1), (n, channels))
    acc[0] = 0
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
