"""Calibration: the analytic resource model (:mod:`hwconv.cost`) against Yosys, per stage.

Every stage kind (conv, depthwise/pointwise, pool/activate, dense, global average pool,
residual add) and the elastic FIFO between stages is synthesized alone at several
foldings for a device; the report puts the analytic DSP / BRAM / LUT / FF figures beside
Yosys's with the error in percent.  ``--fit`` also solves for the family's LUT and FF
coefficients (the DSP and BRAM rules are structural and are not fitted).

    python -m rtl_gen.calibrate --device ecp5-85f -o build/calibration [--fit] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hwconv import compiler, cost, explore, mapper, transforms, zoo
from hwconv.devices import device as lookup_device
from hwconv.errors import HwconvError

from .emit import verilog_text
from .synth import synthesize

__all__ = ["Case", "stage_cases", "run_case", "calibrate", "fit", "format_table",
           "error_pct", "main"]

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits_qdq.onnx"


@dataclasses.dataclass
class Case:
    """One stage (a :class:`~hwconv.mapper.StageSpec` at a folding) or one FIFO."""

    label: str
    kind: str
    spec: object = None
    folding: dict = None
    fifo: tuple = None          # (width bits, depth beats) for kind "fifo"

    def inventory(self):
        if self.kind == "fifo":
            return cost.fifo_inventory(*self.fifo)
        return explore.stage_inventory(self.spec, self.folding)

    def hardware(self):
        if self.kind == "fifo":
            from amaranth.hdl import signed

            from hwconv.hw.fifo import StreamFifo
            from hwconv.hw.stream import beat_signature
            width, depth = self.fifo
            return StreamFifo(beat_signature(signed(8), (width - 1) // 8), depth)
        from hwconv.hw.pipeline import make_stage
        return make_stage(dataclasses.replace(self.spec, folding=dict(self.folding)))


def _specs():
    """Stage specs of the digits CNN and of the every-stage-kind network."""
    rng = np.random.default_rng(0)
    net = zoo.every_stage_net()
    model = compiler.load(net, calibration=rng.normal(size=(4,) + net.input_shape))
    qnet, _ = transforms.pool_before_activate(model.qnet)
    specs = mapper.group_stages(qnet)
    specs += mapper.group_stages(compiler.compile(DIGITS).qnet)
    return specs


def stage_cases(max_multipliers=256, per_stage=3, quick=False):
    """Calibration cases: every stage at up to ``per_stage`` foldings of the mapper's
    front (cheapest, middle, fastest within ``max_multipliers``), plus FIFOs.

    ``quick`` keeps two foldings of one stage of each kind, small enough for a test.
    """
    cases, seen_kind = [], {}
    for spec in _specs():
        front = [f for f, c in mapper.foldings(spec) if c.multipliers <= max_multipliers]
        if quick:
            if seen_kind.get(spec.kind, 0) >= 1:
                continue
            picks = sorted({0, min(2, len(front) - 1)})
        else:
            picks = sorted({0, len(front) // 2, len(front) - 1})[:per_stage]
        seen_kind[spec.kind] = seen_kind.get(spec.kind, 0) + 1
        for k in picks:
            f = front[k]
            label = f"{spec.name} " + " ".join(f"{a}={b}" for a, b in f.items())
            cases.append(Case(label, spec.kind, spec, f))
    fifos = [(9, 16), (33, 128)] if quick else [(9, 16), (17, 64), (33, 128), (65, 32),
                                                (9, 1024), (129, 64)]
    for width, depth in fifos:
        cases.append(Case(f"fifo {(width - 1) // 8} lanes x {depth}", "fifo",
                          fifo=(width, depth)))
    return cases


def run_case(case, device, workdir):
    """Synthesize ``case`` alone for ``device`` in ``workdir``; returns a result dict
    (``yosys`` figures, or ``error`` and ``log``)."""
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    src = work / "stage.v"
    src.write_text(verilog_text(case.hardware(), "stage"))
    try:
        rep = synthesize([src], "stage", device, work)
    except HwconvError as e:
        return {"error": str(e), "log": str(getattr(e, "log", "") or "")}
    return {"yosys": rep.total.to_json(), "log": str(rep.log), "notes": rep.notes}


def error_pct(est, real):
    """Signed error of ``est`` against ``real`` in percent (0 when both are 0)."""
    if real == 0:
        return 0.0 if est == 0 else 100.0
    return 100.0 * (est - real) / real


def calibrate(device, workdir, *, cases=None, executor=None, progress=True):
    """Synthesize every case and compare with the analytic model.

    Returns
    -------
    list of dict
        One row per case: ``label``, ``kind``, ``analytic`` and ``yosys`` figures,
        ``error_pct`` per resource, ``features`` (for :func:`fit`), or ``error``/``log``.
    """
    dev = lookup_device(device)
    cases = stage_cases() if cases is None else cases
    work = Path(workdir)
    calls = [(run_case, (c, dev.name, work / f"case{k:03d}")) for k, c in enumerate(cases)]
    own = executor is None
    if own:
        executor = explore.local_executor()
    try:
        results = explore.gather(executor, calls, f"synthesize stages ({dev.name})",
                                  progress)
    finally:
        if own:
            executor.shutdown(wait=True)
    rows = []
    for case, res in zip(cases, results):
        inv = case.inventory()
        est = cost.estimate(inv, dev.family).to_json()
        row = {"label": case.label, "kind": case.kind, "device": dev.name,
               "analytic": est, "features": cost.logic_features(inv, dev.family)}
        if isinstance(res, Exception):
            res = {"error": f"{type(res).__name__}: {res}", "log": ""}
        row.update(res)
        if "yosys" in res:
            row["error_pct"] = {k: error_pct(est[k], res["yosys"][k])
                                for k in ("dsp", "bram", "lut", "ff")}
        rows.append(row)
    return rows


def fit(rows, family):
    """LUT and FF coefficients for ``family`` from calibration ``rows``.

    LUTs: non-negative least squares on :data:`hwconv.cost.LUT_FEATURES`, each row
    weighted by ``1 / max(LUTs, 50)`` so small and large stages count alike.  FFs: one
    factor on register bits.  Returns ``(lut_coef, ff_coef)`` tuples.
    """
    ok = [r for r in rows if "yosys" in r]
    if not ok:
        raise HwconvError("no successful calibration rows to fit")
    x = np.array([[r["features"][k] for k in cost.LUT_FEATURES] for r in ok], float)
    y = np.array([r["yosys"]["lut"] + 0.0 for r in ok])
    w = 1.0 / np.maximum(y, 50.0)
    coef = _nnls(x * w[:, None], y * w)
    reg = np.array([r["features"]["ff"] for r in ok], float)
    ffy = np.array([r["yosys"]["ff"] for r in ok], float)
    wf = 1.0 / np.maximum(ffy, 50.0)
    ff = float(np.sum(reg * ffy * wf ** 2) / max(np.sum((reg * wf) ** 2), 1e-12))
    return tuple(round(float(c), 3) for c in coef), (round(ff, 3), 0.0)


def _nnls(a, b, iters=200):
    """Least squares with non-negative coefficients (active-set by elimination)."""
    free = np.ones(a.shape[1], dtype=bool)
    coef = np.zeros(a.shape[1])
    for _ in range(iters):
        sol, *_ = np.linalg.lstsq(a[:, free], b, rcond=None)
        if np.all(sol >= 0):
            coef[:] = 0
            coef[free] = sol
            return coef
        idx = np.flatnonzero(free)
        free[idx[np.argmin(sol)]] = False
    return coef


def format_table(rows):
    """The calibration rows as a text table."""
    out = [f"{'case':<38} {'kind':<13} {'DSP a/y':>11} {'err%':>6} {'BRAM a/y':>11} "
           f"{'err%':>6} {'LUT a/y':>13} {'err%':>6} {'FF a/y':>13} {'err%':>6}"]
    for r in rows:
        if "yosys" not in r:
            out.append(f"{r['label']:<38} {r['kind']:<13} FAILED: {r['error'][:120]}")
            continue
        a, y, e = r["analytic"], r["yosys"], r["error_pct"]
        cells = []
        for k, wid in (("dsp", 11), ("bram", 11), ("lut", 13), ("ff", 13)):
            cells.append(f"{f'{a[k]:g}/{y[k]:g}':>{wid}} {e[k]:>+6.1f}")
        out.append(f"{r['label'][:38]:<38} {r['kind']:<13} " + " ".join(cells))
    return "\n".join(out)


def summary(rows):
    """Worst DSP/BRAM error and median |error| of LUT/FF, in percent."""
    ok = [r for r in rows if "yosys" in r]
    if not ok:
        return {"cases": len(rows), "failed": len(rows)}
    err = {k: np.array([abs(r["error_pct"][k]) for r in ok]) for k in
           ("dsp", "bram", "lut", "ff")}
    return {"cases": len(rows), "failed": len(rows) - len(ok),
            "dsp_max_err_pct": round(float(err["dsp"].max()), 2),
            "bram_max_err_pct": round(float(err["bram"].max()), 2),
            "lut_median_err_pct": round(float(np.median(err["lut"])), 1),
            "ff_median_err_pct": round(float(np.median(err["ff"])), 1)}


def write(rows, out_dir):
    """``calibration.json`` and ``calibration.csv`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(
        {"summary": summary(rows), "rows": rows}, indent=2, default=str) + "\n")
    with open(out / "calibration.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device", "kind", "case"] + [f"{k}_{s}" for k in
                                                 ("dsp", "bram", "lut", "ff")
                                                 for s in ("analytic", "yosys", "err_pct")]
                   + ["error", "log"])
        for r in rows:
            vals = []
            for k in ("dsp", "bram", "lut", "ff"):
                vals += [r["analytic"][k], r.get("yosys", {}).get(k, ""),
                         round(r["error_pct"][k], 2) if "error_pct" in r else ""]
            w.writerow([r["device"], r["kind"], r["label"]] + vals
                       + [r.get("error", ""), r.get("log", "")])


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m rtl_gen.calibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", action="append", help="device (repeatable; default all)")
    p.add_argument("-o", "--output", default="build/calibration", metavar="DIR")
    p.add_argument("--quick", action="store_true", help="a few small cases per kind")
    p.add_argument("--max-multipliers", type=int, default=256,
                   help="largest stage folding to synthesize (default 256)")
    p.add_argument("--fit", action="store_true", help="print fitted LUT/FF coefficients")
    p.add_argument("--workers", type=int, help="parallel Yosys runs (default: CPUs)")
    args = p.parse_args(argv)
    devices = args.device or ["ecp5-85f", "ice40-up5k", "xc7a35t"]
    all_rows = []
    try:
        for name in devices:
            dev = lookup_device(name)
            t = time.perf_counter()
            cases = stage_cases(args.max_multipliers, quick=args.quick)
            work = Path(tempfile.mkdtemp(prefix=f"hwconv-cal-{dev.name}-"))
            with explore.local_executor(args.workers) as ex:
                rows = calibrate(dev.name, work, cases=cases, executor=ex)
            print(f"== {dev.name} ({dev.family}): {len(rows)} cases in "
                  f"{time.perf_counter() - t:.0f} s (Yosys work in {work})")
            print(format_table(rows))
            print(summary(rows))
            if args.fit:
                lut, ff = fit(rows, dev.family)
                print(f"fitted {dev.family}: lut_coef={lut} ff_coef={ff}")
            all_rows += rows
    except HwconvError as e:
        print(f"calibrate: error: {e}", file=sys.stderr)
        return 2
    write(all_rows, args.output)
    print(f"wrote {args.output}/calibration.csv, calibration.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
