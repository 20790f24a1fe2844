"""A picture of the pipeline: one box per stage with its folding and cycles per frame,
the bottleneck in red, residual skip paths as arcs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

__all__ = ["draw_pipeline"]


def _fold_text(folding):
    return " ".join(f"{k}={v}" for k, v in folding.items())


def draw_pipeline(manifest, path):
    """Draw ``manifest["stages"]`` left to right into ``path`` (PNG)."""
    stages = manifest["stages"]
    n = len(stages)
    worst = max(s["cycles_per_frame"] for s in stages)
    fig, ax = plt.subplots(figsize=(max(6.0, 2.1 * n + 1.5), 3.2))
    pos = {}
    for k, s in enumerate(stages):
        x = 1.2 + 2.1 * k
        pos[s["output"]] = x
        hot = s["cycles_per_frame"] == worst
        ax.add_patch(FancyBboxPatch((x - 0.9, 0.2), 1.8, 1.6, boxstyle="round,pad=0.05",
                                    fc="#ffd6d6" if hot else "#e8f0fe",
                                    ec="#c00000" if hot else "#3060a0", lw=2 if hot else 1))
        ax.text(x, 1.55, s["name"], ha="center", va="center", fontsize=8, weight="bold")
        ax.text(x, 1.2, s["kind"], ha="center", va="center", fontsize=8)
        ax.text(x, 0.88, _fold_text(s["folding"]), ha="center", va="center", fontsize=7)
        ax.text(x, 0.5, f"{s['cycles_per_frame']} cyc/frame", ha="center", va="center",
                fontsize=7, color="#c00000" if hot else "black")
    pos[manifest["input"]["tensor"]] = 0.0
    ax.text(0.0, 1.0, "s_axis", ha="center", va="center", fontsize=8)
    for k, s in enumerate(stages):
        x = pos[s["output"]]
        for j, t in enumerate(s["inputs"]):
            x0 = pos.get(t, x - 2.1)
            adjacent = abs((x - x0) - 2.1) < 1e-6 or x0 == 0.0 and k == 0
            if adjacent:
                ax.add_patch(FancyArrowPatch((x0 + (0.9 if x0 else 0.3), 1.0), (x - 0.9, 1.0),
                                             arrowstyle="->", mutation_scale=10))
            else:
                ax.add_patch(FancyArrowPatch((x0, 1.85), (x, 1.85), arrowstyle="->",
                                             mutation_scale=10, connectionstyle="arc3,rad=-0.3",
                                             color="#707070"))
    xe = 1.2 + 2.1 * (n - 1) + 1.6
    ax.add_patch(FancyArrowPatch((xe - 0.7, 1.0), (xe, 1.0), arrowstyle="->",
                                 mutation_scale=10))
    ax.text(xe + 0.35, 1.0, "m_axis", ha="center", va="center", fontsize=8)
    t = manifest["totals"]
    ax.set_title(f"{manifest['top']}: {t['cycles_per_frame']} cycles/frame "
                 f"({t['fps']:.0f} fps at {manifest['clock_mhz']} MHz), "
                 f"{t['multipliers']} multipliers; bottleneck in red", fontsize=9)
    ax.set_xlim(-0.6, xe + 0.8)
    ax.set_ylim(0, 2.6)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
