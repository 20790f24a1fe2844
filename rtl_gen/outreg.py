"""ECP5 block-RAM output registers: move the flip-flop after a ``DP16KD`` read into it.

Yosys 0.70 maps every ECP5 block RAM with ``REGMODE_A/B = "NOREG"``
(``share/lattice/brams_map_16kd.v``): the read data leaves the block straight from its
read latch, whose clock-to-output is slow, and a design whose reads feed a fabric
register still caps at ~136 MHz on LFE5U-85F-6 (measured: ``bench/fmax.py`` conv stages,
critical path ``DOB -> rows_rd`` flip-flop).  The block has an output register of its
own (``REGMODE = "OUTREG"``, enabled by ``OCE``); hwconv's memories are written so that
each read is followed by a plain register (the line buffer's ``rows_rd``, the weight
ROM's ``word``), and :func:`absorb` moves those registers into the blocks in the
synthesized JSON netlist, before place and route and before the netlist simulation of
``--verify-netlist`` (which checks the result, :func:`rtl_gen.netlist.dp16kd_model`
covering ``OUTREG``).

A read port's register is absorbed only when the move is exact: every used data bit of
the port drives exactly one ``TRELLIS_FF`` data input and nothing else; those
flip-flops share the block's clock and one clock enable, have no set/reset (``LSR``
unconnected or constant 0, reset and initial value 0, which is what the block's output
register powers up to) and the port's own reset is constant 0.  A 36-bit read (Yosys's
``PDPW16KD`` arrangement: low half on ``DOA``, high half on ``DOB``) moves all 36
registers at once and sets both ports' ``REGMODE`` and ``OCE`` (which of the two
output registers a 36-bit read passes through is not documented for this arrangement,
so both are clocked alike; an idle port A, a ROM's, gets port B's clock).  An inverted clock enable gets a LUT inverter in front of ``OCE``.
"""

from __future__ import annotations

from . import jsonnetlist

__all__ = ["absorb", "absorb_file", "adjust_stat"]


def _is_const0(bits):
    return bits is None or all(b == "0" for b in bits)


def _param(params, key, default):
    """A string parameter (Yosys pads some JSON strings with a trailing space)."""
    v = params.get(key, default)
    return v.strip() if isinstance(v, str) else v


def _param_int(v):
    return int(v, 2) if isinstance(v, str) and set(v) <= {"0", "1"} else int(v)


def _absorb_module(mod):
    """Rewrite one module of a Yosys JSON netlist in place; returns ``(flip-flops
    absorbed, LUT inverters added)``."""
    cells = mod.get("cells", {})
    if not any(c.get("type") == "DP16KD" for c in cells.values()):
        return 0, 0
    loads = {}
    for name, c in cells.items():
        dirs = c.get("port_directions", {})
        for port, bits in c.get("connections", {}).items():
            if dirs.get(port) == "output":
                continue
            for b in bits:
                if isinstance(b, int):
                    loads.setdefault(b, []).append((name, port))
    for port in mod.get("ports", {}).values():
        if port.get("direction") != "input":
            for b in port["bits"]:
                if isinstance(b, int):
                    loads.setdefault(b, []).append((None, None))
    absorbed, removed, added = 0, set(), {}
    top_net = max([b for c in cells.values() for bits in c.get("connections", {}).values()
                   for b in bits if isinstance(b, int)]
                  + [b for n in mod.get("netnames", {}).values() for b in n["bits"]
                     if isinstance(b, int)] + [1])
    for name, c in list(cells.items()):
        if c.get("type") != "DP16KD":
            continue
        p, conn = c["parameters"], c["connections"]
        if any(_param_int(p.get(f"DATA_WIDTH_{x}", "0")) == 36 for x in "AB"):
            groups = ["AB"]         # a 36-bit read: low half on DOA, high half on DOB
        else:
            groups = ["A", "B"]
        for xs in groups:
            idle_a = (xs == "AB" and _is_const0(conn.get("CEA"))
                      and not isinstance((conn.get("CLKA") or ["0"])[0], int))
            if idle_a:      # a ROM: port A unused, its clock tied off; it gets B's clock
                conn = {**conn, "CLKA": conn.get("CLKB")}
            if any(_param(p, f"REGMODE_{x}", "NOREG") != "NOREG"
                   or not _is_const0(conn.get(f"RST{x}"))
                   or _param(p, f"CLK{x}MUX", f"CLK{x}") != f"CLK{x}"
                   or conn.get(f"CLK{x}") != conn.get(f"CLK{xs[0]}") for x in xs):
                continue
            pins = [f"DO{x}{i}" for x in xs for i in range(18)]
            used = [(pin, conn[pin][0]) for pin in pins
                    if pin in conn and isinstance(conn[pin][0], int) and conn[pin][0] in loads]
            if not used:
                continue
            x = xs[0]
            ffs, ok = [], True
            for pin, bit in used:
                ld = loads[bit]
                if len(ld) != 1 or ld[0][0] is None or ld[0][0] in removed:
                    ok = False
                    break
                ff = cells[ld[0][0]]
                fp, fc = ff.get("parameters", {}), ff.get("connections", {})
                if (ff.get("type") != "TRELLIS_FF" or ld[0][1] != "DI"
                        or _param(fp, "CLKMUX", "CLK") != "CLK"
                        or fc.get("CLK") != conn.get(f"CLK{x}")
                        or _param(fp, "REGSET", "RESET") != "RESET"
                        or not _is_const0(fc.get("LSR"))
                        or "1" in str(ff.get("attributes", {}).get("init", "0"))
                        or fc.get("M") not in (None, ["0"], ["x"])):
                    ok = False
                    break
                ffs.append((pin, ld[0][0]))
            if not ok:
                continue
            enables = {(_param(cells[f]["parameters"], "CEMUX", "1"),
                        tuple(cells[f]["connections"].get("CE", ["1"]))) for _, f in ffs}
            if len(enables) != 1:
                continue
            cemux, ce = enables.pop()
            if cemux in ("1", "0"):
                if cemux == "0":
                    continue
                oce = ["1"]
            elif cemux == "CE":
                oce = list(ce)
            elif cemux == "INV":
                inv = f"{name}_OCE{xs}_INV"
                net = top_net + 1 + len(added)
                added[inv] = {
                    "hide_name": 0, "type": "LUT4", "parameters": {"INIT": "0000000000000001"},
                    "attributes": {}, "port_directions": {"A": "input", "B": "input",
                                                          "C": "input", "D": "input",
                                                          "Z": "output"},
                    "connections": {"A": list(ce), "B": ["0"], "C": ["0"], "D": ["0"],
                                    "Z": [net]}}
                mod.setdefault("netnames", {})[f"{inv}_Z"] = {
                    "hide_name": 0, "bits": [net], "attributes": {}}
                oce = [net]
            else:
                continue
            for pin, f in ffs:
                conn[pin] = cells[f]["connections"]["Q"]
                removed.add(f)
            c["connections"] = conn
            for x in xs:
                conn[f"OCE{x}"] = oce
                p[f"REGMODE_{x}"] = "OUTREG"
            absorbed += len(ffs)
    for f in removed:
        del cells[f]
    cells.update(added)
    return absorbed, len(added)


def absorb(netlist):
    """Absorb block-RAM read registers in a Yosys JSON netlist (a dict, changed in
    place); returns ``{module: (flip-flops absorbed, LUT inverters added)}`` for the
    modules that changed."""
    out = {}
    for name, mod in netlist.get("modules", {}).items():
        n = _absorb_module(mod)
        if n[0]:
            out[name] = n
    return out


def adjust_stat(stat, moved):
    """Correct a Yosys ``stat -json`` dict (in place) for :func:`absorb`'s ``moved``:
    per module and in the ``design`` totals, fewer ``TRELLIS_FF`` and more ``LUT4``."""
    sections = {k.lstrip("\\"): v for k, v in stat.get("modules", {}).items()}
    total_ff = total_lut = 0
    for name, (ffs, luts) in moved.items():
        total_ff, total_lut = total_ff + ffs, total_lut + luts
        sec = sections.get(name.lstrip("\\"))
        if sec is not None:
            _shift(sec, ffs, luts)
    if "design" in stat:
        _shift(stat["design"], total_ff, total_lut)
    return stat


def _shift(section, ffs, luts):
    cells = section.setdefault("num_cells_by_type", {})
    cells["TRELLIS_FF"] = cells.get("TRELLIS_FF", 0) - ffs
    if luts:
        cells["LUT4"] = cells.get("LUT4", 0) + luts


def absorb_file(path):
    """:func:`absorb` on a JSON netlist file, rewritten only if something changed."""
    return jsonnetlist.rewrite(path, absorb)
