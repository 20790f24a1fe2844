"""High-fanout nets: replicate their drivers in the synthesized netlist (ECP5).

A streaming stage with flow control broadcasts a few control signals to every bit of
its wide data registers: the line buffer's 576-bit window queue of a 3x3x32 conv loads
on one enable, its output multiplexers switch on one ``valid``; the MAC array's
accumulators clear on one ``first`` flag.  After synthesis each of those is a single
``TRELLIS_FF`` or ``LUT4`` driving several hundred to a thousand slice pins spread over
the part, and nextpnr (which, unlike vendor tools, never replicates) routes the net as
one tree: on the 3x3x32->32 conv the enable of the window queue's output register was
the critical path, 6.45 ns of routing (``bench/fmax.py``, issue 8).  Yosys merges
duplicated registers written in the RTL back into one (``opt_merge``), so the copies are
made here, on the netlist nextpnr reads.

:func:`replicate` works on a flattened netlist (:func:`flatten_file` flattens the
synthesized one with Yosys, exactly: no cell changes) and splits the loads of every net
driven by a ``TRELLIS_FF`` (``Q``) or ``LUT4`` (``Z``) with more than ``max_fanout`` cell
inputs into groups of at most ``max_fanout``, each driven by its own copy of the driver:
a copy has the driver's type, parameters and input connections, so it computes the same
value on every clock edge (flip-flops: same D, clock, enable, set/reset and initial
value; LUTs: same inputs and truth table).  A LUT copy adds loads to the LUT's inputs;
those nets are replicated in turn, so a flip-flop feeding a replicated enable LUT is
copied next to it.  Nets that reach a clock pin or a top-level port are left alone.
Loads are grouped in the order of their cells' names, which follows the bit order
Yosys gives the cells of one wide register, so each copy serves neighbouring bits.

The netlist simulation of ``--verify-netlist`` runs on the replicated netlist, so the
result is checked against the golden model like any other synthesis step.
"""

from __future__ import annotations

import copy
import re

from . import jsonnetlist

__all__ = ["MAX_FANOUT", "replicate", "replicate_file", "flatten_script", "adjust_stat"]

#: loads per driver copy; nextpnr-ecp5 routes nets of this size within a few tiles
MAX_FANOUT = 32
#: cell types (and their output port) whose copies are exact
DRIVERS = {"TRELLIS_FF": "Q", "LUT4": "Z"}
#: load pins a copied net must not reach (clock trees stay single-driver)
_CLOCK_PINS = {"CLK", "WCK", "CLKA", "CLKB", "CLKI"}


def flatten_script(json_name, top):
    """Yosys commands that flatten a synthesized netlist in place (no ``$scopeinfo``
    cells: nextpnr does not know them)."""
    return (f"read_json {json_name}; hierarchy -top {top}; flatten -noscopeinfo; "
            f"write_json {json_name}")


def _natural(name):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def replicate(mod, max_fanout=MAX_FANOUT):
    """Replicate the drivers of high-fanout nets in one (flattened) module of a Yosys
    JSON netlist, in place.

    Returns
    -------
    dict
        ``{net name: (driver cell type, copies added)}``.
    """
    if max_fanout < 2:
        raise ValueError(f"max_fanout must be >= 2, not {max_fanout}")
    cells, names = mod.get("cells", {}), mod.setdefault("netnames", {})
    driver, loads = {}, {}
    for name, c in cells.items():
        dirs = c.get("port_directions", {})
        for port, bits in c.get("connections", {}).items():
            for i, b in enumerate(bits):
                if not isinstance(b, int):
                    continue
                if dirs.get(port) == "output":
                    driver[b] = name
                else:
                    loads.setdefault(b, []).append((name, port, i))
    pinned = {b for p in mod.get("ports", {}).values() for b in p["bits"] if isinstance(b, int)}
    label = {}
    for n, v in names.items():
        for i, b in enumerate(v["bits"]):
            if isinstance(b, int) and (b not in label or v.get("hide_name", 0) == 0):
                label[b] = n if len(v["bits"]) == 1 else f"{n}[{i}]"
    last_bit = max([b for v in names.values() for b in v["bits"] if isinstance(b, int)]
                   + list(driver) + [1])
    added, serial = {}, {}
    # LUT-driven nets first: their copies then load the flip-flops feeding them, which
    # are split after them
    work = sorted((b for b, ls in loads.items() if len(ls) > max_fanout),
                  key=lambda b: (cells.get(driver.get(b), {}).get("type") == "LUT4", b))
    while work:
        b = work.pop()
        users, src = loads.get(b, []), driver.get(b)
        if (len(users) <= max_fanout or b in pinned or src is None
                or cells[src]["type"] not in DRIVERS
                or any(port in _CLOCK_PINS for _, port, _ in users)):
            continue
        cell = cells[src]
        out = DRIVERS[cell["type"]]
        users = sorted(users, key=lambda u: (_natural(u[0]), u[1], u[2]))
        groups = -(-len(users) // max_fanout)
        size = -(-len(users) // groups)
        loads[b] = users[:size]
        base = label.get(b, f"net{b}")
        for g in range(1, groups):
            last_bit += 1
            serial[src] = serial.get(src, 0) + 1
            dup = copy.deepcopy(cell)
            dup["connections"][out] = [last_bit]
            attrs = dup.setdefault("attributes", {})
            attrs["hwconv_replica_of"] = attrs.get("hwconv_replica_of", src)   # the original
            cname = f"{src}$fanout{serial[src]}"
            cells[cname] = dup
            driver[last_bit] = cname
            names[f"{base}$fanout{serial[src]}"] = {"hide_name": 0, "bits": [last_bit],
                                                    "attributes": {}}
            group = users[g * size:(g + 1) * size]
            loads[last_bit] = group
            for lname, port, i in group:
                cells[lname]["connections"][port][i] = last_bit
            for port, bits in dup["connections"].items():
                if port == out:
                    continue
                for i, inb in enumerate(bits):
                    if isinstance(inb, int):
                        loads.setdefault(inb, []).append((cname, port, i))
                        if len(loads[inb]) == max_fanout + 1:
                            work.append(inb)
        added[base] = (cell["type"], added.get(base, (None, 0))[1] + groups - 1)
    return added


def replicate_file(path, top, max_fanout=MAX_FANOUT):
    """Replicate in the (flattened) module ``top`` of a Yosys JSON netlist file;
    returns :func:`replicate`'s dict."""
    return jsonnetlist.rewrite(path, lambda mod: replicate(mod, max_fanout), top)


def adjust_stat(stat, top, added):
    """Count :func:`replicate`'s copies (``added``) in a Yosys ``stat -json`` dict, in
    place: in module ``top`` (where the flattened netlist has them) and in the
    ``design`` totals.  Returns ``{cell type: copies}``."""
    by_type = {}
    for kind, n in added.values():
        by_type[kind] = by_type.get(kind, 0) + n
    sections = [v for k, v in stat.get("modules", {}).items() if k.lstrip("\\") == top]
    if "design" in stat:
        sections.append(stat["design"])
    for sec in sections:
        cells = sec.setdefault("num_cells_by_type", {})
        for kind, n in by_type.items():
            cells[kind] = cells.get(kind, 0) + n
    return by_type
