"""Exact graph transforms.  Each returns ``(new_network, report)``; ``report`` is a list of
:class:`Change` saying what was applied, and what was refused and why.

* :func:`fold_batchnorm` - BatchNorm into the conv before it (a BatchNorm with no conv
  before it becomes a depthwise 1x1 conv).  A negative gamma flips the channel's weights,
  so per-channel weight scales, and with them requantization scales, stay positive.
* :func:`pool_before_activate` - ``Act -> MaxPool`` becomes ``MaxPool -> Act`` when the
  activation is monotone non-decreasing: ``max(f(a), f(b)) = f(max(a, b))``.  Works on
  float and integer networks.  Average pooling never commutes with a non-linear
  activation and is refused.
* :func:`fuse_linear_convs` - ``Conv -> Conv`` with nothing between becomes one conv
  (associativity), when the second is unpadded, undilated and ungrouped and the first
  has unit stride and dilation; by default only where the cost model says it pays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ir import Activation, AvgPool, BatchNorm, Conv2D, MaxPool, Node
from .quant import QActivation


@dataclass(frozen=True)
class Change:
    transform: str
    nodes: tuple
    applied: bool
    reason: str

    def __str__(self):
        verb = "applied" if self.applied else "refused"
        return f"{self.transform} {verb} at {' -> '.join(self.nodes)}: {self.reason}"


def _single_consumer(net, tensor):
    return tensor != net.input_name and tensor != net.output and \
        len(net.consumers(tensor)) == 1


def _rewire(nodes, old, new):
    return [Node(n.name, n.op, tuple(new if i == old else i for i in n.inputs))
            for n in nodes]


def fold_batchnorm(net):
    """Fold every BatchNorm into its producing conv (see module docstring)."""
    nodes, report = [], []
    by_name = {}
    renames = {}
    for n in net.nodes:
        n = Node(n.name, n.op, tuple(renames.get(i, i) for i in n.inputs))
        src = n.inputs[0]
        if isinstance(n.op, BatchNorm):
            prod = by_name.get(src)
            if prod is not None and isinstance(prod.op, Conv2D) and \
                    _single_consumer(net, src):
                c = prod.op
                s, t = n.op.scale, n.op.shift
                folded = Conv2D(c.weight * s[:, None, None, None], c.bias * s + t,
                                c.stride, c.padding, c.dilation, c.groups)
                idx = nodes.index(prod)
                nodes[idx] = by_name[src] = Node(prod.name, folded, prod.inputs)
                renames[n.name] = prod.name
                flipped = int((s < 0).sum())
                report.append(Change("fold_batchnorm", (prod.name, n.name), True,
                                     "folded into conv weights/bias"
                                     + (f"; {flipped} channel(s) with negative gamma "
                                        f"flipped" if flipped else "")))
                continue
            c = len(n.op.gamma)
            dw = Conv2D(n.op.scale.reshape(c, 1, 1, 1), n.op.shift, groups=c)
            n = Node(n.name, dw, n.inputs)
            report.append(Change("fold_batchnorm", (n.name,), True,
                                 "no conv before it: became a depthwise 1x1 conv"))
        nodes.append(n)
        by_name[n.name] = n
    out = renames.get(net.output, net.output)
    return net.rebuilt(nodes, out), report


def _monotone(op):
    if isinstance(op, (Activation, QActivation)):
        return op.monotone
    return False


def pool_before_activate(net):
    """Move max-pools in front of monotone activations (see module docstring)."""
    nodes = list(net.nodes)
    report = []
    i = 0
    while i < len(nodes) - 1:
        act = nodes[i]
        pool = next((n for n in nodes[i + 1:] if act.name in n.inputs), None)
        is_act = isinstance(act.op, (Activation, QActivation))
        if not is_act or pool is None or not isinstance(pool.op, (MaxPool, AvgPool)) or \
                not _single_consumer(net, act.name):
            i += 1
            continue
        pair_names = (act.name, pool.name)
        fn = act.op.fn
        if isinstance(pool.op, AvgPool):
            if fn != "identity":
                report.append(Change("pool_before_activate", pair_names, False,
                                     f"average pooling does not commute with {fn}"))
            i += 1
            continue
        if not _monotone(act.op):
            report.append(Change("pool_before_activate", pair_names, False,
                                 f"{fn} is not monotone non-decreasing"))
            i += 1
            continue
        j = nodes.index(pool)
        new_pool = Node(pool.name, pool.op, act.inputs)
        new_act = Node(act.name, act.op, (pool.name,))
        rest = _rewire(nodes[j + 1:], pool.name, act.name)
        nodes = nodes[:i] + nodes[i + 1:j] + [new_pool, new_act] + rest
        if net.output == pool.name:
            net_output = act.name
        else:
            net_output = None
        saved = pool.op.kernel[0] * pool.op.kernel[1]
        report.append(Change("pool_before_activate", pair_names, True,
                             f"{fn} is monotone non-decreasing; {saved}x fewer "
                             f"activations"))
        net = _rebuild_keep(net, nodes, net_output)
        if getattr(net, "qparams", None) is not None:
            net.qparams[pool.name] = act.op.in_q
        nodes = list(net.nodes)
        i = 0
    return net, report


def _rebuild_keep(net, nodes, output):
    return net.rebuilt(nodes, output if output is not None else net.output)


def fused_kernel(w1, b1, w2, b2):
    """Compose two cross-correlations: ``conv(conv(x, w1), w2) == conv(x, w)``.

    ``w1``: (M, K1h, K1w, C), ``w2``: (O, K2h, K2w, M).  Returns ``(w, b)`` with
    ``w``: (O, K1h+K2h-1, K1w+K2w-1, C).
    """
    m, k1h, k1w, c = w1.shape
    o, k2h, k2w, _ = w2.shape
    w = np.zeros((o, k1h + k2h - 1, k1w + k2w - 1, c))
    for i in range(k2h):
        for j in range(k2w):
            w[:, i:i + k1h, j:j + k1w, :] += np.einsum("om,mabc->oabc", w2[:, i, j, :], w1)
    b = b2 + np.einsum("oijm,m->o", w2, b1)
    return w, b


def conv_cost(op, in_shape):
    """(MACs per frame, line-buffer words) of a conv layer on ``in_shape``."""
    h, w, c = in_shape
    kh, kw = op.kernel
    top, left, bottom, right = op.padding
    oh = (h + top + bottom - ((kh - 1) * op.dilation[0] + 1)) // op.stride[0] + 1
    ow = (w + left + right - ((kw - 1) * op.dilation[1] + 1)) // op.stride[1] + 1
    macs = oh * ow * op.out_channels * kh * kw * c // op.groups
    line = ((kh - 1) * op.dilation[0]) * (w + left + right) * c
    return macs, line


def fuse_linear_convs(net, when="pays"):
    """Fuse ``Conv -> Conv`` pairs with no nonlinearity between (see module docstring).

    ``when="pays"`` fuses only if the fused conv needs no more MACs and no more
    line-buffer words than the pair; ``when="always"`` fuses every exact pair.
    """
    if when not in ("pays", "always"):
        raise ValueError(f"when must be 'pays' or 'always', not {when!r}")
    report = []
    changed = True
    while changed:
        changed = False
        for n2 in net.nodes:
            src = n2.inputs[0]
            if not isinstance(n2.op, Conv2D) or src == net.input_name:
                continue
            n1 = net.node(src)
            if not isinstance(n1.op, Conv2D) or not _single_consumer(net, src):
                continue
            c1, c2 = n1.op, n2.op
            names = (n1.name, n2.name)
            why = None
            if c1.groups != 1 or c2.groups != 1:
                why = "grouped convs are not fused"
            elif any(c2.padding):
                why = "the second conv is padded (zero-padding the intermediate is not " \
                      "a conv of the input)"
            elif c1.stride != (1, 1) or c1.dilation != (1, 1) or c2.dilation != (1, 1):
                why = "needs unit stride/dilation on the first conv and no dilation " \
                      "on the second"
            if why is None:
                w, b = fused_kernel(c1.weight, c1.bias, c2.weight, c2.bias)
                fused = Conv2D(w, b, c2.stride, c1.padding)
                in_shape = net.shapes[n1.inputs[0]]
                m1, l1 = conv_cost(c1, in_shape)
                m2, l2 = conv_cost(c2, net.shapes[n1.name])
                mf, lf = conv_cost(fused, in_shape)
                if when == "pays" and (mf > m1 + m2 or lf > l1 + l2):
                    why = f"does not pay: fused {mf} MACs/{lf} buffer words vs " \
                          f"{m1 + m2}/{l1 + l2}"
            if why is not None:
                if not any(c.nodes == names for c in report):
                    report.append(Change("fuse_linear_convs", names, False, why))
                continue
            nodes = [Node(n2.name, fused, n1.inputs) if n is n2 else n
                     for n in net.nodes if n is not n1]
            net = net.rebuilt(nodes, net.output)
            report.append(Change("fuse_linear_convs", names, True,
                                 f"{c1.kernel}+{c2.kernel} -> {fused.kernel} kernel, "
                                 f"{mf} vs {m1 + m2} MACs"))
            changed = True
            break
    return net, report
