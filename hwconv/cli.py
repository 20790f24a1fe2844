"""The ``hwconv`` command line.  Each subcommand is one ``cmd_*`` function."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .errors import HwconvError


def _digits_images(n=None):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    return (x, d.target) if n is None else (x[:n], d.target[:n])


def cmd_demo(args):
    """The main job on the bundled example."""
    from . import golden, quant, reference, zoo

    net = zoo.small_cnn(seed=0)
    print("== network (float IR, random weights) ==")
    print(net.summary())
    images, _ = _digits_images(256)
    qnet = quant.quantize(net, images, act_dtype=args.dtype)
    print("\n== quantization ==")
    print(quant_table(qnet))
    x = images[:4]
    out = golden.infer(qnet, x)
    ref = reference.run(net, x)
    print("\n== golden (integer) output vs float, first 4 digits images ==")
    np.set_printoptions(precision=3, suppress=True, linewidth=110)
    print(out)
    err = np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-9)
    print(f"max |golden - float| / max |float| = {err:.4f}")
    return 0


def quant_table(qnet):
    """One line per tensor: scale, zero point, dtype, and per layer the acc width."""
    lines = [f"{'tensor':<14} {'dtype':<6} {'scale':>11} {'zp':>5}  layer notes"]
    notes = {}
    for n in qnet.nodes:
        if hasattr(n.op, "acc_bits"):
            notes[n.name] = (f"{n.op.kind}: w{n.op.weight_bits} acc{n.op.acc_bits} "
                             f"mult{n.op.requant.mult_bits}")
        else:
            notes[n.name] = n.op.kind
    for t, q in qnet.qparams.items():
        lines.append(f"{t:<14} {q.dtype:<6} {q.scale:>11.5g} {q.zero_point:>5}  "
                     f"{notes.get(t, 'input')}")
    return "\n".join(lines)


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


def build_parser():
    p = argparse.ArgumentParser(prog="hwconv", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the main job on the bundled example")
    d.add_argument("--dtype", choices=["int8", "uint8"], default="int8")
    d.set_defaults(func=cmd_demo)
    _add_onnx_commands(sub)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HwconvError as e:
        print(f"hwconv: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
