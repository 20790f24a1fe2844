"""Design-space exploration speed: analytic design points scored per second, and the wall
time of a whole ``explore`` (no synthesis) on the digits CNN and on MobileNetV1-224.

Goals: >= 10,000 analytic points/s; MobileNetV1-224 explore < 60 s.

    .venv/bin/python bench/dse.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from hwconv import explore, zoo

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits_qdq.onnx"


def scoring_rate(space, n=200_000, seed=0):
    """Points per second of :func:`hwconv.explore.score` on ``n`` random whole-pipeline
    foldings (any combination, not only balanced ones)."""
    rng = np.random.default_rng(seed)
    choice = np.stack([rng.integers(0, len(t.foldings), n) for t in space.tables], axis=1)
    t = time.perf_counter()
    explore.score(space, choice)
    return n / (time.perf_counter() - t)


def sweep_rate(space, repeat=50):
    """Points per second of :func:`hwconv.explore.sweep` (balanced points at every
    target, four preferences, duplicates removed) over ``repeat`` copies of the targets."""
    targets = np.tile(space.targets(), repeat)
    t = time.perf_counter()
    explore.sweep(space, targets)
    return len(explore.PREFERENCES) * len(targets) / (time.perf_counter() - t)


def timed_explore(model, device, **kw):
    t = time.perf_counter()
    result = explore.explore(model, device, progress=False, **kw)
    return result, time.perf_counter() - t


def main():
    digits, digits_s = timed_explore(DIGITS, "ecp5-85f")
    print(f"digits CNN on ecp5-85f: {digits.n_points} points, {len(digits.front)} on the "
          f"front, {digits_s:.2f} s wall ({digits.timings})")

    net = zoo.mobilenet_v1(224)
    rng = np.random.default_rng(0)
    cal = rng.normal(size=(2,) + net.input_shape).astype(np.float32)
    mobile, mobile_s = timed_explore(net, "ecp5-85f", calibration=cal, device_limits=False)
    print(f"MobileNetV1-224 (alpha 1) on ecp5-85f rules, device limits off (its 4.2 M "
          f"weights need ~1990 block RAMs): {mobile.n_points} points, {len(mobile.front)} "
          f"on the front, {mobile_s:.1f} s wall")
    print("  phases: " + ", ".join(f"{k}={v:.2f}" for k, v in mobile.timings.items()
                                    if k.endswith("_s") and k != "points_per_s"))
    fastest = mobile.front[0]
    print(f"  fastest point: {fastest.fps:.1f} frames/s at {mobile.clock_mhz:g} MHz, "
          f"{fastest.multipliers} multipliers, {fastest.dsp} DSP, {fastest.bram:g} BRAM")

    space = mobile.spaces[0]
    score_rate = scoring_rate(space)
    sweep_pts = sweep_rate(space)
    print(f"analytic scoring: {score_rate:,.0f} points/s (random whole-pipeline foldings, "
          f"{len(space.tables)} stages); balanced sweep {sweep_pts:,.0f} points/s")
    ok = score_rate >= 10_000 and mobile_s < 60
    print(f"goals (>= 10,000 points/s, MobileNet explore < 60 s): "
          f"{'met' if ok else 'NOT met'}")
    print(f"summary: points_per_s={score_rate:.0f} sweep_points_per_s={sweep_pts:.0f} "
          f"mobilenet_explore_s={mobile_s:.1f} mobilenet_points={mobile.n_points} "
          f"mobilenet_front={len(mobile.front)} digits_explore_s={digits_s:.2f} "
          f"digits_front={len(digits.front)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
