"""End-to-end figures: predicted vs measured cycles per frame, simulation speed of the
generated Verilog under Icarus and Verilator, and `hwconv build` wall time on
MobileNetV1-224.

Usage: python bench/e2e.py [--frames N] [--skip-mobilenet] [--skip-verilator]
"""

import argparse
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from hwconv import api, compiler, datasets, zoo
from sim.runner import simulator_available

ROOT = Path(__file__).resolve().parents[1]


def test_seconds(folder):
    """Wall time of the cocotb test itself (not the simulator build), from results.xml."""
    tree = ET.parse(folder / "build" / "tb" / "results.xml")
    return sum(float(tc.get("time", 0)) for tc in tree.iter("testcase"))


def measure(name, compiled, x, simulator):
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        rep = api.simulate(compiled, x, simulator=simulator, folder=tmp)
        wall = time.perf_counter() - t
        secs = test_seconds(Path(tmp))
        cycles = len(x) * rep.cycles_per_frame
    err = 100 * (rep.cycles_per_frame / rep.predicted_cycles_per_frame - 1)
    print(f"{name:<22} {simulator:<10} {len(x):>6} {rep.predicted_cycles_per_frame:>10} "
          f"{rep.cycles_per_frame:>10.1f} {err:>+7.2f}% {cycles / secs:>12.0f} {wall:>8.1f}")
    return err, cycles / secs


def mobilenet_build(alpha, budget):
    net = zoo.mobilenet_v1(224, alpha=alpha)
    cal = np.random.default_rng(0).normal(size=(2, 224, 224, 3)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        c = compiler.compile(net, calibration=cal, max_multipliers=budget)
        api.build(c, Path(tmp) / "out", n_frames=1)
        wall = time.perf_counter() - t
    m = c.manifest()["totals"]
    print(f"MobileNetV1-{alpha}-224, budget {budget} multipliers: build {wall:.1f} s; "
          f"{len(c.plan.stages)} stages, {m['multipliers']} multipliers, "
          f"{m['cycles_per_frame']} cycles/frame ({m['fps']:.1f} fps at 100 MHz), "
          f"{m['weight_words']} weights, {m['linebuffer_words']} line-buffer words")
    return wall


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--skip-mobilenet", action="store_true")
    p.add_argument("--skip-verilator", action="store_true")
    a = p.parse_args()
    split = datasets.load("digits")
    digits = compiler.compile(str(ROOT / "examples" / "digits" / "digits_qdq.onnx"))
    net = zoo.every_stage_net()
    every = compiler.compile(net, calibration=np.random.default_rng(0).normal(
        size=(32,) + net.input_shape), max_multipliers=120)
    x_every = np.random.default_rng(1).normal(size=(a.frames,) + net.input_shape)
    sims = ["icarus"] + ([] if a.skip_verilator or not simulator_available("verilator")
                         else ["verilator"])
    print(f"{'model':<22} {'simulator':<10} {'frames':>6} {'predicted':>10} {'measured':>10} "
          f"{'error':>8} {'cycles/s':>12} {'wall s':>8}")
    errs, speed = [], {}
    for sim in sims:
        e, s = measure("digits", digits, split.x_test[:a.frames], sim)
        errs.append(e)
        speed[sim] = s
        e, _ = measure("every_stage_net", every, x_every, sim)
        errs.append(e)
    summary = {"max_cycle_error_pct": max(abs(e) for e in errs),
               "icarus_cycles_per_s": speed["icarus"]}
    if "verilator" in speed:
        summary["verilator_cycles_per_s"] = speed["verilator"]
    if not a.skip_mobilenet:
        summary["mobilenet025_build_s"] = mobilenet_build(0.25, 500)
        summary["mobilenet100_build_s"] = mobilenet_build(1.0, 2000)
    print("summary: " + " ".join(f"{k}={v:.4g}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
