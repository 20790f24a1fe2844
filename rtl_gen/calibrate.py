"""Calibration: the analytic resource model (:mod:`hwconv.cost`) against Yosys, per stage.

Every stage kind (conv, depthwise/pointwise, pool/activate, dense, global average pool,
residual add) and the elastic FIFO between stages is synthesized alone at several
foldings for a device, and so are memories and multipliers alone (block vs LUT RAM vs
logic thresholds, DSP tiling of wide and constant products); the report puts the
analytic DSP / BRAM / LUT / FF figures beside Yosys's with the error in percent.
``--fit`` also solves for the family's LUT and FF coefficients (the DSP and BRAM rules
are structural and are not fitted).

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

__all__ = ["Case", "calibration_specs", "stage_cases", "run_case", "calibrate", "fit",
           "format_table", "summary", "write", "error_pct", "primitive_rows", "main"]

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits_qdq.onnx"


@dataclasses.dataclass
class Case:
    """One stage (a :class:`~hwconv.mapper.StageSpec` at a folding) or one FIFO."""

    label: str
    kind: str
    spec: object = None
    folding: dict = None
    fifo: tuple = None          # (width bits, depth beats) for kind "fifo"
    backend: str = "generic"    # multiplier back end (hwconv.hw.dsp)

    def inventory(self):
        if self.kind == "fifo":
            return cost.fifo_inventory(*self.fifo)
        return explore.stage_inventory(self.spec, self.folding, self.backend)

    def hardware(self):
        if self.kind == "fifo":
            from amaranth.hdl import signed

            from hwconv.hw.fifo import StreamFifo
            from hwconv.hw.stream import beat_signature
            width, depth = self.fifo
            return StreamFifo(beat_signature(signed(8), (width - 1) // 8), depth)
        from hwconv.hw.pipeline import make_stage
        return make_stage(dataclasses.replace(self.spec, folding=dict(self.folding)),
                          self.backend)


def calibration_specs():
    """(network, stage spec) pairs of the every-stage-kind network and the digits CNN."""
    rng = np.random.default_rng(0)
    net = zoo.every_stage_net()
    model = compiler.load(net, calibration=rng.normal(size=(4,) + net.input_shape))
    qnet, _ = transforms.pool_before_activate(model.qnet)
    return [("every_stage", s) for s in mapper.group_stages(qnet)] + \
        [("digits", s) for s in mapper.group_stages(compiler.compile(DIGITS).qnet)]


def stage_cases(max_multipliers=256, per_stage=3, quick=False, kinds=None,
                backend="generic"):
    """Calibration cases: every stage at up to ``per_stage`` foldings of the mapper's
    front (cheapest, middle, fastest within ``max_multipliers``), plus FIFOs.

    ``quick`` keeps one stage of each kind (the first found) and two FIFOs; ``kinds``
    keeps only those kinds (``"fifo"`` included); ``backend`` builds the multiplies.
    """
    cases, seen_kind = [], set()
    for net, spec in calibration_specs():
        if (kinds is not None and spec.kind not in kinds) or \
                (quick and spec.kind in seen_kind):
            continue
        seen_kind.add(spec.kind)
        front = [f for f, c in mapper.foldings(spec) if c.multipliers <= max_multipliers]
        picks = sorted({0, len(front) - 1, len(front) // 2})
        picks = [picks[0], picks[-1], *picks[1:-1]][:per_stage]
        for k in sorted(set(picks)):
            f = front[k]
            label = f"{net}/{spec.name} " + " ".join(f"{a}={b}" for a, b in f.items())
            cases.append(Case(label, spec.kind, spec, f, backend=backend))
    if kinds is None or "fifo" in kinds:
        fifos = [(9, 16), (33, 128)] if quick else [(9, 16), (17, 64), (33, 128),
                                                    (65, 32), (9, 1024), (129, 64)]
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

    Non-negative least squares, each row weighted by ``1 / max(value, 50)`` so small
    and large stages count alike: LUTs on :data:`hwconv.cost.LUT_FEATURES`, FFs on
    register bits, product register bits and soft-multiplier partial products.
    Returns ``(lut_coef, ff_coef)`` tuples.
    """
    ok = [r for r in rows if "yosys" in r and r["kind"] not in ("memory", "multiply")]
    if not ok:
        raise HwconvError("no successful calibration rows to fit")

    def solve(keys, target):
        x = np.array([[r["features"][k] for k in keys] for r in ok], float)
        y = np.array([r["yosys"][target] for r in ok], float)
        w = 1.0 / np.maximum(y, 50.0)
        return tuple(round(float(c), 3) for c in _nnls(x * w[:, None], y * w))
    return solve(cost.LUT_FEATURES, "lut"), solve(("ff", "mul_ff", "soft_mul"), "ff")


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
           f"{'err%':>6} {'LUT a/y':>13} {'err%':>6} {'FF a/y':>13} {'err%':>6} "
           f"{'LUTRAM a/y':>10}"]
    for r in rows:
        if "yosys" not in r:
            out.append(f"{r['label']:<38} {r['kind']:<13} FAILED: {r['error'][:120]}")
            continue
        a, y, e = r["analytic"], r["yosys"], r["error_pct"]
        cells = []
        for k, wid in (("dsp", 11), ("bram", 11), ("lut", 13), ("ff", 13)):
            err = f"{e[k]:>+6.1f}" if k in e else f"{'-':>6}"
            cells.append(f"{f'{a[k]:g}/{y[k]:g}':>{wid}} {err}")
        lram = f"{a['lutram']}/{y['lutram']}"
        cells.append(f"{lram:>10}")
        out.append(f"{r['label'][:38]:<38} {r['kind']:<13} " + " ".join(cells))
    return "\n".join(out)


def summary(rows):
    """Worst DSP/BRAM error and median |error| of LUT/FF, in percent."""
    ok = [r for r in rows if "yosys" in r]
    if not ok:
        return {"cases": len(rows), "failed": len(rows)}
    err = {k: np.array([abs(r["error_pct"][k]) for r in ok if k in r["error_pct"]])
           for k in ("dsp", "bram", "lut", "ff")}
    out = {"cases": len(rows), "failed": len(rows) - len(ok),
           "dsp_max_err_pct": round(float(err["dsp"].max()), 2),
           "bram_max_err_pct": round(float(err["bram"].max()), 2)}
    for k in ("lut", "ff"):
        if len(err[k]):
            out[f"{k}_median_err_pct"] = round(float(np.median(err[k])), 1)
    return out


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
                err = r.get("error_pct", {}).get(k)
                vals += [r["analytic"][k], r.get("yosys", {}).get(k, ""),
                         "" if err is None else round(err, 2)]
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
            rows += primitive_rows(dev.name, work / "primitives")
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



# -- primitives: memories and multipliers alone ------------------------------------------

#: (width, depth, rom, block) memories around the block / LUT RAM / logic thresholds.
MEMORIES = [(8, 16, False, False), (8, 64, False, False), (33, 127, False, False),
            (16, 512, False, False), (8, 2048, False, False), (72, 256, False, False),
            (24, 300, False, True), (8, 32, True, False), (40, 256, True, False),
            (16, 1024, True, False), (144, 9, True, False), (64, 64, True, False)]

#: (a_bits, a_signed, b_bits, b_signed, constant or None) products.
MULTIPLIES = [(8, True, 8, True, None), (9, True, 8, True, None), (8, True, 4, True, None),
              (17, True, 25, True, None), (20, True, 17, True, None),
              (24, True, 25, True, None), (30, True, 25, True, None),
              (8, False, 8, False, None), (8, True, 2, True, None),
              (8, True, 8, True, 3), (8, True, 8, True, -4), (8, True, 8, True, 127),
              (20, True, 25, True, 12582912), (20, True, 25, True, 12582913)]


def _memory_module(name, width, depth, rom, block):
    abits = max(1, (depth - 1).bit_length())
    attr = '(* ram_style = "block" *) ' if block else ""
    rng = np.random.default_rng(width * 7919 + depth)      # every bit column varies
    words = [int.from_bytes(rng.bytes((width + 7) // 8), "little") % (1 << width)
             for _ in range(depth)] if rom else []
    init = "".join(f"    mem[{k}] = {width}'h{v:x};\n" for k, v in enumerate(words))
    write = "" if rom else "    if (we) mem[wa] <= wd;\n"
    return (f"module {name}(input clk, input we, input [{abits - 1}:0] ra, wa, "
            f"input [{width - 1}:0] wd, output reg [{width - 1}:0] rd);\n"
            f"  {attr}reg [{width - 1}:0] mem [0:{depth - 1}];\n"
            + (f"  initial begin\n{init}  end\n" if rom else "")
            + f"  always @(posedge clk) begin\n{write}    rd <= mem[ra];\n  end\n"
            f"endmodule\n")


def _multiply_module(name, a, a_signed, b, b_signed, const):
    sa = "signed " if a_signed else ""
    sb = "signed " if b_signed else ""
    if const is None:
        operand, port = "b", f", input {sb}[{b - 1}:0] b"
    else:
        operand = f"{'-' if const < 0 else ''}{b}'{'s' if b_signed else ''}d{abs(const)}"
        port = ""
    return (f"module {name}(input clk, input {sa}[{a - 1}:0] a{port}, "
            f"output reg {'signed ' if (a_signed or b_signed) else ''}[{a + b - 1}:0] y);\n"
            f"  reg {sa}[{a - 1}:0] ar;\n"
            f"  always @(posedge clk) begin ar <= a; y <= ar * {operand}; end\n"
            f"endmodule\n")


def primitive_rows(device, workdir, memories=MEMORIES, multiplies=MULTIPLIES):
    """``memories`` and ``multiplies`` (default :data:`MEMORIES`, :data:`MULTIPLIES`)
    synthesized in one Yosys run (one module each); rows as :func:`calibrate` makes
    them."""
    dev = lookup_device(device)
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    mods, expect = [], []
    for k, (w, d, rom, block) in enumerate(memories):
        name = f"mem{k}"
        mods.append(_memory_module(name, w, d, rom, block))
        inv = cost.Inventory(memories=(cost.Storage(w, d, rom=rom, block=block),))
        label = f"{'rom' if rom else 'ram'} {w}x{d}{' block' if block else ''}"
        expect.append((name, label, "memory", inv))
    for k, (a, sa, b, sb, c) in enumerate(multiplies):
        name = f"mul{k}"
        mods.append(_multiply_module(name, a, sa, b, sb, c))
        inv = cost.Inventory(multiplies=(cost.Multiply(a, b, sa, sb, const=c),))
        label = f"{a}{'s' if sa else 'u'} x " + (f"{b}{'s' if sb else 'u'}" if c is None
                                                 else f"const {c}")
        expect.append((name, label, "multiply", inv))
    # a top driving every module from its ports and exporting every output keeps
    # them all through synthesis (hierarchy is kept, so no constant crosses modules)
    ports, body = ["input clk", "input [255:0] din"], []
    for k, (name, label, kind, inv) in enumerate(expect):
        if kind == "memory":
            w, d = inv.memories[0].width, inv.memories[0].depth
            ab = max(1, (d - 1).bit_length())
            ports.append(f"output [{w - 1}:0] q{k}")
            body.append(f"  {name} u{k}(.clk(clk), .we(din[0]), .ra(din[{ab}:1]), "
                        f".wa(din[{2 * ab}:{ab + 1}]), .wd(din[{w + 39}:40]), .rd(q{k}));")
        else:
            m = inv.multiplies[0]
            ports.append(f"output [{m.a_bits + m.b_bits - 1}:0] q{k}")
            b = "" if m.const is not None else f", .b(din[{m.b_bits + 99}:100])"
            body.append(f"  {name} u{k}(.clk(clk), .a(din[{m.a_bits - 1}:0]){b}, .y(q{k}));")
    top = "module prims(" + ", ".join(ports) + ");\n" + "\n".join(body) + "\nendmodule\n"
    src = work / "prims.v"
    src.write_text("".join(mods) + top)
    rep = synthesize([src], "prims", dev.name, work)
    rows = []
    for name, label, kind, inv in expect:
        est = cost.estimate(inv, dev.family).to_json()
        got = rep.subtree(name).to_json() if name in rep.modules else None
        row = {"label": label, "kind": kind, "device": dev.name, "analytic": est,
               "features": cost.logic_features(inv, dev.family), "log": str(rep.log)}
        if got is None:
            row["error"] = f"module {name} missing from the synthesized design"
        else:
            row["yosys"] = got
            row["error_pct"] = {k: error_pct(est[k], got[k])
                                for k in ("dsp", "bram", "lutram")}
        rows.append(row)
    return rows


if __name__ == "__main__":
    sys.exit(main())
