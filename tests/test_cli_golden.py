"""The command-line contract of ``hwconv golden``, ``quantize`` and ``report``.

``hwconv golden MODEL.onnx --input IN.npy --output OUT.npy``: IN is float32 in the
model's input shape, batch first; OUT is the model's output in float32, dequantized,
computed by the integer golden model.  Errors are one line on stderr, exit status 2,
and nothing is written to the output folder.
"""

import json
import subprocess
import sys

from pathlib import Path

import numpy as np
import onnx
import pytest

from hwconv import datasets
from hwconv.cli import main
from hwconv.frontends import import_onnx

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits"
FLOAT = str(DIGITS / "digits.onnx")
QDQ = str(DIGITS / "digits_qdq.onnx")


@pytest.fixture(scope="module")
def images():
    return datasets.digits().x_test[:17]


def _save(path, array):
    np.save(path, array)
    return str(path)


def test_golden_on_the_qdq_model(tmp_path, images):
    out = tmp_path / "out.npy"
    assert main(["golden", QDQ, "--input", _save(tmp_path / "in.npy", images),
                 "--output", str(out)]) == 0
    y = np.load(out)
    assert y.dtype == np.float32 and y.shape == (17, 10)
    np.testing.assert_array_equal(y, import_onnx(QDQ).infer(images))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "out.npy"]


def test_golden_quantizes_a_float_model(tmp_path, images):
    cal = _save(tmp_path / "cal.npy", datasets.digits().x_train)
    out = tmp_path / "out.npy"
    assert main(["golden", FLOAT, "--input", _save(tmp_path / "in.npy", images),
                 "--output", str(out), "--calibration", cal]) == 0
    np.testing.assert_array_equal(np.load(out), import_onnx(QDQ).infer(images))


def test_golden_as_a_subprocess(tmp_path, images):
    """The installed entry point and ``python -m hwconv.cli`` behave the same."""
    out = tmp_path / "out.npy"
    r = subprocess.run([sys.executable, "-m", "hwconv.cli", "golden", QDQ, "--input",
                        _save(tmp_path / "in.npy", images[:2]), "--output", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert np.load(out).shape == (2, 10)


def _fails(capsys, tmp_path, argv, *fragments):
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hwconv: error: ") and err.count("\n") == 1, err
    for f in fragments:
        assert f in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    return err


def test_golden_errors_leave_nothing_behind(tmp_path, capsys, images):
    inp = _save(tmp_path / "in.npy", images)
    out = str(tmp_path / "out.npy")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(Path(QDQ).read_bytes()[:3000])
    _fails(capsys, tmp_path, ["golden", str(cut), "--input", inp, "--output", out],
           str(cut), "truncated")
    _fails(capsys, tmp_path, ["golden", FLOAT, "--input", inp, "--output", out],
           "float model needs calibration")
    bad = _save(tmp_path / "bad.npy", images[:, 0])
    _fails(capsys, tmp_path, ["golden", QDQ, "--input", bad, "--output", out],
           "expects (batch, 1, 8, 8)")
    _fails(capsys, tmp_path, ["golden", QDQ, "--input", str(tmp_path / "none.npy"),
                              "--output", out], "--input")
    _fails(capsys, tmp_path, ["golden", QDQ, "--input", inp, "--output",
                              str(tmp_path / "missing_dir" / "out.npy")], "cannot write")


def test_golden_error_names_the_onnx_node(tmp_path, capsys, images):
    model = onnx.load(FLOAT)
    model.graph.node[1].op_type = "Sigmoid"
    path = tmp_path / "sig.onnx"
    onnx.save(model, path)
    _fails(capsys, tmp_path, ["golden", str(path), "--input",
                              _save(tmp_path / "in.npy", images), "--output",
                              str(tmp_path / "o.npy"), "--calibration",
                              str(tmp_path / "in.npy")],
           "node '/relu1/Relu' (Sigmoid): unsupported operator")


def test_quantize_command(tmp_path, capsys):
    out = tmp_path / "q.onnx"
    assert main(["quantize", FLOAT, "--dataset", "digits", "-o", str(out),
                 "--symmetric"]) == 0
    imp = import_onnx(out)
    assert imp.qnetwork.input_q.zero_point == 0
    assert "wrote" in capsys.readouterr().out


def test_report_json(capsys):
    assert main(["report", FLOAT, "--qdq", QDQ, "--dataset", "digits", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    acc = rep["accuracy"]
    assert set(acc) == {"float", "onnxruntime_quantized", "golden"}
    assert abs(acc["golden"] - acc["float"]) <= 0.01
    assert rep["inputs"] == 360 and rep["output"]["max_lsb"] <= 1
    assert rep["layers"][0]["node"] == "input"
    assert {"exact_rate", "max_lsb", "isolated_exact_rate"} <= set(rep["layers"][1])


def test_report_text_quantizes_the_float_model(capsys):
    assert main(["report", FLOAT, "--dataset", "digits"]) == 0
    text = capsys.readouterr().out
    assert "hwconv golden" in text and "isolated layer" in text and "conv1.relu" in text
