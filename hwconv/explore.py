"""Design-space exploration: whole-pipeline foldings scored by the analytic cost model.

A *design point* is one folding of every stage of one *variant* of the network (for a
float Python-IR network, each linear-conv fusion policy gives a variant).  Points are
generated the way the mapper balances a pipeline: for a target of ``T`` cycles per frame
every stage takes its cheapest folding that keeps up (cycles <= ``T``), so sweeping ``T``
over every cycle count a stage can reach traces the throughput-vs-resource curve.
"Cheapest" has four readings, each giving a point per ``T``: fewest multipliers (what
``hwconv build --fps`` picks), fewest DSP blocks, fewest block RAMs, fewest LUTs.

Scoring is analytic and vectorized (:mod:`hwconv.cost`: cycles per frame, multipliers,
and the device family's DSP / block RAM / LUT / FF estimates, including the elastic
FIFOs and lane converters between stages), so a sweep costs microseconds per point.  The
work runs on a :class:`concurrent.futures.Executor`: scoring each stage's foldings and
sweeping chunks of targets are independent tasks, for a local process pool
(:func:`local_executor`) or a Dask cluster (:func:`dask_executor`).  The points that fit
the device's budget and are Pareto-optimal in (cycles per frame, DSP, BRAM, LUT) form the
front; an optional ``rescore`` callable (the composition root passes real Yosys
synthesis from :mod:`rtl_gen`) re-scores the front's points on the same executor, and a
point whose re-scoring fails keeps its error and log instead of stopping the sweep.

This module builds no hardware and imports nothing from :mod:`rtl_gen`.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import cost, mapper, transforms
from .compiler import Compiled, Model, load
from .devices import device as lookup_device
from .errors import FitError, HwconvError
from .ir import Network

__all__ = ["PREFERENCES", "StageTable", "Space", "DesignPoint", "Exploration",
           "stage_inventory", "score_stage", "build_spaces", "sweep", "pareto_mask",
           "explore", "compile_point", "local_executor", "dask_executor", "gather", "Budget"]

#: What "cheapest" means when a stage picks its folding for a target (see module doc).
PREFERENCES = ("multipliers", "dsp", "bram", "lut")

#: LUTs a LUT-RAM cell occupies, per family (for the LUT budget and the LUT objective).
LUTRAM_LUTS = {"ecp5": 2, "ice40": 0, "xilinx": 4}


def stage_inventory(spec, folding, backend="generic"):
    """:class:`hwconv.cost.Inventory` of stage ``spec`` at ``folding``, its multiplies
    built by ``backend``, with the pipeline's register slice on its output."""
    out = cost.Inventory(slice_bits=cost.beat_bits(dataclasses.replace(
        spec, folding=folding).out_lanes))
    return _stage_inventory(spec, folding, backend) + out


def _stage_inventory(spec, folding, backend):
    ops, shape = spec.ops, spec.in_shape
    if spec.kind == "conv":
        return cost.conv2d_inventory(ops["conv"], shape, backend=backend, **folding)
    if spec.kind == "dwpw":
        return cost.depthwise_pointwise_inventory(ops["dw"], ops["dw_act"], ops["pw"],
                                                  ops["pw_act"], shape, backend=backend,
                                                  **folding)
    if spec.kind == "pool_activate":
        return cost.pool_activate_inventory(ops["pool"], ops["act"], shape, **folding)
    if spec.kind == "dense":
        return cost.dense_inventory(ops["dense"], shape, backend=backend, **folding)
    if spec.kind == "gap":
        return cost.global_avg_pool_inventory(ops["gap"], shape, backend=backend,
                                              **folding)
    if spec.kind == "add":
        return cost.add_inventory(ops["add"], shape, **folding)
    raise ValueError(f"unknown stage kind {spec.kind!r}")


# -- per-stage option tables ------------------------------------------------------------

_METRICS = ("cycles", "multipliers", "requant", "latency", "dsp", "bram", "lut", "ff",
            "lutram")
#: Per-point columns of a sweep: the metrics plus ``lut_eq`` (LUTs with LUT-RAM cells
#: at their LUT cost: the LUT objective and budget).
_COLUMNS = _METRICS + ("lut_eq",)


@dataclass
class StageTable:
    """Every folding of one stage worth considering, scored, fastest first.

    Attributes
    ----------
    name, kind : str
    foldings : list of dict
    cycles, multipliers, requant, latency, dsp, bram, lut, ff, lutram : ndarray
        Per folding (``lut`` as Yosys counts them, LUT-RAM cells apart).
    in_lanes, out_lanes : ndarray of int
    best : dict
        Preference -> ``best[p][j]``: the index of the cheapest folding among the ``j + 1``
        fastest ones.
    """

    name: str
    kind: str
    foldings: list
    cycles: np.ndarray
    multipliers: np.ndarray
    requant: np.ndarray
    latency: np.ndarray
    dsp: np.ndarray
    bram: np.ndarray
    lut: np.ndarray
    ff: np.ndarray
    lutram: np.ndarray
    in_lanes: np.ndarray
    out_lanes: np.ndarray
    best: dict = field(default_factory=dict)

    def row(self, k):
        """Folding ``k`` as a dict of its figures."""
        return {m: getattr(self, m)[k].item() for m in _METRICS}


def _pareto_rows(keys):
    """Indices of the rows of ``keys`` (n x m, minimized) that no other row dominates."""
    order = np.lexsort(keys.T[::-1])
    kept = []
    for i in order:
        row = keys[i]
        if kept:
            prev = keys[kept]
            if np.any(np.all(prev <= row, axis=1)):
                continue
        kept.append(i)
    return sorted(kept)


def score_stage(spec, family, backend="generic", skid=True):
    """Score every valid folding of ``spec`` on ``family``; keep the useful ones.

    A folding is kept when no other is at least as good in cycles, multipliers, DSP,
    BRAM and LUTs, and always when the mapper's own :func:`~hwconv.mapper.foldings`
    would pick it (so the "multipliers" preference reproduces ``hwconv build``).

    Returns
    -------
    StageTable
    """
    rows, folds = [], []
    for kw in mapper.knob_space(spec):
        try:
            c = mapper.stage_cost(spec, kw, backend)
        except HwconvError:
            continue
        e = cost.estimate(stage_inventory(spec, kw, backend), family, skid=skid)
        probe = dataclasses.replace(spec, folding=kw)
        rows.append((c.cycles_per_frame, c.multipliers, c.requant_multipliers, c.latency,
                     e.dsp, e.bram, e.lut + LUTRAM_LUTS[family] * e.lutram, e.ff, e.lutram,
                     probe.in_lanes, probe.out_lanes, sum(kw.values()), e.lut))
        folds.append(kw)
    if not rows:
        raise FitError(f"stage {spec.name!r} ({spec.kind}): no valid folding")
    data = np.array(rows, dtype=np.float64)
    keep = set(_pareto_rows(data[:, [0, 1, 4, 5, 6]]))
    # the mapper's front: cheapest (multipliers, requant, lanes) among the faster ones
    by_mapper = np.lexsort((data[:, 0], data[:, 11], data[:, 2], data[:, 1]))
    best = None
    for i in by_mapper:
        if best is None or data[i, 0] < best:
            keep.add(int(i))
            best = data[i, 0]
    idx = sorted(keep, key=lambda i: (data[i, 0], data[i, 1], data[i, 11]))
    d = data[idx]
    table = StageTable(
        spec.name, spec.kind, [folds[i] for i in idx],
        cycles=d[:, 0].astype(np.int64), multipliers=d[:, 1].astype(np.int64),
        requant=d[:, 2].astype(np.int64), latency=d[:, 3].astype(np.int64),
        dsp=d[:, 4].astype(np.int64), bram=d[:, 5], lut=d[:, 12].astype(np.int64),
        ff=d[:, 7].astype(np.int64), lutram=d[:, 8].astype(np.int64),
        in_lanes=d[:, 9].astype(np.int64), out_lanes=d[:, 10].astype(np.int64))
    keys = {"multipliers": (d[:, 1], d[:, 2], d[:, 11], d[:, 0]),
            "dsp": (d[:, 4], d[:, 5], d[:, 6], d[:, 1]),
            "bram": (d[:, 5], d[:, 4], d[:, 6], d[:, 1]),
            "lut": (d[:, 6], d[:, 4], d[:, 5], d[:, 1])}
    for pref, key in keys.items():
        rank = np.empty(len(d), dtype=np.int64)
        rank[np.lexsort(key[::-1])] = np.arange(len(d))
        best_idx = np.empty(len(d), dtype=np.int64)
        cur = 0
        for j in range(len(d)):
            if rank[j] < rank[cur]:
                cur = j
            best_idx[j] = cur
        table.best[pref] = best_idx
    return table


# -- the pipeline around the stages -----------------------------------------------------

@dataclass
class Edge:
    """A stream between a producer (stage index, or -1 for the network input) and a
    consumer (stage index, or -1 for the network output), with the lane converter's and
    elastic FIFO's figures by (producer lanes, consumer lanes)."""

    producer: int
    consumer: int
    producer_lanes: np.ndarray      # the producer's distinct out lanes (sorted)
    consumer_lanes: np.ndarray      # the consumer's distinct in lanes (sorted)
    lut: np.ndarray                 # (len(producer_lanes), len(consumer_lanes))
    ff: np.ndarray
    bram: np.ndarray
    lutram: np.ndarray


@dataclass
class Space:
    """One variant of the network, ready to sweep (small and picklable: no weights).

    Attributes
    ----------
    variant : str
    family : str
    tables : list of StageTable
        In pipeline (topological) order.
    edges : list of Edge
    inputs : list of list of int
        Producer stage indices of each stage (-1: the network input).
    """

    variant: str
    family: str
    tables: list
    edges: list
    inputs: list

    @property
    def floor(self):
        """Fewest cycles per frame any point reaches: the slowest stage at its fastest."""
        return int(max(t.cycles.min() for t in self.tables))

    def targets(self):
        """Every cycles-per-frame target where some stage changes its folding."""
        values = np.unique(np.concatenate([t.cycles for t in self.tables]))
        return values[values >= self.floor]


def _edge_figures(family, producer_lanes, consumer_lanes, channels, fifo_words):
    """Lane converter plus (when ``fifo_words``) an elastic FIFO at the producer's lanes."""
    shape = (len(producer_lanes), len(consumer_lanes))
    out = {k: np.zeros(shape) for k in ("lut", "ff", "bram", "lutram")}
    for i, have in enumerate(producer_lanes.tolist()):
        fifo = cost.Inventory()
        if fifo_words and fifo_words // have > 1:
            fifo = cost.fifo_inventory(8 * have + 1, fifo_words // have)
        for j, want in enumerate(consumer_lanes.tolist()):
            inv = fifo
            if have != want and channels % have == 0 and channels % want == 0:
                inv = inv + cost.lane_converter_inventory(have, want)
            e = cost.estimate(inv, family)
            out["lut"][i, j] = e.lut - cost.FAMILIES[family].lut_coef[-1]
            out["ff"][i, j] = e.ff
            out["bram"][i, j] = e.bram
            out["lutram"][i, j] = e.lutram
    return out


def _space_edges(stages, tables, qnet, family, in_lanes, out_lanes):
    by_out = {s.output: k for k, s in enumerate(stages)}
    edges, inputs = [], []
    for k, s in enumerate(stages):
        srcs = []
        for n, t in enumerate(s.inputs):
            p = by_out.get(t, -1)
            srcs.append(p)
            have = np.array([in_lanes]) if p < 0 else np.unique(tables[p].out_lanes)
            want = np.unique(tables[k].in_lanes)
            channels = qnet.shapes[t][-1]
            fifo = 0
            if s.kind != "add" and p >= 0 and len(s.in_shape) == 3 and n == 0:
                fifo = s.in_shape[1] * s.in_shape[2]
            fig = _edge_figures(family, have, want, channels, fifo)
            edges.append(Edge(p, k, have, want, **fig))
        inputs.append(srcs)
    last = len(stages) - 1
    have = np.unique(tables[last].out_lanes)
    fig = _edge_figures(family, have, np.array([out_lanes]), stages[last].out_shape[-1], 0)
    edges.append(Edge(last, -1, have, np.array([out_lanes]), **fig))
    return edges, inputs


# -- the sweep (a pure function of a Space: runs on any executor) -----------------------

def sweep(space, targets):
    """Score the design points of ``space`` at cycles-per-frame ``targets``.

    Returns
    -------
    dict
        ``choice``: (points x stages) folding indices; ``pref``: the preference index of
        each point; and per point ``cycles``, ``multipliers``, ``requant``, ``latency``,
        ``dsp``, ``bram``, ``lut``, ``ff``, ``lutram`` (pipeline totals).  Points equal
        in every stage's folding appear once.
    """
    targets = np.asarray(targets, dtype=np.int64)
    blocks, prefs = [], []
    for p, pref in enumerate(PREFERENCES):
        idx = np.empty((len(targets), len(space.tables)), dtype=np.int64)
        for k, t in enumerate(space.tables):
            pos = np.searchsorted(t.cycles, targets, side="right") - 1
            if np.any(pos < 0):
                raise HwconvError(f"target below stage {t.name!r}'s fastest folding")
            idx[:, k] = t.best[pref][pos]
        blocks.append(idx)
        prefs.append(np.full(len(targets), p))
    choice = np.concatenate(blocks)
    pref = np.concatenate(prefs)
    choice, first = np.unique(choice, axis=0, return_index=True)
    pref = pref[first]
    return {"choice": choice, "pref": pref, **score(space, choice)}


def score(space, choice):
    """Pipeline totals of the points ``choice`` (points x stages folding indices)."""
    n = len(choice)
    tot = {m: np.zeros(n) for m in _METRICS}
    tot["cycles"] = np.zeros(n, dtype=np.int64)
    lat = []
    for k, t in enumerate(space.tables):
        sel = choice[:, k]
        tot["cycles"] = np.maximum(tot["cycles"], t.cycles[sel])
        for m in ("multipliers", "requant", "dsp", "bram", "lut", "ff", "lutram"):
            tot[m] += getattr(t, m)[sel]
        start = np.max([lat[p] if p >= 0 else np.zeros(n) for p in space.inputs[k]], axis=0)
        lat.append(start + t.latency[sel])
    tot["latency"] = lat[-1]
    for e in space.edges:
        if e.producer >= 0:
            i = np.searchsorted(e.producer_lanes,
                                space.tables[e.producer].out_lanes[choice[:, e.producer]])
        else:
            i = np.zeros(n, dtype=np.int64)
        if e.consumer >= 0:
            j = np.searchsorted(e.consumer_lanes,
                                space.tables[e.consumer].in_lanes[choice[:, e.consumer]])
        else:
            j = np.zeros(n, dtype=np.int64)
        for m in ("lut", "ff", "bram", "lutram"):
            tot[m] += getattr(e, m)[i, j]
    for m in ("multipliers", "requant", "dsp", "lut", "ff", "lutram", "latency"):
        tot[m] = np.rint(tot[m]).astype(np.int64)
    tot["lut_eq"] = tot["lut"] + LUTRAM_LUTS[space.family] * tot["lutram"]
    return tot


def pareto_mask(objectives):
    """Boolean mask of the rows of ``objectives`` (points x m, all minimized) that no
    other row dominates (equal rows: the first is kept)."""
    obj = np.asarray(objectives, dtype=np.float64)
    mask = np.zeros(len(obj), dtype=bool)
    kept = np.empty((0, obj.shape[1]))
    for i in np.lexsort(obj.T[::-1]):
        row = obj[i]
        if len(kept) and np.any(np.all(kept <= row, axis=1)):
            continue
        mask[i] = True
        kept = np.vstack([kept, row])
    return mask


# -- results ---------------------------------------------------------------------------

@dataclass
class Budget:
    """Resource limits a point must meet (device figures unless narrowed)."""

    dsp: int
    bram: float
    lut: int
    ff: int

    def fits(self, pts):
        """Mask of the points within budget (LUT-RAM cells count at their LUT cost)."""
        return ((pts["dsp"] <= self.dsp) & (pts["bram"] <= self.bram)
                & (pts["lut_eq"] <= self.lut) & (pts["ff"] <= self.ff))


@dataclass
class DesignPoint:
    """One whole-pipeline folding with its figures.

    Attributes
    ----------
    id : int
        Position on the front (0: the fastest).
    variant : str
    preference : str
        The per-stage "cheapest" reading that produced it.
    foldings : dict
        Stage name -> folding knobs.
    cycles_per_frame, latency, multipliers, requant_multipliers : int
    fps : float
        At the exploration's clock.
    dsp, lut, ff, lutram : int
    bram : float
        Analytic estimates (device family units).
    status : str
        ``analytic``, ``synthesized`` or ``failed`` (re-scoring raised; see ``error``).
    synth : dict or None
        Re-scored figures (``dsp``, ``bram``, ``lut``, ``ff``, ``lutram``, maybe
        ``fmax_mhz``, and ``log``).
    error, log : str or None
    """

    id: int
    variant: str
    preference: str
    foldings: dict
    cycles_per_frame: int
    fps: float
    latency: int
    multipliers: int
    requant_multipliers: int
    dsp: int
    bram: float
    lut: int
    ff: int
    lutram: int
    status: str = "analytic"
    synth: dict | None = None
    error: str | None = None
    log: str | None = None
    pareto_synth: bool | None = None

    def to_json(self):
        return dataclasses.asdict(self)


@dataclass
class Exploration:
    """What :func:`explore` found.

    Attributes
    ----------
    device : hwconv.devices.Device
    clock_mhz : float
    budget : Budget
    front : list of DesignPoint
        Fitting, Pareto-optimal points, fastest first.
    points : dict
        Every evaluated point as columns (``variant`` index, ``cycles``, ``dsp``, ...,
        ``fits``, ``front``) — for plots and CSVs.
    variants : list of str
    timings : dict
        Wall seconds per phase and ``points_per_s`` of the analytic sweep.
    errors : list of str
        Work that failed without stopping the sweep (a variant, a chunk of targets).
    backend : str
        Multiplier back end the points were scored with and are built with.
    skid : bool
        Register slices with a skid entry, or plain registers (see :func:`explore`).
    """

    device: object
    clock_mhz: float
    budget: Budget
    front: list
    points: dict
    variants: list
    timings: dict
    spaces: list = field(default_factory=list, repr=False)
    models: list = field(default_factory=list, repr=False)
    errors: list = field(default_factory=list)
    backend: str = "generic"
    skid: bool = True

    @property
    def n_points(self):
        return len(self.points["cycles"])

    def compiled(self, point, top="hwconv_top"):
        """The :class:`~hwconv.compiler.Compiled` pipeline of a front ``point``."""
        k = self.variants.index(point.variant)
        model, qnet = self.models[k]
        return compile_point(model, qnet, point.foldings, clock_mhz=self.clock_mhz, top=top,
                             backend=self.backend, skid=self.skid)


# -- building pipelines of points -------------------------------------------------------

def compile_point(model, qnet, foldings, *, clock_mhz=100.0, top="hwconv_top",
                  in_lanes=None, out_lanes=1, backend="generic", skid=True):
    """A :class:`~hwconv.compiler.Compiled` for ``qnet`` (already transformed, as in a
    :class:`Space`) with every stage at ``foldings[stage name]``; the input port carries
    ``in_lanes`` values per beat (default: a whole pixel, as :func:`hwconv.compile`)."""
    stages = mapper.group_stages(qnet)
    for s in stages:
        s.folding = dict(foldings[s.name])
        s.cost = mapper.stage_cost(s, s.folding, backend)
    mapper.size_fifos(stages, qnet.input_name)
    plan = mapper.Plan(stages, clock_mhz, backend=backend, skid=skid)
    in_lanes = qnet.input_shape[-1] if in_lanes is None else in_lanes
    return Compiled(model, qnet, plan, in_lanes=in_lanes, out_lanes=out_lanes, top=top)


# -- executors --------------------------------------------------------------------------

def local_executor(workers=None):
    """A pool of ``workers`` local processes (default: one per CPU)."""
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers)


def dask_executor(address):
    """A :class:`concurrent.futures.Executor` on the Dask scheduler at ``address``."""
    try:
        from distributed import Client
    except ImportError:
        raise HwconvError("--dask needs the 'distributed' package (pip install "
                          "distributed)") from None
    try:
        client = Client(address, timeout="5s")
    except (OSError, TimeoutError) as e:
        raise HwconvError(f"cannot reach the Dask scheduler at {address}: {e}") from None
    executor = client.get_executor()
    executor.client = client
    return executor


class _Progress:
    """tqdm on stderr, silent when stderr is not a terminal."""

    def __init__(self, total, desc, enabled):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr,
                        disable=not (enabled and sys.stderr.isatty()))

    def __enter__(self):
        return self.bar

    def __exit__(self, *exc):
        self.bar.close()


def gather(executor, calls, desc, progress=True):
    """Run ``calls`` ((fn, args) pairs) on ``executor``; results (or exceptions) in order."""
    futures = {executor.submit(fn, *args): k for k, (fn, args) in enumerate(calls)}
    out = [None] * len(calls)
    with _Progress(len(calls), desc, progress) as bar:
        for fut in as_completed(futures):
            k = futures[fut]
            try:
                out[k] = fut.result()
            except Exception as e:          # recorded per call; the sweep goes on
                out[k] = e
            bar.update(1)
    return out


# -- the exploration --------------------------------------------------------------------

def _variants(model, calibration, fuse):
    """(label, Model) pairs: fusion policies for a float network, else the one model.

    Policies that leave the same network (no fusable pair, or "pays" fusing what
    "always" fuses) are quantized and explored once, under the first label.
    """
    if isinstance(model, Model):
        return [("as loaded", model)]
    if isinstance(model, Network):
        if calibration is None:
            raise HwconvError("a float network needs calibration inputs to be quantized")
        folded, _ = transforms.fold_batchnorm(model)
        out, seen = [], set()
        for policy in fuse:
            net = folded if policy == "never" else \
                transforms.fuse_linear_convs(folded, when=policy)[0]
            sig = tuple((n.name, n.op.kind, n.inputs) for n in net.nodes)
            if sig not in seen:
                seen.add(sig)
                out.append((f"fuse={policy}", load(model, calibration=calibration,
                                                   fuse=policy)))
        return out
    return [("as loaded", load(model, calibration=calibration))]


def build_spaces(models, family, executor, *, progress=True, errors=None,
                 backend="generic", skid=True):
    """Score every stage of every variant (one task per stage); returns the spaces and
    the transformed networks.  A variant with a stage that cannot be scored is left out
    and its error appended to ``errors`` (raised when no variant is left or ``errors``
    is None)."""
    variants, calls = [], []
    for label, model in models:
        qnet, _ = transforms.pool_before_activate(model.qnet)
        stages = mapper.group_stages(qnet)
        variants.append((label, model, qnet, stages, len(calls)))
        calls += [(score_stage, (s, family, backend, skid)) for s in stages]
    scored = gather(executor, calls, "score stage foldings", progress)
    spaces, nets, failures = [], [], []
    for label, model, qnet, stages, first in variants:
        tables = scored[first:first + len(stages)]
        bad = next((t for t in tables if isinstance(t, Exception)), None)
        if bad is not None:
            failures.append(bad)
            if errors is not None:
                errors.append(f"variant {label}: {type(bad).__name__}: {bad}")
            continue
        edges, inputs = _space_edges(stages, tables, qnet, family, qnet.input_shape[-1], 1)
        spaces.append(Space(label, family, tables, edges, inputs))
        nets.append((model, qnet))
    if failures and (errors is None or not spaces):
        raise failures[0]
    return spaces, nets


def _chunks(values, n):
    n = max(1, min(n, len(values)))
    return [c for c in np.array_split(values, n) if len(c)]


def explore(model, device, *, calibration=None, clock_mhz=None, executor=None,
            workers=None, budget=None, fuse=("never", "pays", "always"), rescore=None,
            rescore_limit=None, rescore_dir=None, rescore_options=None, device_limits=True,
            progress=True, backend="generic", skid=True):
    """Sweep the foldings of ``model`` on ``device``; return the :class:`Exploration`.

    Parameters
    ----------
    model : str, Path, Network, QNetwork or Model
        Anything :func:`hwconv.compiler.load` takes (a float network is explored under
        each linear-conv fusion policy in ``fuse``).
    device : str
        A name from :data:`hwconv.devices.DEVICES`.
    clock_mhz : float, optional
        Clock for frames per second (default: the device's nominal clock).
    executor : concurrent.futures.Executor, optional
        Where the work runs; default a local process pool of ``workers`` processes
        (shut down afterwards; a caller's executor is left running).
    budget : dict, optional
        ``dsp`` / ``bram`` / ``lut`` / ``ff`` limits narrower than the device's.
    backend : str
        Multiplier back end the points are scored (and built) with.
    skid : bool
        Register slices with a skid entry (default) or plain registers
        (:func:`hwconv.compile`'s ``skid``), in the estimates and the built points.
    device_limits : bool
        ``False`` drops the device's own limits (only ``budget`` applies): the front of a
        network too big for the part, scored with the part's family.
    rescore : callable, optional
        ``rescore(job) -> dict`` re-scores a front point on the executor (see
        :func:`rtl_gen.dse.synth_point`); ``job`` is a dict with the model, the
        transformed network, the foldings, the device name, the clock and the point id.
    rescore_limit : int, optional
        Re-score only this many front points (fastest first).
    rescore_dir : str or Path, optional
        Each re-scored point works in ``rescore_dir/pointNN`` (its logs stay there).
    rescore_options : dict, optional
        Added to every job (e.g. ``{"fmax": True}``).

    Raises
    ------
    FitError
        When no design point fits the budget (the message names the smallest needs).
    """
    dev = lookup_device(device)
    family = dev.family
    clock = float(clock_mhz if clock_mhz is not None else dev.clock_mhz)
    if clock <= 0:
        raise HwconvError(f"clock must be positive, not {clock}")
    limits = Budget(dev.dsp, dev.bram_blocks, dev.luts, dev.ffs) if device_limits else \
        Budget(math.inf, math.inf, math.inf, math.inf)
    for k, v in (budget or {}).items():
        if v is not None:
            if not hasattr(limits, k):
                raise HwconvError(f"unknown budget {k!r}; use dsp, bram, lut or ff")
            setattr(limits, k, min(getattr(limits, k), v))
    timings = {}
    t0 = time.perf_counter()
    models = _variants(model, calibration, fuse)
    timings["load_s"] = time.perf_counter() - t0
    own = executor is None
    if own:
        executor = local_executor(workers)
    try:
        t1 = time.perf_counter()
        errors = []
        spaces, nets = build_spaces(models, family, executor, progress=progress,
                                    errors=errors, backend=backend, skid=skid)
        timings["score_stages_s"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        nworkers = workers or getattr(executor, "_max_workers", None) or 2
        calls = [(sweep, (sp, chunk)) for k, sp in enumerate(spaces)
                 for chunk in _chunks(sp.targets(), 2 * nworkers)]
        owners = [k for k, sp in enumerate(spaces)
                  for _ in _chunks(sp.targets(), 2 * nworkers)]
        results = gather(executor, calls, "sweep design points", progress)
        timings["sweep_s"] = time.perf_counter() - t2
        points = _collect(results, owners, spaces, errors)
        n = len(points["cycles"])
        timings["points"] = n
        timings["points_per_s"] = n / max(timings["sweep_s"], 1e-9)
        points["fits"] = limits.fits(points)
        front_idx = _front(points, limits, dev)
        front = [_point(k, int(i), points, spaces, clock) for k, i in enumerate(front_idx)]
        points["front"] = np.zeros(n, dtype=bool)
        points["front"][front_idx] = True
        result = Exploration(dev, clock, limits, front, points,
                             [sp.variant for sp in spaces], timings, spaces, nets, errors,
                             backend, skid)
        if rescore is not None:
            t3 = time.perf_counter()
            _rescore(result, rescore, executor, rescore_limit, progress, rescore_dir,
                     rescore_options or {})
            timings["rescore_s"] = time.perf_counter() - t3
    finally:
        if own:
            executor.shutdown(wait=True, cancel_futures=True)
    timings["total_s"] = time.perf_counter() - t0
    return result


def _collect(results, owners, spaces, errors):
    cols = {m: [] for m in _COLUMNS}
    cols.update(variant=[], pref=[], choice=[])
    failed = [r for r in results if isinstance(r, Exception)]
    if len(failed) == len(results):
        raise failed[0]
    for r, k in zip(results, owners):
        if isinstance(r, Exception):        # a failed chunk: its points are lost, say so
            errors.append(f"sweep chunk of variant {spaces[k].variant}: "
                          f"{type(r).__name__}: {r}")
            continue
        for m in _COLUMNS:
            cols[m].append(r[m])
        cols["variant"].append(np.full(len(r["cycles"]), k))
        cols["pref"].append(r["pref"])
        cols["choice"].extend(list(r["choice"]))
    out = {m: np.concatenate(cols[m]) for m in _COLUMNS + ("variant", "pref")}
    out["choice"] = cols["choice"]
    # the same point can come from two chunks (targets between two stage changes)
    keys = [(int(v), tuple(c.tolist())) for v, c in zip(out["variant"], out["choice"])]
    first = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    keep = np.array(sorted(first.values()), dtype=np.int64)
    out = {m: v[keep] for m, v in out.items() if m != "choice"} | \
        {"choice": [out["choice"][i] for i in keep]}
    return out


def _front(points, limits, dev):
    fits = points["fits"]
    if not fits.any():
        i = int(np.lexsort((points["lut_eq"], points["bram"], points["dsp"]))[0])
        raise FitError(
            f"no design point fits {dev.name} (budget {limits.dsp} DSP, {limits.bram:g} "
            f"BRAM, {limits.lut} LUT, {limits.ff} FF): the smallest needs "
            f"{points['dsp'][i]} DSP, {points['bram'][i]:g} BRAM, {points['lut_eq'][i]} "
            f"LUT, "
            f"{points['ff'][i]} FF ({len(fits)} points evaluated; --no-device-limits "
            f"explores without the part's limits)")
    idx = np.flatnonzero(fits)
    obj = np.stack([points[m][idx] for m in ("cycles", "dsp", "bram", "lut_eq")], axis=1)
    front = idx[pareto_mask(obj)]
    order = np.lexsort((points["lut_eq"][front], points["dsp"][front],
                        points["cycles"][front]))
    return front[order]


def _point(k, i, points, spaces, clock):
    space = spaces[int(points["variant"][i])]
    choice = points["choice"][i]
    cycles = int(points["cycles"][i])
    return DesignPoint(
        id=k, variant=space.variant, preference=PREFERENCES[int(points["pref"][i])],
        foldings={t.name: dict(t.foldings[c]) for t, c in zip(space.tables, choice)},
        cycles_per_frame=cycles, fps=clock * 1e6 / cycles,
        latency=int(points["latency"][i]), multipliers=int(points["multipliers"][i]),
        requant_multipliers=int(points["requant"][i]), dsp=int(points["dsp"][i]),
        bram=float(points["bram"][i]), lut=int(points["lut"][i]), ff=int(points["ff"][i]),
        lutram=int(points["lutram"][i]))


def _rescore(result, rescore, executor, limit, progress, base, options):
    todo = result.front if limit is None else result.front[:limit]
    calls = []
    for p in todo:
        k = result.variants.index(p.variant)
        model, qnet = result.models[k]
        job = {"model": model, "qnet": qnet, "foldings": p.foldings,
               "device": result.device.name, "clock_mhz": result.clock_mhz,
               "backend": result.backend, "skid": result.skid, "point": p.id, **options}
        if base is not None:
            job["workdir"] = str(Path(base) / f"point{p.id:02d}")
        calls.append((rescore, (job,)))
    outcomes = gather(executor, calls, "synthesize front points", progress)
    for p, out in zip(todo, outcomes):
        if isinstance(out, Exception):
            p.status, p.error = "failed", f"{type(out).__name__}: {out}"
            p.log = getattr(out, "log", None)
            p.log = str(p.log) if p.log is not None else None
            continue
        p.status, p.synth = "synthesized", dict(out)
        p.log = out.get("log")
    done = [p for p in todo if p.status == "synthesized"]
    if done:
        obj = np.array([[p.cycles_per_frame, p.synth["dsp"], p.synth["bram"],
                         p.synth["lut"] + LUTRAM_LUTS[result.device.family] *
                         p.synth.get("lutram", 0)] for p in done])
        for p, on in zip(done, pareto_mask(obj)):
            p.pareto_synth = bool(on)

