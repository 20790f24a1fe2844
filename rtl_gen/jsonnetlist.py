"""Edits of a Yosys JSON netlist file in place (the ECP5 rewrites before nextpnr:
:mod:`rtl_gen.outreg`, :mod:`rtl_gen.fanout`, :mod:`rtl_gen.floorplan`)."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["rewrite"]


def rewrite(path, edit, top=None):
    """Apply ``edit`` to the netlist in file ``path`` (to its module ``top`` when one
    is named) and write the file back, atomically, when ``edit`` returns something true.

    Returns
    -------
    What ``edit`` returned.

    Raises
    ------
    ValueError
        When the netlist has no module ``top``.
    """
    path = Path(path)
    netlist = json.loads(path.read_text())
    target = netlist
    if top is not None:
        target = netlist["modules"].get(top)
        if target is None:
            raise ValueError(f"{path}: no module {top!r}")
    out = edit(target)
    if out:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(netlist))
        tmp.replace(path)
    return out
