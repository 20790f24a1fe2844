"""Real-synthesis scoring of design points (the ``rescore`` of
:func:`hwconv.explore.explore`): Verilog of the point's pipeline -> Yosys -> resources per
stage and in total, optionally nextpnr -> Fmax.  Runs on any executor worker.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hwconv.devices import device as lookup_device
from hwconv.explore import compile_point

from .emit import verilog_text
from .synth import place_and_route, synthesize

__all__ = ["synth_point", "emit_pipeline"]


def emit_pipeline(compiled, folder):
    """Write the AXI4-Stream top of ``compiled`` to ``folder/<top>.v``; returns the list
    of Verilog files."""
    from hwconv.hw.pipeline import pipeline_top

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / f"{compiled.top}.v"
    src.write_text(verilog_text(pipeline_top(compiled), compiled.top))
    return [src]


def synth_point(job):
    """Synthesize one design point.

    Parameters
    ----------
    job : dict
        ``model``, ``qnet`` (transformed), ``foldings``, ``device``, ``clock_mhz``,
        optional ``workdir`` (default a fresh temporary folder) and ``fmax`` (also place
        and route, where the family has an open flow).

    Returns
    -------
    dict
        ``dsp``, ``bram``, ``lut``, ``ff``, ``lutram`` (Yosys), ``stages`` (per stage),
        ``log``, ``notes``, and ``fmax_mhz`` / ``critical_path`` with ``fmax``.

    Raises
    ------
    rtl_gen.synth.ToolError
        Yosys or nextpnr failed; ``log`` names the log.
    """
    from hwconv.hw.pipeline import sanitize

    dev = lookup_device(job["device"])
    compiled = compile_point(job["model"], job["qnet"], job["foldings"],
                             clock_mhz=job["clock_mhz"],
                             backend=job.get("backend", "generic"),
                             skid=job.get("skid", True))
    work = Path(job.get("workdir") or tempfile.mkdtemp(prefix="hwconv-dse-"))
    sources = emit_pipeline(compiled, work)
    rep = synthesize(sources, compiled.top, dev.name, work)
    out = rep.total.to_json()
    core = f"{compiled.top}.core"
    out["stages"] = {s.name: rep.subtree(f"{core}.{sanitize(s.name)}").to_json()
                     for s in compiled.plan.stages
                     if f"{core}.{sanitize(s.name)}" in rep.modules}
    out["log"] = str(rep.log)
    out["notes"] = rep.notes
    if job.get("fmax") and dev.nextpnr is not None:
        pnr = place_and_route(rep.netlist, dev.name, work, freq_mhz=job["clock_mhz"])
        out["fmax_mhz"] = round(pnr.fmax_mhz, 2)
        out["critical_path"] = [pnr.critical_from, pnr.critical_to]
        out["pnr_log"] = str(pnr.log)
    return out
