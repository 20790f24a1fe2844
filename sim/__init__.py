"""cocotb test benches, stream drivers/monitors/scoreboards and the simulator runner.

sim.runner builds and runs a self-contained test bench folder; sim.stream_tb is the
generic cocotb test module it copies there.
"""
