"""Network-to-pipeline mapper: integer network -> hardware stages with folding.

:func:`group_stages` cuts a :class:`~hwconv.quant.QNetwork` into stages, one per layer,
fusing what one stage implements:

* ``conv``: a QConv2D (plus a clamping activation folded into its requantizer clamp);
* ``dwpw``: a depthwise QConv2D (+ activation) feeding a pointwise 1x1 QConv2D
  (+ activation), one stage with no intermediate feature map;
* ``pool_activate``: a MaxPool and/or a QActivation (pool first, after the
  pool-before-activate transform);
* ``dense``: Flatten + QDense (the stage permutes its weights to the streamed order);
* ``gap``: QGlobalAvgPool;  ``add``: QAdd with a skip FIFO.

:func:`choose_folding` then picks each stage's folding: it raises the parallelism of the
slowest stage while the multiplier budget allows and the target is not met, then
balances every other stage down to the cheapest folding that keeps up with the
bottleneck (the slowest stage sets the frame rate; multipliers elsewhere are wasted).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import cost
from .errors import FitError, HwconvError, UnsupportedError
from .ir import Flatten, MaxPool
from .quant import QActivation, QAdd, QAvgPool, QConv2D, QDense, QGlobalAvgPool

__all__ = ["StageSpec", "Plan", "group_stages", "choose_folding", "plan"]


@dataclass
class StageSpec:
    """One hardware stage: which IR nodes it implements and how it is folded.

    Attributes
    ----------
    name : str
        Stage name (its first node's name).
    kind : str
        ``conv``, ``dwpw``, ``pool_activate``, ``dense``, ``gap`` or ``add``.
    nodes : tuple of str
        IR nodes implemented, in order.
    ops : dict
        Role -> integer layer (``conv``, ``act``, ``dw``, ``dw_act``, ``pw``, ``pw_act``,
        ``pool``, ``dense``, ``gap``, ``add``).
    inputs : tuple of str
        Tensors read (outputs of earlier stages, or the network input).
    output : str
        Tensor produced (the last node's name).
    in_shape, out_shape : tuple
    folding : dict
        Knobs (``pe``, ``simd``, ``lanes`` ... by kind), set by :func:`choose_folding`.
    cost : hwconv.cost.StageCost or None
    in_fifo : int
        Depth (beats of the producer's lanes) of the elastic FIFO in front of the stage,
        set by :func:`size_fifos`.
    """

    name: str
    kind: str
    nodes: tuple
    ops: dict
    inputs: tuple
    output: str
    in_shape: tuple
    out_shape: tuple
    folding: dict = field(default_factory=dict)
    cost: object = None
    in_fifo: int = 0

    @property
    def in_lanes(self):
        return self.folding[_LANES[self.kind][0]]

    @property
    def out_lanes(self):
        return self.folding[_LANES[self.kind][1]]


#: stage kind -> (folding knob giving the input lanes, knob giving the output lanes)
_LANES = {"conv": ("simd", "pe"), "dense": ("simd", "pe"), "dwpw": ("dw_simd", "pw_pe"),
          "pool_activate": ("lanes", "lanes"), "gap": ("lanes", "lanes"),
          "add": ("lanes", "lanes")}


def divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def stage_cost(spec, folding, backend="generic"):
    """:class:`hwconv.cost.StageCost` of ``spec`` at ``folding`` (the stage's kwargs), its
    multiplies built by ``backend`` (pipeline depths and requantizer limbs depend on
    it)."""
    ops, shape = spec.ops, spec.in_shape
    if spec.kind == "conv":
        return cost.conv2d(ops["conv"], shape, backend=backend, **folding)
    if spec.kind == "dwpw":
        return cost.depthwise_pointwise(ops["dw"], ops["dw_act"], ops["pw"], ops["pw_act"],
                                        shape, backend=backend, **folding)
    if spec.kind == "pool_activate":
        return cost.pool_activate(ops["pool"], ops["act"], shape, dtype=ops["dtype"],
                                  **folding)
    if spec.kind == "dense":
        return cost.dense(ops["dense"], shape, backend=backend, **folding)
    if spec.kind == "gap":
        return cost.global_avg_pool(ops["gap"], shape, backend=backend, **folding)
    if spec.kind == "add":
        return cost.add(ops["add"], shape, **folding)
    raise ValueError(f"unknown stage kind {spec.kind!r}")


def _kfold(k, name="kfold"):
    """The kernel-folding knob, present in a folding only when it folds."""
    return {name: k} if k > 1 else {}


def knob_space(spec):
    """Every folding of ``spec`` worth considering (kwargs of the stage).

    Kernel folding (``kfold``: ``K*K / kfold`` taps per cycle) goes below the ``K*K``
    multipliers of one channel per cycle, so it is swept only where the channels are
    folded to one (``simd == 1``; ``dw_simd == 1``); the pointwise half folds its
    ``pw_simd``-long kernel only when that is the whole pixel (``pw_simd == C*m``: no
    accumulator bank, and output beats ``pw_kfold`` cycles apart for a serial
    requantizer).
    """
    c = spec.in_shape[-1]
    if spec.kind == "conv":
        op = spec.ops["conv"]
        o, kk = op.out_channels, op.kernel[0] * op.kernel[1]
        return [{"pe": pe, "simd": si, **_kfold(kf)} for pe in divisors(o)
                for si in divisors(c) for kf in (divisors(kk) if si == 1 else [1])]
    if spec.kind == "dense":
        o = spec.ops["dense"].weight.shape[0]
        return [{"pe": pe, "simd": si} for pe in divisors(o) for si in divisors(c)]
    if spec.kind == "dwpw":
        dw = spec.ops["dw"]
        o, cm, kk = spec.ops["pw"].out_channels, dw.out_channels, dw.kernel[0] * dw.kernel[1]
        return [{"dw_simd": ds, "pw_simd": ps, "pw_pe": pe, **_kfold(dk, "dw_kfold"),
                 **_kfold(pk, "pw_kfold")}
                for ds in divisors(c) for ps in divisors(cm) for pe in divisors(o)
                for dk in (divisors(kk) if ds == 1 else [1])
                for pk in (divisors(ps) if ps == cm else [1])]
    return [{"lanes": lanes} for lanes in divisors(c)]


def foldings(spec, backend="generic"):
    """Pareto-optimal ``(folding, cost)`` pairs of ``spec``, cheapest first: each next
    one is faster than every cheaper one."""
    points = []
    for kw in knob_space(spec):
        try:
            points.append((kw, stage_cost(spec, kw, backend)))
        except HwconvError:
            continue
    if not points:
        raise FitError(f"stage {spec.name!r} ({spec.kind}): no valid folding")
    # cheapest first: MAC multipliers, then requantizer multipliers, then narrower
    # (limb-serial) requantizer products, then lane width
    points.sort(key=lambda p: (p[1].multipliers, p[1].requant_multipliers,
                               -p[1].requant_limbs, sum(p[0].values()),
                               p[1].cycles_per_frame))
    front, best = [], None
    for kw, c in points:
        if best is None or c.cycles_per_frame < best:
            front.append((kw, c))
            best = c.cycles_per_frame
    return front


def _fusable_clamp(qnet, producer_op, tensor):
    """The clamping activation reading ``tensor`` that the producer's clamp can absorb."""
    readers = qnet.consumers(tensor)
    if tensor == qnet.output or len(readers) != 1:
        return None
    act = readers[0]
    if isinstance(act.op, QActivation) and act.op.is_clamp and \
            act.op.in_q == producer_op.out_q:
        return act
    return None


def _is_depthwise(op, in_shape):
    return op.groups == in_shape[2] and op.groups > 1 and op.weight.shape[3] == 1


def _is_pointwise(op):
    return op.kernel == (1, 1) and op.groups == 1 and op.stride == (1, 1) and \
        not any(op.padding)


def group_stages(qnet):
    """Cut ``qnet`` into :class:`StageSpec` s in topological order (see module doc)."""
    stages, done = [], set()
    alias = {}          # tensor absorbed by a stage -> the stage output carrying it

    def src(t):
        return alias.get(t, t)

    for n in qnet.nodes:
        if n.name in done:
            continue
        op = n.op
        in_shape = qnet.shapes[n.inputs[0]]
        nodes, ops = [n.name], {}
        if isinstance(op, QConv2D):
            act = _fusable_clamp(qnet, op, n.name)
            if _is_depthwise(op, in_shape):
                ops.update(dw=op, dw_act=act.op if act else None)
                mid = act.name if act else n.name
                nodes += [act.name] if act else []
                readers = qnet.consumers(mid)
                pw = readers[0] if len(readers) == 1 and mid != qnet.output else None
                if pw is None or not isinstance(pw.op, QConv2D) or not _is_pointwise(pw.op):
                    raise UnsupportedError(
                        f"layer {n.name!r} (depthwise QConv2D): a depthwise conv must feed "
                        f"a pointwise 1x1 conv (the depthwise/pointwise engine)")
                pact = _fusable_clamp(qnet, pw.op, pw.name)
                ops.update(pw=pw.op, pw_act=pact.op if pact else None)
                nodes += [pw.name] + ([pact.name] if pact else [])
                kind = "dwpw"
            elif op.groups != 1:
                raise UnsupportedError(f"layer {n.name!r} (QConv2D): grouped convolution "
                                       f"with groups={op.groups} has no hardware stage")
            else:
                ops.update(conv=op, act=act.op if act else None)
                nodes += [act.name] if act else []
                kind = "conv"
        elif isinstance(op, MaxPool) or isinstance(op, QActivation):
            kind = "pool_activate"
            ops.update(dtype=qnet.qparams[n.inputs[0]].dtype)
            if isinstance(op, MaxPool):
                readers = qnet.consumers(n.name)
                act = readers[0] if len(readers) == 1 and n.name != qnet.output and \
                    isinstance(readers[0].op, QActivation) else None
                ops.update(pool=op, act=act.op if act else None)
                nodes += [act.name] if act else []
            else:
                ops.update(pool=None, act=op)
        elif isinstance(op, Flatten):
            readers = qnet.consumers(n.name)
            if len(readers) != 1 or not isinstance(readers[0].op, QDense):
                raise UnsupportedError(f"layer {n.name!r} (Flatten): only a Flatten feeding "
                                       f"a Dense layer maps to hardware")
            alias[n.name] = n.inputs[0]
            done.add(n.name)
            continue
        elif isinstance(op, QDense):
            kind = "dense"
            ops.update(dense=op)
        elif isinstance(op, QGlobalAvgPool):
            kind = "gap"
            ops.update(gap=op)
        elif isinstance(op, QAdd):
            kind = "add"
            ops.update(add=op)
            depth = {t: _stage_depth(stages, src(t)) for t in n.inputs}
            if depth[n.inputs[1]] < depth[n.inputs[0]]:     # skip operand first
                op = _swapped(op)
                ops.update(add=op)
                n = type(n)(n.name, op, (n.inputs[1], n.inputs[0]))
        elif isinstance(op, QAvgPool):
            raise UnsupportedError(f"layer {n.name!r} (AvgPool): no hardware stage for "
                                   f"windowed average pooling (GlobalAvgPool has one)")
        else:
            raise UnsupportedError(f"layer {n.name!r} ({op.kind}): no hardware stage; "
                                   f"quantize the network first")
        done.update(nodes)
        inputs = tuple(src(t) for t in n.inputs)
        stage_in = qnet.shapes[inputs[0]]
        stages.append(StageSpec(n.name, kind, tuple(nodes), ops, inputs, nodes[-1],
                                stage_in, qnet.shapes[nodes[-1]]))
    return stages


def _stage_depth(stages, tensor):
    """Stages on the longest path from the network input to ``tensor``."""
    by_out = {s.output: s for s in stages}
    memo = {}

    def depth(t):
        if t not in by_out:
            return 0
        if t not in memo:
            memo[t] = 1 + max(depth(i) for i in by_out[t].inputs)
        return memo[t]
    return depth(tensor)


def _swapped(op):
    return QAdd(a_q=op.b_q, b_q=op.a_q, out_q=op.out_q, mult_a=op.mult_b, mult_b=op.mult_a,
                shift=op.shift, rounding=op.rounding)


#: Cycles a LaneConverter may add to a path (its latency is at most the lcm ratio).
_CONVERTER_SLACK = 8


def size_fifos(stages, input_name):
    """Size the elastic FIFOs and every residual Add's skip FIFO.

    A stage reading a feature map from another stage gets a FIFO of one row of that map
    (see :mod:`hwconv.hw.fifo`), counted in beats of the producer's lanes.  A skip FIFO
    must hold every beat the main path can absorb before it answers (see
    :func:`hwconv.cost.skip_fifo_depth`): the stages' latencies plus the elastic FIFOs'
    capacities, summed along each path.
    """
    by_out = {s.output: s for s in stages}
    lat = {}
    for s in stages:
        src = s.inputs[0]
        if s.kind != "add" and src != input_name and len(s.in_shape) == 3:
            h, w, c = s.in_shape
            s.in_fifo = w * c // by_out[src].out_lanes
        start = max((lat.get(t, 0) for t in s.inputs), default=0)
        if s.kind == "add":
            skip, main = (lat.get(t, 0) for t in s.inputs)
            depth = cost.skip_fifo_depth(main + _CONVERTER_SLACK, skip)
            s.folding = dict(s.folding, skip_depth=depth)
            s.cost = stage_cost(s, s.folding)
        lat[s.output] = start + s.in_fifo + s.cost.latency + cost.SLICE_LATENCY + \
            _CONVERTER_SLACK


@dataclass
class Plan:
    """A mapped pipeline: stages with folding, plus the totals that matter."""

    stages: list
    clock_mhz: float
    report: list = field(default_factory=list)
    #: multiplier back end of every stage (:data:`hwconv.cost.DSP_PORTS`)
    backend: str = "generic"
    #: register slices with a skid entry (``False``: plain pipeline registers, same
    #: cycles, fewer flip-flops, ready chains through the pipeline; see
    #: :class:`hwconv.hw.fifo.RegisterSlice`)
    skid: bool = True

    @property
    def bottleneck(self):
        return max(self.stages, key=lambda s: s.cost.cycles_per_frame)

    @property
    def cycles_per_frame(self):
        return self.bottleneck.cost.cycles_per_frame

    @property
    def fps(self):
        return self.clock_mhz * 1e6 / self.cycles_per_frame

    @property
    def multipliers(self):
        return sum(s.cost.multipliers for s in self.stages)

    @property
    def latency(self):
        """Cycles from a frame's first input beat to its first output beat (bound: the
        sum of the stage latencies, each with its output's register slice, along the
        longest path)."""
        lat = {}
        for s in self.stages:
            lat[s.output] = max((lat.get(t, 0) for t in s.inputs), default=0) + \
                s.cost.latency + cost.SLICE_LATENCY
        return lat[self.stages[-1].output]

    def _producer_lanes(self, spec):
        by_out = {s.output: s for s in self.stages}
        src = by_out.get(spec.inputs[0])
        return src.out_lanes if src is not None else 0

    def manifest(self, qnet, *, model, top, in_lanes, out_lanes):
        """The build's manifest (JSON-ready dict); see README "Build folder"."""
        from . import __version__

        def io(tensor, shape, lanes):
            q = qnet.qparams[tensor]
            n = 1
            for d in shape:
                n *= d
            return {"tensor": tensor, "shape": list(shape), "dtype": q.dtype,
                    "scale": q.scale, "zero_point": q.zero_point, "lanes": lanes,
                    "tdata_bits": 8 * lanes, "beats_per_frame": n // lanes}

        stages = []
        for s in self.stages:
            c = s.cost
            stages.append({
                "name": s.name, "kind": s.kind, "nodes": list(s.nodes),
                "inputs": list(s.inputs), "output": s.output,
                "in_shape": list(s.in_shape), "out_shape": list(s.out_shape),
                "folding": dict(s.folding), "cycles_per_frame": c.cycles_per_frame,
                "latency": c.latency, "multipliers": c.multipliers,
                "requant_multipliers": c.requant_multipliers,
                "macs_per_frame": c.macs_per_frame, "utilization": round(c.utilization, 4),
                "linebuffer_words": c.linebuffer_words, "weight_words": c.weight_words,
                "buffer_words": getattr(c, "buffer_words", 0),
                "in_fifo_beats": s.in_fifo,
                "in_fifo_words": s.in_fifo * (self._producer_lanes(s))})
        last = self.stages[-1]
        return {
            "hwconv_version": __version__, "model": model, "top": top,
            "clock_mhz": self.clock_mhz, "backend": self.backend, "skid": self.skid,
            "input": io(qnet.input_name, qnet.input_shape, in_lanes),
            "output": io(last.output, last.out_shape, out_lanes),
            "transforms": [str(c) for c in self.report],
            "stages": stages,
            "bottleneck": self.bottleneck.name,
            "totals": {
                "cycles_per_frame": self.cycles_per_frame, "fps": self.fps,
                "latency": self.latency, "multipliers": self.multipliers,
                "requant_multipliers": sum(s.cost.requant_multipliers for s in self.stages),
                "linebuffer_words": sum(s.cost.linebuffer_words for s in self.stages),
                "weight_words": sum(s.cost.weight_words for s in self.stages),
                "buffer_words": sum(getattr(s.cost, "buffer_words", 0)
                                    for s in self.stages),
                "fifo_words": sum(s.in_fifo * self._producer_lanes(s) for s in self.stages)},
        }


def choose_folding(stages, *, target_cycles=None, max_multipliers=None, backend="generic"):
    """Set every stage's folding (see module docstring).

    Parameters
    ----------
    stages : list of StageSpec
    target_cycles : int or None
        Cycles per frame to reach; ``None`` means as fast as the budget allows.
    max_multipliers : int or None
        Budget of multipliers over the whole pipeline; ``None`` means unlimited.
    backend : str
        Multiplier back end the stages are costed with.

    Raises
    ------
    FitError
        When even the smallest folding exceeds the budget, or the target cannot be met
        within it (the message names what was needed vs allowed and the slowest stage).
    """
    options = {s.name: foldings(s, backend) for s in stages}   # cheapest first
    level = {s.name: 0 for s in stages}

    def apply():
        for s in stages:
            s.folding, s.cost = options[s.name][level[s.name]]

    apply()
    total = sum(s.cost.multipliers for s in stages)
    if max_multipliers is not None and total > max_multipliers:
        raise FitError(f"the smallest folding needs {total} multipliers, the budget allows "
                       f"{max_multipliers}")
    while True:
        slow = max(stages, key=lambda s: s.cost.cycles_per_frame)
        ii = slow.cost.cycles_per_frame
        if target_cycles is not None and ii <= target_cycles:
            break
        nxt = next((k for k in range(level[slow.name] + 1, len(options[slow.name]))
                    if options[slow.name][k][1].cycles_per_frame < ii), None)
        if nxt is None:
            break
        extra = options[slow.name][nxt][1].multipliers - slow.cost.multipliers
        if max_multipliers is not None and total + extra > max_multipliers:
            break
        level[slow.name] = nxt
        total += extra
        apply()
    ii = max(s.cost.cycles_per_frame for s in stages)
    if target_cycles is not None and ii > target_cycles:
        slow = max(stages, key=lambda s: s.cost.cycles_per_frame)
        raise FitError(f"target {target_cycles} cycles/frame not reachable within "
                       f"{max_multipliers} multipliers: best is {ii} cycles/frame with "
                       f"{total} multipliers; slowest stage {slow.name!r} ({slow.kind}, "
                       f"{slow.folding})")
    # balance: the cheapest folding of every stage that keeps up with the bottleneck
    for s in stages:
        level[s.name] = next(k for k, (_, c) in enumerate(options[s.name])
                             if c.cycles_per_frame <= ii)
    apply()
    return stages


def plan(qnet, *, clock_mhz=100.0, fps=None, max_multipliers=None, backend="generic"):
    """Map ``qnet`` to a :class:`Plan` meeting ``fps`` at ``clock_mhz`` (or max speed),
    its multiplies built by ``backend``."""
    cost.dsp_cells(backend, 8, 8)           # refuses an unknown back end up front
    stages = group_stages(qnet)
    target = None
    if fps is not None:
        if fps <= 0:
            raise FitError(f"target fps must be positive, not {fps}")
        target = int(clock_mhz * 1e6 // fps)
    choose_folding(stages, target_cycles=target, max_multipliers=max_multipliers,
                   backend=backend)
    size_fifos(stages, qnet.input_name)
    return Plan(stages, clock_mhz, backend=backend)
