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


def build_parser():
    p = argparse.ArgumentParser(prog="hwconv", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the main job on the bundled example")
    d.add_argument("--dtype", choices=["int8", "uint8"], default="int8")
    d.set_defaults(func=cmd_demo)
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
