"""Multiplier back ends: one registered multiply, built four ways.

Every multiply in a stage (MAC products, requantization) goes through :func:`multiply`,
so one choice per design says how products are built:

* ``generic``: behavioural ``a * b`` into one product register — any tool maps it (to
  LUTs, or to a DSP cell without its internal registers).
* ``ecp5``: ``MULT18X18D`` with its input, pipeline and output registers, and a fabric
  register the product lands in (the cells of a wide MAC array spread along a DSP row
  of the die, so the route to the adder tree gets its own cycle).  Yosys infers the
  primitive *without* registers, which caps an ECP5 datapath near 140 MHz; with them
  the limit moves to the fabric (DESIGN.md, "Measured facts").
* ``ice40``: ``SB_MAC16`` with input and 16x16 pipeline registers (plus one fabric
  register), configured explicitly: ``synth_ice40 -dsp`` inference once produced a wrong
  netlist for exactly this registered multiply.
* ``xilinx``: ``DSP48E1`` with ``AREG = BREG = MREG = PREG = 1``.

The vendor back ends take :func:`hwconv.cost.mul_latency` clock-enabled edges from
operands to product (one on ``generic``).  Operands wider than the
primitive's ports are split into limbs (low limbs unsigned, the top limb signed); the
partial products meet in a registered adder tree (:func:`multiply_latency`).

The Amaranth simulator cannot run vendor primitives: inside :func:`primitive_models`
(entered by :func:`hwconv.hw.testbench.run_streams`) each primitive elaborates to the
behavioural registers it is configured as, so the limb logic, latency and clock enables
are simulated there; cocotb runs the real instances against Yosys's cell models.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass

from amaranth import ClockSignal, Const, Instance, Signal
from amaranth.hdl import Shape, signed

from .. import cost
from ..errors import HwconvError

__all__ = ["Backend", "BACKENDS", "backend", "multiply", "multiply_latency",
           "primitive_models", "delay", "position_flags"]


@dataclass(frozen=True)
class Backend:
    """How one multiply becomes hardware.

    Attributes
    ----------
    name : str
    primitive : str or None
        Vendor cell, ``None`` for the behavioural back end.
    a_bits, b_bits : int or None
        Widest signed operands one primitive takes (``None``: any width).
    """

    name: str
    primitive: str | None
    a_bits: int | None
    b_bits: int | None


BACKENDS = {
    "generic": Backend("generic", None, None, None),
    "ecp5": Backend("ecp5", "MULT18X18D", *cost.DSP_PORTS["ecp5"]),
    "ice40": Backend("ice40", "SB_MAC16", *cost.DSP_PORTS["ice40"]),
    "xilinx": Backend("xilinx", "DSP48E1", *cost.DSP_PORTS["xilinx"]),
}


def backend(name):
    """The :class:`Backend` called ``name`` (one-line error naming the choices)."""
    if isinstance(name, Backend):
        return name
    try:
        return BACKENDS[name]
    except (KeyError, TypeError):
        raise HwconvError(f"unknown multiplier back end {name!r}; choose one of "
                          f"{', '.join(BACKENDS)}") from None


_MODELS = contextvars.ContextVar("hwconv_primitive_models", default=False)


@contextlib.contextmanager
def primitive_models():
    """Elaborate vendor primitives as behavioural registers (for the Amaranth simulator)."""
    token = _MODELS.set(True)
    try:
        yield
    finally:
        _MODELS.reset(token)


def _signed_width(shape):
    """Bits of a signed operand that holds every value of ``shape``."""
    shape = Shape.cast(shape)
    return shape.width + (0 if shape.signed else 1)


def _const_value(v):
    """The integer value of a constant operand, else ``None``."""
    return v.value if isinstance(v, Const) else None


def multiply_latency(be, a_shape, b_shape):
    """Clock-enabled edges from operands to product for :func:`multiply`."""
    be = backend(be)
    if be.primitive is None:
        return cost.mul_latency(be.name)
    n = cost.dsp_cells(be.name, _signed_width(a_shape), _signed_width(b_shape))
    return cost.mul_latency(be.name) + (n - 1).bit_length()


def multiply(m, a, b, en, be, name):
    """Signed product ``a * b``, valid :func:`multiply_latency` enabled edges later.

    Parameters
    ----------
    m : Module
    a, b : Value
        Operands (signed or unsigned shapes).
    en : Value
        Clock enable of every register on the way (the stage's advance signal).
    be : Backend or str
    name : str
        Prefix of the signal names.
    """
    be = backend(be)
    a_bits, b_bits = _signed_width(a.shape()), _signed_width(b.shape())
    out_shape = signed(a_bits + b_bits)
    c = _const_value(b)
    if c is not None and cost.const_is_shift(c):     # wiring, delayed like a product
        if c == 0:
            return Const(0, out_shape)
        k = abs(c).bit_length() - 1
        shifted = Signal(out_shape, name=f"{name}_shl")
        m.d.comb += shifted.eq(a << k if c > 0 else -(a << k))
        return delay(m, en, shifted, multiply_latency(be, a.shape(), b.shape()), name)
    a_s = Signal(signed(a_bits), name=f"{name}_ain")
    b_s = Signal(signed(b_bits), name=f"{name}_bin")
    m.d.comb += [a_s.eq(a), b_s.eq(b)]
    if be.primitive is None:
        out = Signal(out_shape, name=f"{name}_p")
        with m.If(en):
            m.d.sync += out.eq(a_s * b_s)
        return out
    parts = []
    for ia, (oa, wa, sa) in enumerate(cost.operand_limbs(a_bits, be.a_bits)):
        for ib, (ob, wb, sb) in enumerate(cost.operand_limbs(b_bits, be.b_bits)):
            la = _limb(a_s, oa, wa, sa)
            lb = _limb(b_s, ob, wb, sb)
            p = _primitive(m, la, lb, en, be, f"{name}_p{ia}{ib}")
            parts.append((p, oa + ob))
    level = 0
    while len(parts) > 1:
        level += 1
        nxt = []
        for k in range(0, len(parts) - 1, 2):
            (p, op), (q, oq) = parts[k], parts[k + 1]
            base = min(op, oq)
            r = Signal(out_shape, name=f"{name}_s{level}_{k // 2}")
            with m.If(en):
                m.d.sync += r.eq((p << (op - base)) + (q << (oq - base)))
            nxt.append((r, base))
        if len(parts) % 2:
            p, op = parts[-1]
            r = Signal(out_shape, name=f"{name}_s{level}_{len(parts) // 2}")
            with m.If(en):
                m.d.sync += r.eq(p)
            nxt.append((r, op))
        parts = nxt
    # the limb of offset 0 is in every sum, so the result's offset is 0; sums wrap
    # modulo 2**width, exact because the full product fits the width
    return parts[0][0]


def _limb(value, offset, width, is_signed):
    """Bits ``[offset, offset + width)`` of the signed ``value``."""
    if offset == 0 and width == len(value):
        return value
    part = value[offset:offset + width]
    return part.as_signed() if is_signed else part


def _registered(m, a, b, en, out_shape, stages, name):
    """A DSP cell's behavioural model: input registers, the product register, and
    ``stages - 2`` output registers."""
    ar = Signal(a.shape(), name=f"{name}_a")
    br = Signal(b.shape(), name=f"{name}_b")
    pr = Signal(out_shape, name=f"{name}_m")
    with m.If(en):
        m.d.sync += [ar.eq(a), br.eq(b), pr.eq(ar * br)]
    return delay(m, en, pr, stages - 2, f"{name}_p")


def _primitive(m, a, b, en, be, name):
    """One vendor multiplier (or its behavioural registers inside primitive_models),
    then the fabric register its product lands in on
    :data:`hwconv.cost.MUL_FABRIC_REGISTER` back ends: :func:`hwconv.cost.mul_latency`
    edges in all."""
    a_bits, b_bits = _signed_width(a.shape()), _signed_width(b.shape())
    out_shape = signed(a_bits + b_bits)
    fabric = be.name in cost.MUL_FABRIC_REGISTER
    if _MODELS.get():
        p = _registered(m, a, b, en, out_shape, cost.mul_latency(be.name) - fabric, name)
    else:
        pa = Signal(signed(be.a_bits), name=f"{name}_A")
        pb = Signal(signed(be.b_bits), name=f"{name}_B")
        m.d.comb += [pa.eq(a), pb.eq(b)]
        build = {"ecp5": _mult18x18d, "ice40": _sb_mac16, "xilinx": _dsp48e1}[be.name]
        p = build(m, pa, pb, en, name)[:out_shape.width].as_signed()
    if fabric:
        p = delay(m, en, p, 1, f"{name}_land")
    return p


def _bits(prefix, value, n):
    return {f"{prefix}{i}": value[i] for i in range(n)}


def _mult18x18d(m, a, b, en, name):
    p = Signal(signed(36), name=f"{name}_P")
    regs = {}
    for r in ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT"):
        regs.update({f"p_REG_{r}_CLK": "CLK0", f"p_REG_{r}_CE": "CE0",
                     f"p_REG_{r}_RST": "RST0"})
    # Only the pins the multiply needs are connected (the pre-adder input C and the
    # unused clocks, enables and resets stay open): constant nets into every DSP tile
    # congest nextpnr's router.
    zero = Const(0, 1)
    ports = {f"i_{k}": v for k, v in {**_bits("A", a, 18), **_bits("B", b, 18)}.items()}
    ports.update({f"o_P{i}": p[i] for i in range(36)})
    m.submodules[name] = Instance(
        "MULT18X18D", **regs,
        p_REG_INPUTC_CLK="NONE", p_CLK0_DIV="ENABLED", p_CLK1_DIV="ENABLED",
        p_CLK2_DIV="ENABLED", p_CLK3_DIV="ENABLED", p_HIGHSPEED_CLK="NONE",
        p_GSR="DISABLED", p_CAS_MATCH_REG="FALSE", p_SOURCEB_MODE="B_SHIFT",
        p_MULT_BYPASS="DISABLED", p_RESETMODE="SYNC",
        i_SIGNEDA=Const(1, 1), i_SIGNEDB=Const(1, 1), i_SOURCEA=zero, i_SOURCEB=zero,
        i_CLK0=ClockSignal("sync"), i_CE0=en, **ports)
    return p


def _sb_mac16(m, a, b, en, name):
    o = Signal(signed(32), name=f"{name}_O")
    m.submodules[name] = Instance(
        "SB_MAC16",
        p_NEG_TRIGGER=Const(0, 1), p_A_REG=Const(1, 1), p_B_REG=Const(1, 1),
        p_C_REG=Const(0, 1), p_D_REG=Const(0, 1),
        p_TOP_8x8_MULT_REG=Const(0, 1), p_BOT_8x8_MULT_REG=Const(0, 1),
        p_PIPELINE_16x16_MULT_REG1=Const(0, 1), p_PIPELINE_16x16_MULT_REG2=Const(1, 1),
        p_TOPOUTPUT_SELECT=Const(3, 2), p_TOPADDSUB_LOWERINPUT=Const(0, 2),
        p_TOPADDSUB_UPPERINPUT=Const(0, 1), p_TOPADDSUB_CARRYSELECT=Const(0, 2),
        p_BOTOUTPUT_SELECT=Const(3, 2), p_BOTADDSUB_LOWERINPUT=Const(0, 2),
        p_BOTADDSUB_UPPERINPUT=Const(0, 1), p_BOTADDSUB_CARRYSELECT=Const(0, 2),
        p_MODE_8x8=Const(0, 1), p_A_SIGNED=Const(1, 1), p_B_SIGNED=Const(1, 1),
        i_CLK=ClockSignal("sync"), i_CE=en, i_A=a, i_B=b, i_C=Const(0, 16),
        i_D=Const(0, 16), i_AHOLD=0, i_BHOLD=0, i_CHOLD=0, i_DHOLD=0,
        i_IRSTTOP=0, i_IRSTBOT=0, i_ORSTTOP=0, i_ORSTBOT=0, i_OLOADTOP=0, i_OLOADBOT=0,
        i_ADDSUBTOP=0, i_ADDSUBBOT=0, i_OHOLDTOP=0, i_OHOLDBOT=0, i_CI=0, i_ACCUMCI=0,
        i_SIGNEXTIN=0, o_O=o)
    # SB_MAC16's output register belongs to its accumulator, which would need the adder
    # configured to pass the product: the third register is the fabric one _primitive
    # adds (hwconv.cost.MUL_FABRIC_REGISTER).
    return o


def _dsp48e1(m, a, b, en, name):
    p = Signal(signed(48), name=f"{name}_P")
    a30 = Signal(signed(30), name=f"{name}_A30")
    m.d.comb += a30.eq(a)
    zero = Const(0, 1)
    m.submodules[name] = Instance(
        "DSP48E1",
        p_AREG=1, p_BREG=1, p_ACASCREG=1, p_BCASCREG=1, p_MREG=1, p_PREG=1,
        p_CREG=0, p_DREG=0, p_ADREG=0, p_INMODEREG=0, p_OPMODEREG=0, p_ALUMODEREG=0,
        p_CARRYINREG=0, p_CARRYINSELREG=0, p_A_INPUT="DIRECT", p_B_INPUT="DIRECT",
        p_USE_DPORT="FALSE", p_USE_MULT="MULTIPLY", p_USE_SIMD="ONE48",
        p_USE_PATTERN_DETECT="NO_PATDET",
        i_CLK=ClockSignal("sync"), i_A=a30, i_B=b,
        i_C=Const(0, 48), i_D=Const(0, 25), i_ACIN=Const(0, 30), i_BCIN=Const(0, 18),
        i_PCIN=Const(0, 48), i_CARRYCASCIN=zero, i_MULTSIGNIN=zero,
        i_OPMODE=Const(0b0000101, 7), i_ALUMODE=Const(0, 4), i_INMODE=Const(0, 5),
        i_CARRYIN=zero, i_CARRYINSEL=Const(0, 3),
        i_CEA1=zero, i_CEA2=en, i_CEB1=zero, i_CEB2=en, i_CEM=en, i_CEP=en,
        i_CEAD=zero, i_CEALUMODE=zero, i_CEC=zero, i_CECARRYIN=zero, i_CECTRL=zero,
        i_CED=zero, i_CEINMODE=zero,
        i_RSTA=zero, i_RSTB=zero, i_RSTC=zero, i_RSTD=zero, i_RSTM=zero, i_RSTP=zero,
        i_RSTALLCARRYIN=zero, i_RSTALUMODE=zero, i_RSTCTRL=zero, i_RSTINMODE=zero,
        o_P=p)
    return p


def delay(m, en, value, stages, name, *, reset_less=False):
    """``value`` delayed by ``stages`` clock-enabled registers (``reset_less``: data
    registers the domain's reset leaves alone, e.g. after a block-RAM read, so the
    first can become the block's output register, see :mod:`rtl_gen.outreg`)."""
    for k in range(stages):
        reg = Signal.like(value, name=f"{name}_d{k}", reset_less=reset_less)
        with m.If(en):
            m.d.sync += reg.eq(value)
        value = reg
    return value


def position_flags(m, ahead, fn, now, nxt, names):
    """Flags ``fn(*counters)`` of a unit's position (its step counters, which start at
    0), for its issue logic.

    ``ahead`` (fast clocks): flip-flops loaded with ``fn(*nxt)``, the flags of the
    counters' next state, so the issue logic reading them (a ``ready``, a credit
    request) is one LUT of flip-flops.  Otherwise ``fn(*now)`` as logic (fewer cells).
    Returns ``(flags, next_flags)``: one signal per name of ``names``, and ``fn(*nxt)``
    (the values the flags take at the next edge, for a register of the unit's own that
    is loaded from them, see :meth:`hwconv.hw.fifo.PipelineEnd.ready`).
    """
    init = fn(*[0] * len(now))
    flags = [Signal(name=n, init=int(bool(v))) for n, v in zip(names, init)]
    next_flags = fn(*nxt)
    if ahead:
        m.d.sync += [f.eq(v) for f, v in zip(flags, next_flags)]
    else:
        m.d.comb += [f.eq(v) for f, v in zip(flags, fn(*now))]
    return flags, next_flags
