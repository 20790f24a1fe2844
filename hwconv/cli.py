"""The ``hwconv`` command line.  Each subcommand is one ``cmd_*`` function."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .errors import HwconvError


def cmd_demo(args):
    """The main job on the bundled digits CNN: report, build, cocotb simulation."""
    from pathlib import Path

    from . import datasets

    model = Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits_qdq.onnx"
    out = Path(args.out)
    print(f"== {model.name}: float / onnxruntime / golden accuracy ==")
    cmd_report(argparse.Namespace(
        model=str(model.with_name("digits.onnx")), qdq=str(model), dataset="digits",
        test=None, labels=None, json=False, mult_bits=_default_mult_bits(),
        calibration=None, symmetric=False, per_tensor=False, dtype="int8"))
    split = datasets.load("digits")
    print(f"\n== build {out} ==")
    compiled = _compile(model, args, None)
    _build(compiled, out, split.x_test[:args.images])
    print(f"\n== cocotb simulation of {args.images} test images ({args.simulator}) ==")
    _simulate(compiled, split.x_test[:args.images], split.y_test[:args.images], args)
    return 0


def _load_npy(path, what):
    """A float array from a .npy file, or a one-line error naming the file."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise HwconvError(f"{what} {path}: cannot read a .npy array ({e})") from None


def _quant_options(args):
    return dict(symmetric=args.symmetric, per_channel=not args.per_tensor, dtype=args.dtype)


def _calibration(args, required):
    """Calibration inputs from ``--calibration`` or the ``--dataset`` training split."""
    from . import datasets

    if args.calibration is not None:
        return _load_npy(args.calibration, "--calibration")
    if getattr(args, "dataset", None):
        return datasets.load(args.dataset).x_train
    if required:
        raise HwconvError("give calibration inputs: --calibration CAL.npy or --dataset NAME")
    return None


def cmd_golden(args):
    """Golden-model inference of an ONNX model: float IN.npy -> float OUT.npy."""
    from .fileio import save_npy
    from .frontends import ort

    x = _load_npy(args.input, "--input")
    imported, _, _ = ort.import_quantized(args.model, _calibration(args, False),
                                          args.mult_bits, **_quant_options(args))
    save_npy(args.output, imported.infer(x).astype(np.float32))
    return 0


def cmd_quantize(args):
    """Quantize a float ONNX model to QDQ with onnxruntime's tools."""
    from .frontends import ort

    ort.quantize_model(args.model, _calibration(args, True), path=args.output,
                       **_quant_options(args))
    print(f"wrote {args.output}")
    return 0


def cmd_report(args):
    """Accuracy (float, onnxruntime quantized, golden) and per-layer agreement."""
    import json

    from . import datasets
    from .frontends import agreement, import_onnx, load_model, ort

    split = datasets.load(args.dataset) if args.dataset else None
    if args.test is not None:
        x = _load_npy(args.test, "--test")
        labels = None if args.labels is None else _load_npy(args.labels, "--labels")
    elif split is not None:
        x, labels = split.x_test, split.y_test
    else:
        raise HwconvError("give test inputs: --test X.npy [--labels Y.npy] or --dataset NAME")
    if args.qdq is not None:
        qdq, float_model = load_model(args.qdq), load_model(args.model)
        imported = import_onnx(qdq, args.mult_bits)
    else:
        imported, qdq, float_model = ort.import_quantized(
            args.model, _calibration(args, False), args.mult_bits, **_quant_options(args))
    rep = agreement.report(imported, qdq, x, labels, float_model)
    rep = {"model": str(args.model), "qdq": args.qdq and str(args.qdq),
           "dataset": args.dataset, "mult_bits": args.mult_bits, **rep}
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(imported.qnetwork.summary())
        print()
        print(agreement.format_report(rep))
    return 0


def _default_mult_bits():
    from .frontends.onnx_import import IMPORT_MULT_BITS
    return IMPORT_MULT_BITS


def _compile(model, args, calibration):
    from . import compiler

    with _Progress(["load and quantize", "transform and map"]) as bar:
        loaded = compiler.load(model, calibration=calibration)
        bar.step()
        compiled = compiler.compile(loaded, clock_mhz=args.clock, fps=args.fps,
                                    max_multipliers=args.max_multipliers,
                                    backend=getattr(args, "backend", "generic"),
                                    skid=not getattr(args, "no_skid", False))
        bar.step()
    for change in compiled.plan.report:
        print(f"  {change}")
    return compiled


def plan_table(manifest):
    """The manifest's stages as a text table, bottleneck marked."""
    rows = [f"{'stage':<14} {'kind':<14} {'folding':<34} {'cycles/frame':>12} "
            f"{'latency':>8} {'mults':>6} {'util':>5}"]
    for s in manifest["stages"]:
        fold = " ".join(f"{k}={v}" for k, v in s["folding"].items())
        mark = " <- bottleneck" if s["name"] == manifest["bottleneck"] else ""
        rows.append(f"{s['name']:<14} {s['kind']:<14} {fold:<34} "
                    f"{s['cycles_per_frame']:>12} {s['latency']:>8} {s['multipliers']:>6} "
                    f"{s['utilization']:>5.2f}{mark}")
    t = manifest["totals"]
    rows.append(f"total: {t['cycles_per_frame']} cycles/frame = {t['fps']:.1f} frames/s at "
                f"{manifest['clock_mhz']} MHz, latency {t['latency']} cycles, "
                f"{t['multipliers']} MAC + {t['requant_multipliers']} requant multipliers, "
                f"{t['linebuffer_words']} line-buffer / {t['weight_words']} weight / "
                f"{t['fifo_words'] + t['buffer_words']} FIFO+buffer words")
    return "\n".join(rows)


def _build(compiled, out, inputs, step="", **verify):
    from . import api

    with _Progress([f"generate Verilog, manifest, test bench {step}".strip()]) as bar:
        api.build(compiled, out, inputs=inputs, **verify)
        bar.step()
    print(plan_table(compiled.manifest()))
    print(f"wrote {out}/ ({compiled.top}.v, files.f, manifest.json, pipeline.png, "
          f"README.md, tb/; rerun the proof: make -C {out} sim)")


def _simulate(compiled, x, labels, args):
    from . import api

    with _Progress([f"build and simulate ({args.simulator})"]) as bar:
        rep = api.simulate(compiled, x, simulator=args.simulator, folder=args.keep,
                           valid_prob=args.valid_prob, ready_prob=args.ready_prob)
        bar.step()
    gold = compiled.model.golden(x)
    exact = bool(np.array_equal(rep.outputs, gold))
    print(f"frames simulated      : {len(x)} ({rep.simulator})")
    print(f"bit-exact with golden : {'yes' if exact else 'NO'} (every output beat checked "
          f"by the scoreboard)")
    if rep.cycles_per_frame is not None:
        err = 100 * (rep.cycles_per_frame / rep.predicted_cycles_per_frame - 1)
        print(f"cycles per frame      : measured {rep.cycles_per_frame:.1f}, predicted "
              f"{rep.predicted_cycles_per_frame} ({err:+.1f}%)")
    if rep.latency is not None:
        print(f"latency (first in -> first out): {rep.latency} cycles")
    if labels is not None:
        acc = float(np.mean(np.argmax(rep.outputs.reshape(len(x), -1), axis=1) == labels))
        print(f"hardware accuracy     : {100 * acc:.2f}% on {len(x)} test images")
    return rep, exact


class _Progress:
    """A tqdm bar over named steps (on stderr; quiet when not a terminal)."""

    def __init__(self, steps):
        from tqdm import tqdm

        self._steps = steps
        self._bar = tqdm(total=len(steps), desc=steps[0], leave=False,
                         disable=not sys.stderr.isatty())
        self._k = 0

    def __enter__(self):
        return self

    def step(self):
        self._k += 1
        self._bar.update(1)
        if self._k < len(self._steps):
            self._bar.set_description(self._steps[self._k])

    def __exit__(self, *exc):
        self._bar.close()


def cmd_build(args):
    """Model -> Verilog build folder (and, with --verify-netlist, its netlist proof)."""
    from pathlib import Path

    from sim.runner import SimulationError

    from .devices import device

    x = _load_npy(args.input, "--input") if args.input else None
    dev = device(args.device)          # a bad name fails before any work
    compiled = _compile(args.model, args, _calibration(args, False))
    if not args.verify_netlist:
        _build(compiled, args.output, x)
        return 0
    work = Path(args.output) / f"netlist_{dev.family}"
    try:
        _build(compiled, args.output, x, verify_netlist=True, device=dev.name,
               synth_options=args.synth_options,
               step=f"+ synthesize for {dev.name}, simulate the netlist")
    except SimulationError as e:       # one line: the first differing output beat
        first = str(e).splitlines()[0].split("first: ", 1)[-1]
        print(f"hwconv: netlist verification failed on {dev.name}: {first} "
              f"(files: {work}/)", file=sys.stderr)
        return 1
    print(f"netlist verified on {dev.name}: every output beat of the synthesized netlist "
          f"equals the golden model ({work}/)")
    return 0


def cmd_sim(args):
    """Model -> Verilog -> cocotb simulation; OUT.npy is what the RTL computed."""
    from . import datasets
    from .fileio import save_npy

    labels = None
    if args.input:
        x = _load_npy(args.input, "--input")
    elif args.dataset:
        split = datasets.load(args.dataset)
        x, labels = split.x_test[:args.images], split.y_test[:args.images]
    else:
        raise HwconvError("give inputs: --input IN.npy or --dataset NAME [--images N]")
    compiled = _compile(args.model, args, _calibration(args, False))
    rep, exact = _simulate(compiled, x, labels, args)
    if args.output:
        save_npy(args.output, rep.outputs.astype(np.float32))
    return 0 if exact else 1


def cmd_explore(args):
    """Sweep foldings; print the Pareto front; write pareto.csv/json/png (+ points.csv)."""
    import json

    from . import api
    from .devices import device

    device(args.device)                 # an unknown device fails before any work
    budget = {"dsp": args.max_dsp, "bram": args.max_bram, "lut": args.max_lut,
              "ff": args.max_ff}
    result = api.explore(args.model, args.device, args.output, synth=args.synth,
                         fmax=args.fmax, synth_limit=args.synth_limit, dask=args.dask,
                         workers=args.workers, clock_mhz=args.clock, budget=budget,
                         calibration=_calibration(args, False),
                         device_limits=not args.no_device_limits, backend=args.backend,
                         skid=not args.no_skid)
    if args.json:
        print(json.dumps(json.loads((__import__("pathlib").Path(args.output)
                                     / "pareto.json").read_text()), indent=2))
        return 0
    from rtl_gen.report import front_table
    print(front_table(result))
    print(f"wrote {args.output}/ (pareto.csv, pareto.json, points.csv, pareto.png)")
    return 0


def _backend_option(p):
    from .cost import DSP_PORTS

    p.add_argument("--backend", choices=list(DSP_PORTS), default="generic",
                   help="multiplier back end: generic (behavioural, any tool; default), "
                        "ecp5 (MULT18X18D), ice40 (SB_MAC16), xilinx (DSP48E1), each "
                        "with its registers")
    p.add_argument("--no-skid", action="store_true",
                   help="compact variant: plain pipeline registers for the register "
                        "slices and stalling units instead of credit queues: the same "
                        "cycles, fewer cells, but ready chains through the whole "
                        "pipeline (slow clocks, small parts)")


def _add_explore_command(sub):
    from . import datasets

    e = sub.add_parser("explore", help="sweep foldings: Pareto front of throughput vs "
                                       "DSP / BRAM / LUT")
    e.add_argument("model", help="ONNX model (QDQ, or float with calibration)")
    e.add_argument("--device", required=True, help="ecp5-85f, ice40-up5k or xc7a35t")
    e.add_argument("-o", "--output", required=True, metavar="DIR")
    e.add_argument("--synth", action="store_true",
                   help="re-score the front with real Yosys synthesis")
    e.add_argument("--fmax", action="store_true",
                   help="with --synth: also place and route (nextpnr) for Fmax")
    e.add_argument("--synth-limit", type=int, metavar="N",
                   help="synthesize only the N fastest front points")
    e.add_argument("--dask", metavar="ADDRESS", help="run on this Dask scheduler")
    _backend_option(e)
    e.add_argument("--workers", type=int, help="local worker processes (default: CPUs)")
    e.add_argument("--clock", type=float, metavar="MHZ",
                   help="clock for frames/s (default: the device's nominal clock)")
    for r in ("dsp", "bram", "lut", "ff"):
        e.add_argument(f"--max-{r}", type=float if r == "bram" else int, metavar="N",
                       help=f"{r.upper()} budget below the device's")
    e.add_argument("--no-device-limits", action="store_true",
                   help="ignore the part's own DSP/BRAM/LUT/FF limits (only --max-*)")
    e.add_argument("--calibration", metavar="CAL.npy",
                   help="calibration inputs for a float model")
    e.add_argument("--dataset", choices=datasets.NAMES,
                   help="calibrate a float model on this data set's training split")
    e.add_argument("--json", action="store_true", help="print pareto.json")
    e.set_defaults(func=cmd_explore)


def _device_names():
    from .devices import DEVICES

    return sorted(DEVICES)


def _add_hw_commands(sub):
    from . import datasets

    def target(p):
        p.add_argument("model", help="ONNX model (QDQ, or float with calibration)")
        p.add_argument("--calibration", metavar="CAL.npy",
                       help="calibration inputs for a float model")
        p.add_argument("--dataset", choices=datasets.NAMES,
                       help="data set (calibration: training split; sim: test split)")
        p.add_argument("--clock", type=float, default=100.0, metavar="MHZ",
                       help="clock the pipeline is planned for (default 100)")
        p.add_argument("--fps", type=float, help="target frames/s (default: as fast as "
                                                 "the multiplier budget allows)")
        p.add_argument("--max-multipliers", type=int, metavar="N",
                       help="multiplier budget of the MAC arrays")
        _backend_option(p)

    b = sub.add_parser("build", help="generate Verilog, manifest and test bench")
    target(b)
    b.add_argument("-o", "--output", required=True, metavar="DIR")
    b.add_argument("--input", metavar="IN.npy", help="test bench stimulus (float32)")
    b.add_argument("--verify-netlist", action="store_true",
                   help="then synthesize for --device with Yosys and simulate the netlist "
                        "(cell models, Icarus) against the golden model on the test "
                        "bench's stimulus; a mismatch exits 1 naming the first bad beat")
    b.add_argument("--device", default="ecp5-85f", metavar="NAME",
                   help="device for --verify-netlist (default ecp5-85f; "
                        f"{', '.join(_device_names())})")
    b.add_argument("--synth-options", metavar="OPTS",
                   help="extra synth_<family> options for --verify-netlist (default: "
                        "hwconv's safe options)")
    b.set_defaults(func=cmd_build)

    s = sub.add_parser("sim", help="simulate the generated Verilog in cocotb")
    target(s)
    s.add_argument("--input", metavar="IN.npy", help="float32, model input shape, batch "
                                                    "first")
    s.add_argument("--output", metavar="OUT.npy", help="what the RTL computed (float32)")
    s.add_argument("--images", type=int, default=50, help="test images with --dataset")
    sim_options(s)
    s.set_defaults(func=cmd_sim)


def sim_options(p):
    p.add_argument("--simulator", choices=["icarus", "verilator"], default="icarus")
    p.add_argument("--valid-prob", type=float, default=1.0,
                   help="probability s_axis_tvalid is offered each cycle (default 1)")
    p.add_argument("--ready-prob", type=float, default=1.0,
                   help="probability m_axis_tready is set each cycle (default 1)")
    p.add_argument("--keep", metavar="DIR", help="keep the simulation folder here")


def _add_onnx_commands(sub):
    from . import datasets
    from .frontends.onnx_import import IMPORT_MULT_BITS

    def common(p, calibration_help):
        p.add_argument("model", help="ONNX model, float or QDQ-quantized")
        p.add_argument("--calibration", metavar="CAL.npy", help=calibration_help)
        p.add_argument("--symmetric", action="store_true",
                       help="symmetric activation ranges when quantizing")
        p.add_argument("--per-tensor", action="store_true",
                       help="per-tensor weight scales (default: per output channel)")
        p.add_argument("--dtype", choices=["int8", "uint8"], default="int8",
                       help="activation type when quantizing")

    def mult_bits(p):
        p.add_argument("--mult-bits", type=int, default=IMPORT_MULT_BITS,
                       help=f"requantization multiplier width (default {IMPORT_MULT_BITS})")

    g = sub.add_parser("golden", help="integer golden model: float IN.npy -> float OUT.npy")
    common(g, "inputs for quantizing a float model (float32, model input shape)")
    g.add_argument("--input", required=True, metavar="IN.npy",
                   help="float32, the model's input shape, batch first")
    g.add_argument("--output", required=True, metavar="OUT.npy",
                   help="the model's output in float32 (dequantized)")
    mult_bits(g)
    g.set_defaults(func=cmd_golden)

    q = sub.add_parser("quantize", help="quantize a float ONNX model to QDQ (onnxruntime)")
    common(q, "calibration inputs (float32, model input shape, batch first)")
    q.add_argument("--dataset", choices=datasets.NAMES,
                   help="calibrate on this data set's training split")
    q.add_argument("-o", "--output", required=True, metavar="QDQ.onnx")
    q.set_defaults(func=cmd_quantize)

    r = sub.add_parser("report", help="accuracy and golden vs onnxruntime agreement")
    common(r, "calibration inputs (default: the data set's training split)")
    r.add_argument("--dataset", choices=datasets.NAMES,
                   help="evaluate on this data set's held-back test split")
    r.add_argument("--qdq", metavar="QDQ.onnx",
                   help="use this quantized model of the float MODEL instead of quantizing")
    r.add_argument("--test", metavar="X.npy", help="test inputs instead of a data set")
    r.add_argument("--labels", metavar="Y.npy", help="integer labels of --test")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    mult_bits(r)
    r.set_defaults(func=cmd_report)


def cmd_board_build(args):
    """Model -> pipeline under the board's budget -> bitstream with reports."""
    import boards
    from boards import build as board_build

    board = boards.board(args.board)
    with _Progress(["map under the board's budget", "elaborate, synthesize, place and "
                    "route, pack"]) as bar:
        compiled = board_build.choose_pipeline(
            board, args.model, clock_mhz=args.clock, fps=args.fps,
            max_multipliers=args.max_multipliers, baud=args.baud,
            calibration=_calibration(args, False))
        bar.step()
        result = board_build.build(board, compiled, args.output, clock_mhz=args.clock,
                                   baud=args.baud, timeout_ms=args.timeout_ms,
                                   seed=args.seed)
        bar.step()
    print(plan_table(compiled.manifest()))
    print()
    print((result.folder / "report.txt").read_text(), end="")
    print(f"wrote {result.folder}/ ({result.bitstream.name}, report.txt, report.json, "
          f"manifest.json, work/)")
    return 0


def cmd_board_run(args):
    """Float IN.npy -> the board over its UART -> float OUT.npy (as ``hwconv golden``)."""
    import time

    import boards
    from boards import host

    from .fileio import save_npy

    board = boards.board(args.board)
    x = _load_npy(args.input, "--input")
    t = time.perf_counter()
    y, info = host.run(args.model, x, args.port, baud=args.baud, timeout=args.timeout,
                       retries=args.retries, calibration=_calibration(args, False))
    dt = time.perf_counter() - t
    save_npy(args.output, y)
    print(f"{len(x)} frame(s) through the {board.title} on {args.port} in {dt:.2f} s "
          f"({len(x) / dt:.1f} frames/s); model fingerprint {info.fingerprint:08x}; "
          f"wrote {args.output}")
    return 0


def _add_board_commands(sub):
    from boards import BOARDS, DEFAULT_BAUD, DEFAULT_TIMEOUT_MS

    from . import datasets

    bp = sub.add_parser("board", help="bitstreams for FPGA boards and running them over "
                                      "a UART")
    bsub = bp.add_subparsers(dest="board_command", required=True)

    def common(p):
        p.add_argument("board", choices=sorted(BOARDS), help="the board")
        p.add_argument("model", help="ONNX model (QDQ, or float with calibration)")
        p.add_argument("--calibration", metavar="CAL.npy",
                       help="calibration inputs for a float model")
        p.add_argument("--dataset", choices=datasets.NAMES,
                       help="calibrate a float model on this data set's training split")
        p.add_argument("--baud", type=int, default=DEFAULT_BAUD,
                       help=f"UART baud rate (default {DEFAULT_BAUD})")

    b = bsub.add_parser("build", help="bitstream with resource and timing reports")
    common(b)
    b.add_argument("-o", "--output", required=True, metavar="DIR")
    b.add_argument("--clock", type=float, metavar="MHZ",
                   help="pipeline clock (default: the board's, ulx3s 50, icebreaker 12); "
                        "a PLL makes it from the oscillator")
    b.add_argument("--fps", type=float, help="frames/s the pipeline must reach (default: "
                                             "what the UART carries)")
    b.add_argument("--max-multipliers", type=int, metavar="N",
                   help="map with this multiplier budget instead of the board's "
                        "resource estimates (synthesis then decides the fit)")
    b.add_argument("--timeout-ms", type=float, default=DEFAULT_TIMEOUT_MS,
                   help=f"idle time that ends a short frame (default {DEFAULT_TIMEOUT_MS})")
    b.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    b.set_defaults(func=cmd_board_build)

    r = bsub.add_parser("run", help="run IN.npy through a board over its UART "
                                    "(OUT.npy as hwconv golden writes it)")
    common(r)
    r.add_argument("--port", required=True, metavar="DEV",
                   help="serial device (/dev/ttyUSB1) or pyserial URL")
    r.add_argument("--input", required=True, metavar="IN.npy",
                   help="float32, the model's input shape, batch first")
    r.add_argument("--output", required=True, metavar="OUT.npy",
                   help="the model's output in float32 (dequantized)")
    r.add_argument("--timeout", type=float, default=2.0, metavar="S",
                   help="seconds to wait for a reply beyond its transmission time")
    r.add_argument("--retries", type=int, default=0, metavar="N",
                   help="resend a frame the board rejected, or whose reply arrived "
                        "corrupted, up to N times (default 0)")
    r.set_defaults(func=cmd_board_run)


def build_parser():
    p = argparse.ArgumentParser(prog="hwconv", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the main job on the bundled digits CNN")
    d.add_argument("-o", "--out", default="build/digits", help="build folder")
    d.add_argument("--images", type=int, default=50, help="test images to simulate")
    d.add_argument("--clock", type=float, default=100.0)
    d.add_argument("--fps", type=float)
    d.add_argument("--max-multipliers", type=int, default=None)
    sim_options(d)
    d.set_defaults(func=cmd_demo)
    _add_onnx_commands(sub)
    _add_hw_commands(sub)
    _add_board_commands(sub)
    _add_explore_command(sub)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HwconvError as e:
        print(f"hwconv: error: {e}", file=sys.stderr)
        return 2
    except AssertionError as e:          # sim.runner.SimulationError: a proof failed
        print(f"hwconv: simulation failed: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
