"""Build folders appear whole or not at all; Verilog emission is deterministic."""

import pytest
from amaranth.hdl import signed

from hwconv.hw.lanes import LaneConverter
from rtl_gen.emit import staged_dir, verilog_text, write_text


def test_staged_dir_replaces_whole_on_success(tmp_path):
    out = tmp_path / "build"
    out.mkdir()
    (out / "stale.v").write_text("old")
    with staged_dir(out) as d:
        write_text(d / "top.v", "new")
    assert sorted(p.name for p in out.iterdir()) == ["top.v"]
    assert [p.name for p in tmp_path.iterdir()] == ["build"]


def test_staged_dir_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "build"
    with pytest.raises(RuntimeError):
        with staged_dir(out) as d:
            write_text(d / "half.v", "partial")
            raise RuntimeError("synthesis exploded")
    assert list(tmp_path.iterdir()) == []


def test_verilog_is_byte_identical_across_runs():
    a = verilog_text(LaneConverter(signed(8), 4, 1, 4), "conv_top")
    b = verilog_text(LaneConverter(signed(8), 4, 1, 4), "conv_top")
    assert a == b and "module conv_top" in a
