"""rtl_gen.fanout on hand-made Yosys JSON modules: every net ends at most ``max_fanout``
cell inputs, each copy is its driver's twin (type, parameters, inputs), a LUT's copies
split the flip-flop feeding them in turn, and clock nets, nets at top-level ports and
drivers it cannot copy are left alone.  (Simulation of a replicated netlist against its
RTL: tests/test_netlist.py::test_fanout_replication_is_exact.)"""

import copy

import pytest

from rtl_gen import fanout


def _ff(d, q, ce=None, clk=2):
    conns = {"CLK": [clk], "DI": [d], "Q": [q]}
    if ce is not None:
        conns["CE"] = [ce]
    return {"type": "TRELLIS_FF", "parameters": {"REGSET": "RESET", "CEMUX": "CE"},
            "port_directions": {"CLK": "input", "DI": "input", "CE": "input", "Q": "output"},
            "connections": conns}


def _lut(inputs, z, init="1000100010001000"):
    conns = dict(zip("ABCD", ([b] for b in inputs)))
    conns["Z"] = [z]
    return {"type": "LUT4", "parameters": {"INIT": init},
            "port_directions": {**{p: "input" for p in "ABCD"}, "Z": "output"},
            "connections": conns}


def _module(loads_on_lut=70, loads_on_ff=100):
    """Net 10 (a flip-flop) drives ``loads_on_ff`` enables; net 20, an AND LUT of nets
    10 and 11, drives ``loads_on_lut`` enables; bit 2 is the clock, 3 an input port."""
    cells = {"en_ff": _ff(3, 10), "go_ff": _ff(3, 11), "and": _lut([10, 11], 20)}
    nxt = 100
    for k in range(loads_on_ff):
        cells[f"x{k}"] = _ff(3, nxt, ce=10)
        nxt += 1
    for k in range(loads_on_lut):
        cells[f"y{k}"] = _ff(3, nxt, ce=20)
        nxt += 1
    return {"ports": {"clk": {"direction": "input", "bits": [2]},
                      "in": {"direction": "input", "bits": [3]}},
            "cells": cells,
            "netnames": {"en": {"hide_name": 0, "bits": [10]},
                         "and_z": {"hide_name": 0, "bits": [20]}}}


def _loads(mod):
    out = {}
    for name, c in mod["cells"].items():
        for port, bits in c["connections"].items():
            if c["port_directions"][port] == "input":
                for b in bits:
                    out.setdefault(b, []).append((name, port))
    return out


def _driver(mod, bit):
    return next((n for n, c in mod["cells"].items()
                 for p, bits in c["connections"].items()
                 if c["port_directions"][p] == "output" and bit in bits), None)


def _origin(mod, bit):
    """The original cell driving ``bit`` (a copy stands for its original), or the bit
    itself when no cell drives it (a port)."""
    drv = _driver(mod, bit)
    if drv is None:
        return bit
    return mod["cells"][drv].get("attributes", {}).get("hwconv_replica_of", drv)


@pytest.mark.parametrize("max_fanout", [32, 16, 5])
def test_every_net_ends_at_most_max_fanout_inputs(max_fanout):
    mod = _module()
    before = copy.deepcopy(mod)
    added = fanout.replicate(mod, max_fanout)
    loads = _loads(mod)
    over = {b: len(ls) for b, ls in loads.items()
            if len(ls) > max_fanout and b not in (2, 3)}
    assert not over, over
    # every original load still sees the same logical signal: its new driver is the
    # original driver or a copy of it
    for name, c in before["cells"].items():
        if name.startswith(("x", "y")):
            want = "en_ff" if name.startswith("x") else "and"
            assert _origin(mod, mod["cells"][name]["connections"]["CE"][0]) == want
    # copies are their driver's twins apart from the output net: same type, parameters
    # and input signals (an input may come from a copy of the original's driver)
    for name, c in mod["cells"].items():
        src = c.get("attributes", {}).get("hwconv_replica_of")
        if src is None:
            continue
        orig = mod["cells"][src]
        out = fanout.DRIVERS[orig["type"]]
        assert c["type"] == orig["type"] and c["parameters"] == orig["parameters"]

        def inputs(cell):
            return {p: [_origin(mod, b) for b in bits]
                    for p, bits in cell["connections"].items() if p != out}
        assert inputs(c) == inputs(orig)
    kinds = {net: kind for net, (kind, _) in added.items()}
    assert kinds["and_z"] == "LUT4" and kinds["en"] == "TRELLIS_FF"
    assert added["and_z"][1] == -(-70 // max_fanout) - 1


def test_lut_copies_split_the_flip_flop_feeding_them():
    """70 loads in groups of 5 make 14 LUT copies: the flip-flop on the LUT's input
    (net 11, otherwise one load) now drives 14 LUT inputs and is split too."""
    mod = _module(loads_on_ff=0)
    added = fanout.replicate(mod, 5)
    assert added["and_z"] == ("LUT4", 13)
    go = [n for n, c in mod["cells"].items()
          if n == "go_ff" or c.get("attributes", {}).get("hwconv_replica_of") == "go_ff"]
    assert len(go) == 3                 # 14 LUT inputs in groups of at most 5


def test_clock_and_port_nets_and_other_drivers_are_left_alone():
    mod = _module(loads_on_lut=0, loads_on_ff=0)
    for k in range(50):                 # a LUT-driven clock, a port-driven enable
        mod["cells"][f"c{k}"] = _ff(3, 500 + k, ce=3, clk=20)
    mod["cells"]["ccu"] = {"type": "CCU2C", "parameters": {},
                           "port_directions": {"S0": "output"},
                           "connections": {"S0": [30]}}
    for k in range(50):
        mod["cells"][f"d{k}"] = _ff(3, 600 + k, ce=30)
    mod["ports"]["o"] = {"direction": "output", "bits": [10]}
    for k in range(50):
        mod["cells"][f"e{k}"] = _ff(3, 700 + k, ce=10)
    assert fanout.replicate(mod, 8) == {}


def test_max_fanout_below_two_is_refused():
    with pytest.raises(ValueError, match="max_fanout"):
        fanout.replicate(_module(), 1)


def test_adjust_stat_counts_the_copies():
    stat = {"modules": {"\\top": {"num_cells_by_type": {"LUT4": 10, "TRELLIS_FF": 5}}},
            "design": {"num_cells_by_type": {"LUT4": 10, "TRELLIS_FF": 5}}}
    by_type = fanout.adjust_stat(stat, "top", {"a": ("LUT4", 3), "b": ("TRELLIS_FF", 2),
                                               "c": ("LUT4", 1)})
    assert by_type == {"LUT4": 4, "TRELLIS_FF": 2}
    for sec in (stat["modules"]["\\top"], stat["design"]):
        assert sec["num_cells_by_type"] == {"LUT4": 14, "TRELLIS_FF": 7}
