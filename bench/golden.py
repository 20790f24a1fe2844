"""Golden-model throughput on a 224x224 MobileNet-style block vs float32 NumPy/BLAS.

The block is depthwise 3x3 (32 ch) -> ReLU6 -> pointwise 1x1 (32 -> 64) -> ReLU6.  The
float32 baseline runs the same layers with the same tap-loop kernels in float32 (BLAS
sgemm for the pointwise); the golden model runs the integer network (exact float64 BLAS
for the products, int64 requantization).  Goal: golden within 5x of float32.
"""

import argparse
import time

import numpy as np

from hwconv import golden, kernels, quant, zoo


def macs(net):
    total = 0
    for n in net.nodes:
        op = n.op
        if hasattr(op, "kernel") and hasattr(op, "groups"):
            oh, ow, o = net.shapes[n.name]
            total += oh * ow * o * op.kernel[0] * op.kernel[1] * op.weight.shape[3]
    return total


def float32_block(net, x):
    """The float network in float32 end to end (weights, activations, accumulation)."""
    for n in net.nodes:
        op = n.op
        if op.kind == "Conv2D":
            x = kernels.conv2d(x, op.weight.astype(np.float32), op.stride, op.padding,
                               op.dilation, op.groups, np.float32(0)) + \
                op.bias.astype(np.float32)
        else:
            x = np.clip(x, np.float32(0), np.float32(6))
    return x


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    net = zoo.mobilenet_block(a.size)
    rng = np.random.default_rng(0)
    cal = rng.normal(size=(2,) + net.input_shape)
    qnet = quant.quantize(net, cal)
    x = rng.normal(size=(a.batch,) + net.input_shape)
    xq = qnet.input_q.quantize(x)
    xf = x.astype(np.float32)
    n_macs = macs(net) * a.batch
    t_gold = best_of(lambda: golden.run(qnet, xq), a.repeat)
    t_f32 = best_of(lambda: float32_block(net, xf), a.repeat)
    print(f"MobileNet block {a.size}x{a.size}x32 -> 64, batch {a.batch}: "
          f"{n_macs / 1e6:.1f} MMACs")
    print(f"golden (integer): {t_gold * 1e3:8.1f} ms  {n_macs / t_gold / 1e9:6.3f} GMAC/s")
    print(f"float32 NumPy   : {t_f32 * 1e3:8.1f} ms  {n_macs / t_f32 / 1e9:6.3f} GMAC/s")
    ratio = t_gold / t_f32
    print(f"golden / float32 time: {ratio:.2f}x (goal <= 5x)")
    print(f"summary: golden_gmacs={n_macs / t_gold / 1e9:.3f} "
          f"float32_gmacs={n_macs / t_f32 / 1e9:.3f} slowdown={ratio:.2f}")


if __name__ == "__main__":
    main()
