"""ONNX import: float models, layout at the boundary, op variants, and one-line errors."""

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_cases as cases
from hwconv import reference
from hwconv.errors import HwconvError
from hwconv.frontends import export_onnx, import_onnx, load_model
from hwconv.frontends import ort as hwort
from hwconv.frontends.onnx_import import OnnxError
from hwconv.ir import Activation, Dense, Flatten


def _float_agrees(model, net, n=4, seed=0):
    """onnxruntime on ``model`` == hwconv's reference on the imported ``net``."""
    imp = import_onnx(model)
    x = cases.inputs(net, n, seed)
    want = hwort.run(model, x)
    got = imp.to_external(reference.run(imp.network, imp.to_internal(x)))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    return imp


@pytest.mark.parametrize("name", sorted(cases.NETWORKS))
def test_float_round_trip(name):
    net = cases.NETWORKS[name](seed=3)
    imp = _float_agrees(export_onnx(net), net)
    assert imp.qnetwork is None
    assert [n.name for n in imp.network.nodes] == [n.name for n in net.nodes]
    assert imp.input_layout == ("NCHW" if len(net.input_shape) == 3 else "NC")


def test_reshape_and_matmul_variants():
    net = cases.small(seed=1)
    model = cases.as_matmul(cases.as_reshape(export_onnx(net)))
    assert {"Reshape", "MatMul", "Add"} <= {n.op_type for n in model.graph.node}
    imp = _float_agrees(model, net)
    assert isinstance(imp.network.nodes[-1].op, Dense)
    assert isinstance(imp.network.nodes[-2].op, Flatten)


def test_matmul_without_bias_and_identity():
    net = cases.dense_only(seed=2)
    model = cases.as_matmul(export_onnx(net), bias=False)
    g = model.graph
    g.node.insert(0, helper.make_node("Identity", [g.input[0].name], ["copy"], name="copy"))
    g.node[1].input[0] = "copy"
    imp = import_onnx(model)
    assert [type(n.op) for n in imp.network.nodes] == [Dense, Activation, Dense]
    assert not imp.network.nodes[0].op.bias.any()


def _model(nodes, inits=(), in_shape=("N", 2, 6, 6), opset=17):
    """A one-input model from ``nodes``; ``y`` is its output, of unknown sizes."""
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * len(in_shape))],
        [numpy_helper.from_array(np.asarray(v, np.float32 if np.asarray(v).dtype.kind == "f"
                                            else np.int64), k) for k, v in inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_auto_pad_same_and_clip_bounds():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1, (3, 2, 3, 2))
    model = _model([
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", auto_pad="SAME_UPPER",
                         strides=[2, 1]),
        helper.make_node("Clip", ["c", "lo", "hi"], ["k"], name="clip"),
        helper.make_node("MaxPool", ["k"], ["y"], name="pool", kernel_shape=[2, 2],
                         auto_pad="SAME_LOWER", strides=[2, 2]),
    ], [("w", w), ("lo", -0.25), ("hi", 0.5)])
    x = rng.normal(0, 1, (2, 2, 6, 6)).astype(np.float32)
    imp = import_onnx(model)
    got = imp.to_external(reference.run(imp.network, imp.to_internal(x)))
    np.testing.assert_allclose(got, hwort.run(model, x), rtol=1e-5, atol=1e-6)
    clip = imp.network.node("clip").op
    assert (clip.fn, clip.lo, clip.hi) == ("clip", -0.25, 0.5)


def test_relu6_clip_and_leaky_default_alpha():
    model = _model([helper.make_node("Clip", ["x", "lo", "hi"], ["c"], name="r6"),
                    helper.make_node("LeakyRelu", ["c"], ["y"], name="leaky")],
                   [("lo", 0.0), ("hi", 6.0)])
    imp = import_onnx(model)
    assert imp.network.node("r6").op.fn == "relu6"
    assert imp.network.node("leaky").op.alpha == pytest.approx(0.01)


def test_pytorch_style_names_are_shortened():
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="/block1/act/Relu")])
    assert import_onnx(model).network.nodes[0].name == "block1/act"


def test_boundary_layout_and_shape_checks():
    imp = import_onnx(export_onnx(cases.small(0)))
    assert (imp.input_shape, imp.output_shape, imp.batch) == ((1, 8, 8), (10,), None)
    x = np.zeros((5, 1, 8, 8), np.float32)
    assert imp.to_internal(x).shape == (5, 8, 8, 1)
    with pytest.raises(HwconvError, match=r"expects \(batch, 1, 8, 8\)"):
        imp.to_internal(np.zeros((5, 8, 8, 1), np.float32))
    with pytest.raises(HwconvError, match="float32"):
        imp.to_internal(np.zeros((5, 1, 8, 8), np.int64))
    with pytest.raises(HwconvError, match="NaN"):
        imp.to_internal(np.full((1, 1, 8, 8), np.nan, np.float32))
    with pytest.raises(HwconvError, match="quantize it first"):
        imp.infer(x)


# -- errors: one line naming the node, the op and the reason ----------------------------

def _one_line_error(source, *fragments):
    with pytest.raises(HwconvError) as e:
        import_onnx(source)
    msg = str(e.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, msg
    return e.value


def test_unsupported_op():
    model = _model([helper.make_node("Sigmoid", ["x"], ["y"], name="gate")])
    err = _one_line_error(model, "'gate'", "(Sigmoid)", "unsupported operator")
    assert isinstance(err, OnnxError)


def test_foreign_domain_op():
    model = _model([helper.make_node("QLinearSigmoid", ["x"], ["y"], name="q",
                                     domain="com.microsoft")])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    _one_line_error(model, "'q'", "(QLinearSigmoid)", "com.microsoft")


def test_dynamic_shape():
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="r")],
                   in_shape=("N", 2, "H", "W"))
    _one_line_error(model, "'x'", "(input)", "dynamic shape")


def test_non_constant_weights():
    model = _model([helper.make_node("Relu", ["x"], ["r"], name="r"),
                    helper.make_node("Conv", ["x", "r"], ["y"], name="conv")])
    _one_line_error(model, "'conv'", "(Conv)", "weight 'r' is not a constant")


def test_unsupported_attributes():
    model = _model([helper.make_node("AveragePool", ["x"], ["y"], name="avg",
                                     kernel_shape=[3, 3], pads=[1, 1, 1, 1])])
    _one_line_error(model, "'avg'", "(AveragePool)", "count_include_pad=0")
    model = _model([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", alpha=2.0)],
                   [("w", np.ones((3, 4)))], in_shape=("N", 4))
    _one_line_error(model, "'fc'", "(Gemm)", "alpha=1")
    model = _model([helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")],
                   [("s", np.array([0, 2, -1]))])
    _one_line_error(model, "'rs'", "(Reshape)", "not a flatten")


def test_shape_errors_name_the_onnx_node():
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="big")],
                   [("w", np.ones((1, 2, 9, 9)))])
    _one_line_error(model, "'big'", "(Conv)", "larger than the padded input")


def test_two_inputs_and_outputs_are_refused():
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="r")])
    model.graph.input.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2]))
    _one_line_error(model, "2 inputs")


@pytest.fixture(scope="module")
def model_bytes():
    return export_onnx(cases.small(0)).SerializeToString()


@pytest.mark.parametrize("keep", [0.02, 0.3, 0.5, 0.9, 0.999])
def test_truncated_file(tmp_path, model_bytes, keep):
    path = tmp_path / "cut.onnx"
    path.write_bytes(model_bytes[:int(len(model_bytes) * keep)])
    _one_line_error(path, str(path))


def test_malformed_and_missing_files(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).bytes(500))
    _one_line_error(junk, str(junk))
    _one_line_error(tmp_path / "absent.onnx", "no such model file")


def test_invalid_graph_is_refused_by_the_checker():
    model = _model([helper.make_node("Relu", ["nowhere"], ["y"], name="r")])
    with pytest.raises(HwconvError, match="invalid ONNX model"):
        load_model(model)


def test_committed_float_model_loads():
    path = Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits.onnx"
    imp = import_onnx(path)
    assert imp.input_shape == (1, 8, 8) and imp.output_shape == (10,)
    assert imp.network.node("dw2").op.groups == 16
