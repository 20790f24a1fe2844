"""Fork: every consumer sees every beat once, in order, whatever each one's stalls."""

import numpy as np
import pytest
from amaranth.hdl import unsigned

from hwconv.errors import HwconvError
from hwconv.hw.fork import Fork
from hwconv.hw.stream import beat_signature, encode_frame
from hwconv.hw.testbench import run_streams


@pytest.mark.parametrize("n", [2, 3])
def test_fork_broadcasts(n):
    x = np.random.default_rng(n).integers(0, 256, (4, 5, 2))
    beats = encode_frame(x, 2) * 2
    run = run_streams(Fork(beat_signature(unsigned(8), 2), n), {"i": beats},
                      {f"o{k}": len(beats) for k in range(n)}, valid_prob=0.7,
                      ready_prob=0.4, seed=n)
    for k in range(n):
        assert run.outputs[f"o{k}"] == beats


def test_fork_full_rate():
    beats = encode_frame(np.zeros((4, 4, 1), int), 1)
    run = run_streams(Fork(beat_signature(unsigned(8), 1)), {"i": beats},
                      {"o0": 16, "o1": 16})
    assert run.cycles <= 16 + 2


def test_fork_needs_two_outputs():
    with pytest.raises(HwconvError, match="at least 2"):
        Fork(beat_signature(unsigned(8), 1), 1)
