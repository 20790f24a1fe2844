"""hwconv.hw.dsp: one registered multiply on every back end, limbs for wide operands.

The vendor cells run as their behavioural models here (the Amaranth simulator cannot run
instances); tests/test_cocotb_stages.py runs the real MULT18X18D / SB_MAC16 / DSP48E1
instances against the cells' Verilog models.
"""

import random

import pytest
from amaranth import Const, Module, Signal
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from hwconv import cost
from hwconv.errors import HwconvError
from hwconv.hw.dsp import BACKENDS, backend, multiply, multiply_latency, primitive_models

SHAPES = [(signed(8), signed(8)), (unsigned(8), signed(8)), (signed(22), unsigned(26)),
          (signed(35), unsigned(16)), (signed(17), signed(18)), (signed(31), unsigned(30))]


def _extremes(shape):
    lo = -(1 << (shape.width - 1)) if shape.signed else 0
    hi = (1 << (shape.width - 1)) - 1 if shape.signed else (1 << shape.width) - 1
    return lo, hi


@pytest.mark.parametrize("name", list(BACKENDS))
@pytest.mark.parametrize("a_shape,b_shape", SHAPES)
def test_product_after_latency_with_random_enable(name, a_shape, b_shape):
    """The product of the operands of the k-th enabled edge appears after exactly
    ``multiply_latency`` enabled edges; a low enable freezes the pipeline."""
    m = Module()
    a, b, en = Signal(a_shape), Signal(b_shape), Signal()
    with primitive_models():
        p = multiply(m, a, b, en, name, "t")
        sim = Simulator(m)
    lat = multiply_latency(name, a_shape, b_shape)
    checked = []

    async def bench(ctx):
        rng = random.Random(7)
        (alo, ahi), (blo, bhi) = _extremes(a_shape), _extremes(b_shape)
        sent = []
        for _ in range(300):
            av = rng.choice([alo, ahi, rng.randint(alo, ahi)])
            bv = rng.choice([blo, bhi, rng.randint(blo, bhi)])
            e = rng.random() < 0.7
            ctx.set(a, av)
            ctx.set(b, bv)
            ctx.set(en, e)
            await ctx.tick()
            if e:
                sent.append(av * bv)
                if len(sent) >= lat:
                    assert ctx.get(p) == sent[-lat]
                    checked.append(1)

    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) > 150


@pytest.mark.parametrize("name", ["ecp5", "ice40", "xilinx"])
def test_cells_and_latency_follow_the_limbs(name):
    ports = cost.DSP_PORTS[name]
    assert cost.dsp_cells(name, ports[0], ports[1]) == 1
    assert cost.dsp_cells(name, ports[0] + 1, ports[1]) == 2
    assert cost.dsp_cells(name, 2 * ports[0], 2 * ports[1]) == 9     # 3 x 3 limbs
    assert multiply_latency(name, signed(ports[0]), signed(ports[1])) == cost.MUL_LATENCY[name]
    assert multiply_latency(name, signed(ports[0] + 1), signed(ports[1] + 1)) == \
        cost.MUL_LATENCY[name] + 2
    assert cost.dsp_cells("generic", 40, 40) == 0
    assert multiply_latency("generic", signed(40), signed(40)) == 1


@pytest.mark.parametrize("value,cells", [(0, 0), (1, 0), (-1, 0), (64, 0), (-128, 0),
                                         (3, 1), (-100, 1)])
def test_wiring_constants_take_no_cell(value, cells):
    """0 and +-2**k are wiring, delayed like a product; other constants take a cell; the
    cost model agrees."""
    m = Module()
    a, en = Signal(signed(8)), Signal()
    p = multiply(m, a, Const(value, signed(9)), en, "ecp5", "t")
    assert len(m._named_submodules) == cells       # the MULT18X18D instances
    assert cost.multiply("ecp5", 8, 9, const=value).cells == cells
    if value == 0:
        assert isinstance(p, Const) and p.value == 0


def test_unknown_backend():
    with pytest.raises(HwconvError, match="unknown multiplier back end 'dsp99'"):
        backend("dsp99")
    with pytest.raises(HwconvError, match="unknown multiplier back end"):
        cost.mul_latency("dsp99")
