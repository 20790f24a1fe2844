"""Train the digits CNN on CPU and export it to ONNX (float) and QDQ ONNX (quantized).

Needs the ``train`` extra (``pip install -e .[train]``, PyTorch CPU).  Deterministic:
fixed seeds, single-threaded, the fixed split of :func:`hwconv.datasets.digits`.  Takes
well under a minute.

    python examples/digits/train.py            # writes digits.onnx and digits_qdq.onnx

The network (input ``(N, 1, 8, 8)``, pixels 0..1):

    conv 3x3, 1->16, pad 1 -> BatchNorm -> ReLU -> max-pool 2x2        (16, 4, 4)
    depthwise 3x3, 16 groups, pad 1 -> BatchNorm -> ReLU               (16, 4, 4)
    pointwise 1x1, 16->32 -> BatchNorm -> ReLU -> max-pool 2x2         (32, 2, 2)
    flatten -> dense 128->10                                            logits

The QDQ model is what ``hwconv quantize digits.onnx --dataset digits`` writes:
onnxruntime's pre-processing (BatchNorm folded into the convs) and static QDQ
quantization, int8 activations, per-channel int8 weights, calibrated on the training
split.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwconv import datasets
from hwconv.frontends import ort as hwort

HERE = Path(__file__).resolve().parent


class DigitsCNN(nn.Module):
    """Standard conv, ReLU, max-pool, a depthwise+pointwise block and a dense head."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.dw2, self.bn2 = nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16)
        self.pw3, self.bn3 = nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32)
        self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.pool1, self.pool3 = nn.MaxPool2d(2), nn.MaxPool2d(2)
        self.fc = nn.Linear(32 * 2 * 2, 10)

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.relu2(self.bn2(self.dw2(x)))
        x = self.pool3(self.relu3(self.bn3(self.pw3(x))))
        return self.fc(torch.flatten(x, 1))


def train(split, epochs, seed=0):
    """Adam with a cosine learning-rate schedule and light shift augmentation."""
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(seed)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    x, y = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    for _ in range(epochs):
        model.train()
        for idx in np.array_split(rng.permutation(len(x)), len(x) // 64):
            xb = x[idx]
            dy, dx = (int(v) for v in rng.integers(-1, 2, 2))
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def accuracy(model, x, y):
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def export(model, path):
    """TorchScript-based ONNX export with a symbolic batch dimension.

    The torch.export-based exporter needs the extra ``onnxscript`` package; the
    TorchScript one is enough for this network, so its deprecation notice is silenced.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False,
                          input_names=["input"], output_names=["logits"], opset_version=17,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--out", type=Path, default=HERE)
    args = p.parse_args(argv)
    split = datasets.digits()
    model = train(split, args.epochs)
    print(f"float accuracy (PyTorch): train {accuracy(model, split.x_train, split.y_train):.4f}"
          f"  test {accuracy(model, split.x_test, split.y_test):.4f}")
    float_path, qdq_path = args.out / "digits.onnx", args.out / "digits_qdq.onnx"
    export(model, float_path)
    hwort.quantize_model(float_path, split.x_train, path=qdq_path)
    print(f"wrote {float_path} and {qdq_path}")


if __name__ == "__main__":
    main()
