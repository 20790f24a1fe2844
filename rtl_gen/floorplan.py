"""Floorplanning: pin every hard multiplier of a synthesized netlist to a site, stage
by stage (ECP5).

The LFE5U-85F has its 156 ``MULT18X18D`` sites in three rows (tile rows 10, 34 and 58),
four to every nine tile columns, so a stage of 36 multipliers spans 80 columns of one
row.  Left to itself nextpnr's placer interleaves the stages along those rows: on the
digits pipeline the conv stage's multipliers sat between column 5 and 115, its adder
trees and landing registers in a knot around column 75, and products and operands
crossed up to 100 columns (8.4 ns of routing at 200 MHz, ``bench/fmax.py``, issue 8).

:func:`assign` orders the multipliers by stage (the order their names first appear in
the flattened netlist, which is the order Amaranth instantiated the stages: pipeline
order) and within a stage by name (processing element, then tap: a PE's products,
which one adder tree sums, get neighbouring sites), and gives them the sites of
:data:`SITES` in a serpentine: two columns of all three rows, then the next two columns
back up.  Each stage so gets a compact block of the part, blocks follow each other in
pipeline order, and the design is centred on the part.  The sites go in the cells'
``BEL`` attribute, which nextpnr honours as a user placement constraint.

Only the placement changes: the netlist's function is the same, so ``--verify-netlist``
(which simulates this netlist) is unaffected.  Devices without a site table are left to
the placer.
"""

from __future__ import annotations

import re

from . import jsonnetlist

__all__ = ["SITES", "assign", "assign_file"]

#: ECP5-85F DSP site columns: the first of each pair of adjacent MULT18X18D sites
#: (the gap at 64-68 is the centre clock spine)
_ECP5_85F_COLUMNS = (4, 8, 13, 17, 22, 26, 31, 35, 40, 44, 49, 53, 58, 62,
                     69, 73, 78, 82, 87, 91, 96, 100, 105, 109, 114, 118)
_ECP5_85F_ROWS = (10, 34, 58)


def _ecp5_85f():
    """Sites in serpentine order: for each column pair, all rows (direction
    alternating), two sites per row.  Within a pair the BELs are ``MULT18_0/1`` or
    ``MULT18_4/5``, alternately."""
    pairs = []
    for j, x in enumerate(_ECP5_85F_COLUMNS):
        rows = _ECP5_85F_ROWS if j % 2 == 0 else _ECP5_85F_ROWS[::-1]
        a, b = (0, 1) if j % 2 == 0 else (4, 5)
        pairs.append([s for y in rows
                      for s in (f"X{x}/Y{y}/MULT18_{a}", f"X{x + 1}/Y{y}/MULT18_{b}")])
    return pairs


#: device name -> site columns (each a list of ``MULT18X18D`` BEL names, in fill order)
SITES = {"ecp5-85f": _ecp5_85f()}


def _natural(name):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _stage(name):
    """The stage a cell belongs to: its name up to the unit (``core.conv1.mac``)."""
    parts = name.split(".")
    return ".".join(parts[:3]) if len(parts) > 3 else ".".join(parts[:-1])


def assign(mod, device, cell_type="MULT18X18D"):
    """Give every ``cell_type`` cell of one (flattened) Yosys JSON module a ``BEL``
    attribute, in place.

    Returns
    -------
    dict
        ``{cell name: site}``; empty when ``device`` has no site table, when the design
        has no such cell, or when it has more cells than the device has sites (then
        place-and-route reports the overflow itself).
    """
    columns = SITES.get(device)
    cells = mod.get("cells", {})
    names = [n for n, c in cells.items() if c.get("type") == cell_type]
    if columns is None or not names:
        return {}
    per_column = len(columns[0])
    if len(names) > per_column * len(columns):
        return {}
    first = {}
    for n in names:
        first.setdefault(_stage(n), len(first))
    names.sort(key=lambda n: (first[_stage(n)], _natural(n)))
    used = -(-len(names) // per_column)
    start = (len(columns) - used) // 2
    sites = [s for col in columns[start:start + used] for s in col]
    placed = dict(zip(names, sites))
    for n, site in placed.items():
        cells[n].setdefault("attributes", {})["BEL"] = site
    return placed


def assign_file(path, top, device):
    """:func:`assign` in module ``top`` of a Yosys JSON netlist file; returns its
    dict."""
    return jsonnetlist.rewrite(path, lambda mod: assign(mod, device), top)
