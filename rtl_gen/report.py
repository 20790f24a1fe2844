"""Design-space exploration reports: the Pareto front as a table, CSV, JSON and a plot.

:func:`write_exploration` writes ``pareto.csv`` (the front, one row per point with the
analytic figures and, after ``--synth``, Yosys's), ``pareto.json`` (the same plus every
point's foldings, the device, the budget and the timings), ``points.csv`` (every point
evaluated, for your own plots) and ``pareto.png`` (frames per second against DSP blocks,
block RAM and LUTs: every point in grey, the front in colour, synthesized figures as
crosses).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402

__all__ = ["front_table", "write_exploration", "plot_pareto"]

_COLUMNS = ["id", "variant", "preference", "fps", "cycles_per_frame", "latency",
            "multipliers", "requant_multipliers", "dsp", "bram", "lut", "ff", "lutram"]
_SYNTH = ["dsp", "bram", "lut", "ff", "lutram", "fmax_mhz"]


def _fold(foldings):
    return "; ".join(f"{s}:" + ",".join(f"{k}={v}" for k, v in f.items())
                     for s, f in foldings.items())


def front_table(result):
    """The front as a text table, fastest first (synthesized figures when present)."""
    synth = any(p.synth or p.status == "failed" for p in result.front)
    head = (f"{'#':>3} {'fps':>11} {'cyc/frame':>10} {'latency':>8} {'mults':>6} "
            f"{'DSP':>5} {'BRAM':>6} {'LUT':>7} {'FF':>7}")
    if synth:
        head += f" | {'Yosys DSP':>9} {'BRAM':>6} {'LUT':>7} {'FF':>7} {'Fmax':>6}  status"
    if len(result.variants) > 1:
        head += "  variant"
    rows = [head]
    for p in result.front:
        line = (f"{p.id:>3} {p.fps:>11.1f} {p.cycles_per_frame:>10} {p.latency:>8} "
                f"{p.multipliers:>6} {p.dsp:>5} {p.bram:>6g} {p.lut:>7} {p.ff:>7}")
        if synth:
            s = p.synth or {}
            fmax = s.get("fmax_mhz")
            if p.status == "synthesized":
                line += (f" | {s['dsp']:>9} {s['bram']:>6g} {s['lut']:>7} {s['ff']:>7} "
                         f"{(f'{fmax:.0f}' if fmax else '-'):>6}  "
                         f"{'front' if p.pareto_synth else 'dominated'}")
            elif p.status == "failed":
                line += f" | {'':>40}  FAILED: {p.error[:60]} (log: {p.log})"
            else:
                line += f" | {'not synthesized':>40}"
        if len(result.variants) > 1:
            line += f"  {p.variant}"
        rows.append(line)
    for e in result.errors:
        rows.append(f"warning: {e}")
    t = result.timings
    b = result.budget
    limits = ", ".join(f"{v:g} {k.upper()}" for k, v in vars(b).items()
                       if v != float("inf")) or "no limits"
    nominal = " (nominal: --clock MHZ sets it)" \
        if result.clock_mhz == result.device.clock_mhz else ""
    rows.append(f"{len(result.front)} Pareto-optimal of {result.n_points} points "
                f"({int(result.points['fits'].sum())} within {result.device.name} budget: "
                f"{limits}); fps at {result.clock_mhz:g} MHz{nominal}; analytic sweep "
                f"{t['points_per_s']:.0f} points/s, total {t['total_s']:.1f} s")
    return "\n".join(rows)


def _row(p):
    row = {c: getattr(p, c) for c in _COLUMNS}
    row["fps"] = round(p.fps, 3)
    s = p.synth or {}
    for k in _SYNTH:
        row[f"yosys_{k}"] = s.get(k, "")
    row["status"] = p.status
    row["pareto_synth"] = "" if p.pareto_synth is None else p.pareto_synth
    row["error"] = p.error or ""
    row["log"] = p.log or ""
    row["foldings"] = _fold(p.foldings)
    return row


def write_exploration(result, out_dir):
    """Write ``pareto.csv``, ``pareto.json``, ``points.csv`` and ``pareto.png``;
    returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [_row(p) for p in result.front]
    fields = list(rows[0]) if rows else _COLUMNS
    with open(out / "pareto.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    dev = result.device
    doc = {
        "device": {"name": dev.name, "family": dev.family, "part": dev.part},
        "clock_mhz": result.clock_mhz,
        "budget": {k: (None if v == float("inf") else v)
                   for k, v in vars(result.budget).items()},
        "variants": result.variants,
        "objectives": ["cycles_per_frame", "dsp", "bram", "lut"],
        "points_evaluated": result.n_points,
        "points_fitting": int(result.points["fits"].sum()),
        "timings": result.timings,
        "errors": result.errors,
        "front": [p.to_json() for p in result.front],
    }
    (out / "pareto.json").write_text(json.dumps(doc, indent=2, default=_json) + "\n")
    pts = result.points
    cols = ["variant", "cycles", "multipliers", "requant", "latency", "dsp", "bram", "lut",
            "ff", "lutram", "fits", "front"]
    with open(out / "points.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["variant", "fps"] + cols[1:])
        for i in range(result.n_points):
            cyc = int(pts["cycles"][i])
            w.writerow([result.variants[int(pts["variant"][i])],
                        round(result.clock_mhz * 1e6 / cyc, 3)]
                       + [_json(pts[c][i]) for c in cols[1:]])
    plot_pareto(result, out / "pareto.png")
    return [out / n for n in ("pareto.csv", "pareto.json", "points.csv", "pareto.png")]


def _json(v):
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    return v


def plot_pareto(result, path):
    """Frames per second against DSP, BRAM and LUTs (one panel each)."""
    pts = result.points
    fps = result.clock_mhz * 1e6 / pts["cycles"]
    fits = pts["fits"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharey=True)
    for ax, key, label in zip(axes, ("dsp", "bram", "lut"),
                              ("DSP blocks", "block RAM", "LUTs")):
        ax.scatter(pts[key][~fits], fps[~fits], s=8, c="#e0b0b0", label="over budget")
        ax.scatter(pts[key][fits], fps[fits], s=8, c="#b0b0b0", label="fits")
        fx = [getattr(p, key) for p in result.front]
        fy = [p.fps for p in result.front]
        ax.scatter(fx, fy, s=28, c="#1f5fbf", zorder=3, label="Pareto front")
        sx = [p.synth[key] for p in result.front if p.synth]
        sy = [p.fps for p in result.front if p.synth]
        if sx:
            ax.scatter(sx, sy, s=40, marker="x", c="#c00000", zorder=4, label="Yosys")
        limit = {"dsp": result.budget.dsp, "bram": result.budget.bram,
                 "lut": result.budget.lut}[key]
        shown = max([float(pts[key].max()) if len(pts[key]) else 0.0] + fx + sx)
        if limit <= 2 * shown:
            ax.axvline(limit, color="#c00000", lw=0.8, ls="--", label="budget")
        what = f"budget {limit:g}" if limit != float("inf") else "no limit"
        ax.set_xlabel(f"{label} ({result.device.family} estimate, {what})")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"frames/s at {result.clock_mhz:g} MHz")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"throughput vs resources: {len(result.front)} Pareto-optimal of "
                 f"{result.n_points} design points")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
