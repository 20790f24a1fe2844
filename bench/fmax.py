"""Post-route Fmax (nextpnr, median of three seeds) of the digits pipeline and of
Conv2D stages, on ECP5 (LFE5U-85F-6, CABGA381) and iCE40 (UP5K, SG48), per multiplier
back end (:mod:`hwconv.hw.dsp`): on ECP5 the ``ecp5`` back end (registered MULT18X18D)
and ``generic`` beside it; on iCE40 ``ice40`` (SB_MAC16, requantizers in fabric with
their limb tables in block RAM; the conv stages then fold their kernel, kfold=9, into
one SB_MAC16) and ``generic`` beside it.

* digits on ECP5: the fastest design point ``hwconv explore`` finds within the part;
  digits on iCE40: the point with the fewest LUTs (the UP5K has 5280) with plain
  register slices, as the iCEBreaker builds it (the credit variant, ``skid=True``,
  needs 4,638 LUT4 and 4,898 FF after synthesis and nextpnr cannot place it).
* conv stages (3x3, "same", 16-bit requantization multipliers, folded to pe=simd=1 so
  all three fit the UP5K), one value per AXI4-Stream beat in and out (lane converters
  around the stage, so the ports fit the SG48's IOs): small 8x8x2->2, medium
  16x16x8->8, large 32x32x16->16 (weight ROM 4, 64, 256 rows; line buffer 16, 128, 512
  words).
* on ECP5 also c32: a 3x3x32->32 conv on 16x16, kernel unrolled, pe=2 simd=8 (144
  multipliers plus the requantizer's cells: 148 of the part's 156 MULT18X18D in Yosys;
  unrolling all of C and O would take 9216 multipliers).

Goals: digits >= 150 MHz on LFE5U-85F-6 (issue 6; floor 100 MHz); digits >= 200 MHz
with the ECP5 back end, >= 70 MHz on iCE40UP5K, c32 >= 200 MHz (issue 8).  A design that
does not fit or fails place-and-route is reported with the tool's message and log.

    .venv/bin/python bench/fmax.py [--seeds 3] [--only ecp5|ice40] [--keep DIR]
        [--designs digits,conv|small,medium,large,c32] [--router router1|router2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from hwconv import compiler, explore, transforms, zoo
from hwconv.devices import device as lookup_device
from hwconv.errors import HwconvError
from hwconv.ir import Conv2D, Network
from rtl_gen.dse import emit_pipeline
from rtl_gen.synth import ROUTERS, place_and_route, synthesize

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits_qdq.onnx"
TARGET = {"ecp5-85f": 150.0, "ice40-up5k": 60.0}
#: each device's own multiplier back end (reported beside the generic one)
BACKENDS = {"ecp5-85f": ["ecp5", "generic"], "ice40-up5k": ["ice40", "generic"]}
CONVS = {"small": ((8, 8, 2), 2, {"pe": 1, "simd": 1}),
         "medium": ((16, 16, 8), 8, {"pe": 1, "simd": 1}),
         "large": ((32, 32, 16), 16, {"pe": 1, "simd": 1}),
         "c32": ((16, 16, 32), 32, {"pe": 2, "simd": 8})}
#: the conv designs per device (c32 does not fit the UP5K)
DEVICE_CONVS = {"ecp5-85f": ["small", "medium", "large", "c32"],
                "ice40-up5k": ["small", "medium", "large"]}


def digits_point(device, backend):
    """The digits pipeline at its fastest fitting point (ECP5) or fewest LUTs (iCE40)."""
    small = device == "ice40-up5k"
    r = explore.explore(DIGITS, device, workers=1, progress=False, device_limits=not small,
                        backend=backend, skid=not small)
    point = min(r.front, key=lambda p: p.lut) if small else r.front[0]
    model, qnet = r.models[0]
    c = explore.compile_point(model, qnet, point.foldings, clock_mhz=TARGET[device],
                              in_lanes=1, backend=backend, skid=not small)
    return c, point


def conv_compiled(size, device, backend):
    shape, out_ch, folding = CONVS[size]
    if backend == "ice40":          # 9 products would need 9 of the UP5K's 8 SB_MAC16
        folding = {**folding, "kfold": 9}
    rng = np.random.default_rng(1)
    net = Network(shape)
    net.add("conv", Conv2D(zoo.conv_weight(rng, out_ch, 3, shape[2]),
                           rng.normal(0, .1, out_ch), 1, "same"), net.input)
    model = compiler.load(net, calibration=rng.normal(size=(4,) + shape))
    qnet, _ = transforms.pool_before_activate(model.qnet)
    return explore.compile_point(model, qnet, {"conv": folding}, clock_mhz=TARGET[device],
                                 in_lanes=1, backend=backend)


def measure(name, compiled, device, work, seeds, pool, backend, router=None):
    """Synthesize, place and route ``compiled``; a dict of figures or of the failure."""
    work = Path(work)
    try:
        rep = synthesize(emit_pipeline(compiled, work), compiled.top, device, work)
    except HwconvError as e:
        return {"name": name, "device": device, "backend": backend, "error": str(e)}
    dev, t = lookup_device(device), rep.total
    over = [f"{used:g} {what} > {have:g}" for used, have, what in
            ((t.lut, dev.luts, "LUT"), (t.dsp, dev.dsp, "DSP"), (t.bram, dev.bram_blocks,
                                                                  "BRAM"))
            if used > have]
    if over:
        return {"name": name, "device": device, "backend": backend, "resources": t.to_json(),
                "multipliers": compiled.plan.multipliers, "notes": rep.notes,
                "cycles_per_frame": compiled.plan.cycles_per_frame,
                "error": f"does not fit {dev.part} (Yosys: {', '.join(over)}); "
                         f"log: {rep.log}"}
    futures = [pool.submit(place_and_route, rep.netlist, device, work,
                           freq_mhz=TARGET[device], seed=s, router=router)
               for s in range(1, seeds + 1)]
    runs, errors = [], []
    for f in futures:
        try:
            runs.append(f.result())
        except HwconvError as e:
            errors.append(str(e))
    res = {"name": name, "device": device, "backend": backend,
           "resources": rep.total.to_json(),
           "multipliers": compiled.plan.multipliers,
           "cycles_per_frame": compiled.plan.cycles_per_frame, "notes": rep.notes}
    if not runs:
        res["error"] = errors[0]
        return res
    mid = sorted(runs, key=lambda r: r.fmax_mhz)[(len(runs) - 1) // 2]
    res.update(fmax=[round(r.fmax_mhz, 1) for r in runs],
               median=round(statistics.median(r.fmax_mhz for r in runs), 1),
               critical=(mid.critical_from, mid.critical_to), log=str(mid.log))
    return res


def report(res):
    head = f"{res['name']:<14} {res['device']:<11} {res['backend']:<8}"
    r = res.get("resources")
    usage = (f"{r['lut']} LUT {r['ff']} FF {r['dsp']} DSP {r['bram']:g} BRAM, "
             f"{res['multipliers']} mults" if r else "")
    if "median" not in res:
        return f"{head} {'FAILED':>6}     ({usage}): {res['error'][:300]}"
    frm, to = res["critical"]
    # the synthesis notes say, among others, whether ABC9 crashed and classic ABC mapped
    # the LUTs (tens of MHz on ECP5)
    notes = "".join(f"\n{'':<35}synthesis: {n}" for n in res.get("notes", []))
    return (f"{head} {res['median']:>6.1f} MHz (seeds {res['fmax']}; {usage}); "
            f"critical path (median seed) {frm} -> {to}{notes}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--only", choices=["ecp5", "ice40"])
    p.add_argument("--designs", default="digits,conv",
                   help="comma-separated: digits, conv (default both)")
    p.add_argument("--keep", metavar="DIR", help="keep the Yosys/nextpnr folders here")
    p.add_argument("--router", choices=ROUTERS, default=None,
                   help="nextpnr router (default: nextpnr's own, router1; router2 "
                        "finishes where router1 stops converging)")
    p.add_argument("--backends", default=None,
                   help="comma-separated multiplier back ends (default: the device's own "
                        "and generic)")
    args = p.parse_args(argv)
    base = Path(args.keep or tempfile.mkdtemp(prefix="hwconv-fmax-"))
    devices = [d for d in TARGET if args.only is None or d.startswith(args.only)]
    results = []
    with ProcessPoolExecutor(2) as pool:
        designs = args.designs.split(",")
        for dev in devices:
            backends = args.backends.split(",") if args.backends else BACKENDS[dev]
            for be in backends:
                if "digits" in designs:
                    c, point = digits_point(dev, be)
                    print(f"digits on {dev} ({be}): point #{point.id} {point.foldings} "
                          f"({point.cycles_per_frame} cycles/frame, analytic {point.dsp} "
                          f"DSP {point.lut} LUT)")
                    results.append(measure("digits", c, dev, base / f"digits_{dev}_{be}",
                                           args.seeds, pool, be, args.router))
                    print(report(results[-1]), flush=True)
                for size in [s for s in DEVICE_CONVS[dev] if "conv" in designs or s in designs]:
                    results.append(measure(f"conv_{size}", conv_compiled(size, dev, be), dev,
                                           base / f"conv_{size}_{dev}_{be}", args.seeds,
                                           pool, be, args.router))
                    print(report(results[-1]), flush=True)
    print(f"(work folders under {base})")
    def find(name, device, backend):
        return next((r for r in results if r["name"] == name and r["device"] == device
                     and r["backend"] == backend), None)

    goals = [("digits on LFE5U-85F-6, ECP5 back end (issue 6: goal 150, floor 100)",
              ("digits", "ecp5-85f", "ecp5"), 100),
             ("digits on LFE5U-85F-6, ECP5 back end (issue 8)",
              ("digits", "ecp5-85f", "ecp5"), 200),
             ("digits on iCE40UP5K, ice40 back end (issue 8)",
              ("digits", "ice40-up5k", "ice40"), 70),
             ("3x3x32->32 conv on LFE5U-85F-6, ECP5 back end (issue 8)",
              ("conv_c32", "ecp5-85f", "ecp5"), 200)]
    for what, key, floor in goals:
        r = find(*key)
        if r is not None:
            mhz = r.get("median")
            got = f"{mhz} MHz" if mhz is not None else "failed"
            print(f"{what}: >= {floor} MHz {'met' if mhz and mhz >= floor else 'NOT met'} "
                  f"({got})")
    fields = " ".join(f"{r['name']}_{r['device'].split('-')[0]}_{r['backend']}_mhz="
                      f"{r.get('median', 'fail')}" for r in results)
    print(f"summary: {fields}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
