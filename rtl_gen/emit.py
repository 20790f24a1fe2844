"""Write Verilog and whole build folders, never leaving a half-written one behind."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path

from amaranth.back import verilog

__all__ = ["verilog_text", "staged_dir", "write_text", "write_json"]


def verilog_text(top, name):
    """Verilog for ``top`` with module name ``name``; deterministic (no source paths)."""
    return verilog.convert(top, name=name, emit_src=False)


@contextlib.contextmanager
def staged_dir(out_dir):
    """Yield a fresh temporary folder beside ``out_dir``; on success it replaces
    ``out_dir`` whole, on any error it is removed and ``out_dir`` is left untouched."""
    out = Path(out_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def write_text(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_json(path, obj):
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
