"""Verilog emission, build folders (file list, manifest, port README, testbench),
and synthesis/place-and-route reports.  Imports :mod:`hwconv`, never the reverse."""
