"""hwconv's golden model against onnxruntime's quantized inference on QDQ models.

Models are quantized by onnxruntime's own tooling (quant_pre_process, quantize_static,
QDQ) with its default settings, with symmetric activations, with hwconv's per-channel
weights and with uint8 activations, then imported; the golden model must agree with
onnxruntime within 1 LSB on every output value, and every layer's arithmetic, fed
onnxruntime's own input tensors, within 1 LSB.  Exact-match rates are printed
(``pytest -s``).
"""

from pathlib import Path

import numpy as np
import onnx
import pytest

import onnx_cases as cases
from hwconv import datasets, golden, transforms
from hwconv.frontends import agreement, export_onnx, import_onnx
from hwconv.frontends import ort as hwort
from hwconv.ir import Activation, AvgPool, Conv2D, Network
from hwconv.quant import QActivation

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits"
FLOAT = str(DIGITS / "digits.onnx")
QDQ = str(DIGITS / "digits_qdq.onnx")

MODES = {
    "ort_defaults": dict(per_channel=False),
    "symmetric": dict(per_channel=False, symmetric=True),
    "per_channel": dict(),
    "uint8": dict(dtype="uint8"),
}


def _agreement(net, mode, seed):
    model = export_onnx(net)
    imported, qdq, _ = hwort.import_quantized(model, cases.inputs(net, 64, seed),
                                              **MODES[mode])
    return imported, qdq, agreement.layer_agreement(imported, qdq,
                                                    cases.inputs(net, 200, seed + 100))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("name", sorted(cases.NETWORKS))
def test_golden_agrees_with_onnxruntime(name, mode, seed):
    imported, _, rows = _agreement(cases.NETWORKS[name](seed), mode, seed)
    out = rows[-1]
    print(f"{name}/{mode}/{seed}: output exact {out.exact_rate:.2%}, max {out.max_lsb} LSB; "
          f"worst layer alone {min(r.isolated_exact_rate for r in rows):.2%}")
    assert out.node == imported.qnetwork.output
    assert out.max_lsb <= 1
    for r in rows:
        assert r.isolated_max_lsb <= 1, r


@pytest.mark.parametrize("mode", ["ort_defaults", "per_channel"])
@pytest.mark.parametrize("variant", ["reshape", "matmul", "matmul_add"])
def test_reshape_and_matmul_models(variant, mode):
    """Reshape instead of Flatten, MatMul (+ Add, which pre-processing makes a Gemm)."""
    net = cases.small(2)
    model = {"reshape": cases.as_reshape,
             "matmul": lambda m: cases.as_matmul(m, bias=False),
             "matmul_add": cases.as_matmul}[variant](export_onnx(net))
    imported, qdq = hwort.import_quantized(model, cases.inputs(net, 64, 0),
                                           **MODES[mode])[:2]
    ops = {n.op_type for n in qdq.graph.node}
    assert ("MatMul" in ops) == (variant == "matmul")
    assert ("Reshape" in ops) == (variant == "reshape")
    rows = agreement.layer_agreement(imported, qdq, cases.inputs(net, 200, 1))
    assert rows[-1].max_lsb <= 1 and all(r.isolated_max_lsb <= 1 for r in rows)


def test_relu_in_the_output_range_is_made_explicit():
    """onnxruntime drops the ReLU into the conv's range; pool-before-activate applies."""
    net = cases.small(0)
    imported, _, rows = _agreement(net, "ort_defaults", 0)
    qnet = imported.qnetwork
    relus = [n for n in qnet.nodes if isinstance(n.op, QActivation)]
    assert [n.name for n in relus] == ["conv1.relu", "dw2.relu", "pw2.relu"]
    assert all(n.op.fn == "relu" and n.op.in_q == n.op.out_q for n in relus)
    moved, report = transforms.pool_before_activate(qnet)
    assert sum(c.applied for c in report) == 2
    x = qnet.input_q.quantize(imported.to_internal(cases.inputs(net, 50, 1)))
    np.testing.assert_array_equal(golden.run(moved, x), golden.run(qnet, x))


def test_symmetric_keeps_relu_nodes():
    imported, _, _ = _agreement(cases.small(0), "symmetric", 0)
    names = [n.name for n in imported.qnetwork.nodes if isinstance(n.op, QActivation)]
    assert names == ["relu1", "relu2", "relu3"]


def test_clip_range_on_a_max_pool_becomes_a_rescale():
    imported, _, _ = _agreement(cases.conv_zoo(0), "per_channel", 0)
    qnet = imported.qnetwork
    rescale = qnet.node("pool.requant")
    assert rescale.inputs == ("pool",) and rescale.op.fn == "identity"
    assert qnet.qparams["pool"] == qnet.qparams["leaky"]


def _one_layer(layer, mode):
    """conv 1x1 -> ``layer``: the conv quantizes the layer's input."""
    rng = np.random.default_rng(0)
    net = Network((8, 8, 3))
    x = net.add("conv", Conv2D(rng.normal(0, 1, (3, 1, 1, 3)), rng.normal(0, .1, 3)),
                net.input)
    net.add("layer", layer, x)
    imported, qdq, rows = _agreement(net, mode, 0)
    op = imported.qnetwork.node("layer").op
    x = cases.inputs(net, 200, 100)
    tensors = {imported.onnx_tensors[t]: imported.qnetwork.qparams[t] for t in ("conv", "layer")}
    _, theirs = hwort.run(qdq, x, tensors)
    conv, out = (imported.to_internal_ints(theirs[imported.onnx_tensors[t]])
                 for t in ("conv", "layer"))
    ours = golden._apply(op, [conv], op.in_q.qmin)
    return op, conv, ours, out, rows


def test_even_window_average_pool_ties():
    """A 2x2 average at one scale: a quarter of the window sums are exact ties, which
    onnxruntime rounds half to even; imported models round the same way, so every value
    matches (with hwconv's own half-up rounding a tie would be 1 LSB off)."""
    op, conv, ours, theirs, rows = _one_layer(AvgPool(2), "symmetric")
    assert op.in_q == op.out_q and op.requant.rounding == "half_even"
    s = conv.reshape(200, 4, 2, 4, 2, 3).sum(axis=(2, 4)) - 4 * op.in_q.zero_point
    ties = s % 4 == 2
    assert ties.mean() > 0.1
    np.testing.assert_array_equal(theirs, np.rint(s / 4) + op.out_q.zero_point)
    np.testing.assert_array_equal(ours, theirs)
    print(f"2x2 average pool: {ties.mean():.1%} ties, layer exact {rows[-1].exact_rate:.2%}")


def test_leaky_relu_ties():
    """LeakyReLU alpha 0.1 at one scale: ``0.1 * d`` is a tie for d = 5 (mod 10), which
    onnxruntime's float32 lookup table rounds either way; nothing else differs."""
    op, conv, ours, theirs, rows = _one_layer(Activation("leaky_relu", alpha=0.1),
                                              "symmetric")
    assert op.in_q == op.out_q
    ties = (conv - op.in_q.zero_point) % 10 == 5
    assert np.all((ours == theirs) | ties) and np.abs(ours - theirs).max() <= 1
    print(f"leaky ReLU 0.1: {ties.mean():.1%} ties, layer exact {rows[-1].exact_rate:.2%}")


@pytest.fixture(scope="module")
def digits():
    split = datasets.digits()
    imported = import_onnx(QDQ)
    rep = agreement.report(imported, QDQ, split.x_test, split.y_test, FLOAT)
    return split, imported, rep


def test_digits_golden_matches_onnxruntime(digits):
    _, _, rep = digits
    print(f"digits: output exact {rep['output']['exact_rate']:.2%}, all layers "
          f"{rep['all_layers']['exact_rate']:.3%}, accuracy {rep['accuracy']}")
    assert rep["output"]["max_lsb"] <= 1
    assert rep["output"]["exact_rate"] >= 0.99
    assert all(r["isolated_max_lsb"] <= 1 for r in rep["layers"])


def test_digits_accuracy(digits):
    acc = digits[2]["accuracy"]
    assert acc["float"] >= 0.95
    assert abs(acc["golden"] - acc["float"]) <= 0.01
    assert abs(acc["onnxruntime_quantized"] - acc["float"]) <= 0.01


def test_digits_16_bit_multipliers(digits):
    """The project-wide 16-bit multipliers still meet the 99% target on the digits."""
    split, _, _ = digits
    rows = agreement.layer_agreement(import_onnx(QDQ, mult_bits=16), QDQ, split.x_test)
    assert rows[-1].max_lsb <= 1 and rows[-1].exact_rate >= 0.99


def test_committed_qdq_model_is_reproducible(digits):
    """quantize_model on the committed float model rebuilds the committed QDQ model."""
    split, imported, _ = digits
    again = import_onnx(hwort.quantize_model(FLOAT, split.x_train))
    for a, b in zip(imported.qnetwork.nodes, again.qnetwork.nodes):
        assert a.name == b.name
        for field in ("weight", "bias"):
            if hasattr(a.op, field):
                np.testing.assert_array_equal(getattr(a.op, field), getattr(b.op, field))
    assert imported.qnetwork.qparams == again.qnetwork.qparams


def test_digits_model_structure():
    model = onnx.load(FLOAT)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 3 and "MaxPool" in ops and "Gemm" in ops
    groups = [a.i for n in model.graph.node for a in n.attribute if a.name == "group"]
    assert 16 in groups
