"""rkrt.ort: an onnxruntime program runs on the NPU with only its import changed."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from rkrt_support import inputs_for, mlp

import rkrt
import rkrt.ort as rkort

# An ordinary onnxruntime program: open, describe, feed by name, read outputs and metadata.
PROGRAM = """
import numpy as np
import onnxruntime as ort

def main(path, rows):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    outs = [o.name for o in sess.get_outputs()]
    x = np.random.default_rng(7).normal(size=(rows, inp.shape[1])).astype(np.float32)
    (probs,) = sess.run(outs, {inp.name: x})
    (again,) = sess.run(None, {inp.name: x})
    meta = sess.get_modelmeta().custom_metadata_map
    described = [(a.name, a.shape, a.type) for a in sess.get_inputs() + sess.get_outputs()]
    return x, probs, again, described, sorted(meta)
"""
ONNX_IMPORT = "import onnxruntime as ort"
RKRT_IMPORT = "import rkrt.ort as ort"


def _onnx_twin(model) -> bytes:
    """The same dense network as an ONNX graph (float32 in and out)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, prev = [], [], "input"
    for i, layer in enumerate(model.layers):
        inits += [numpy_helper.from_array(layer.weight, f"w{i}"),
                  numpy_helper.from_array(layer.bias, f"b{i}")]  # fmt: skip
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]  # fmt: skip
        act = {"relu": "Relu", "softmax": "Softmax"}[layer.activation]
        prev = "output" if i == len(model.layers) - 1 else f"h{i}"
        nodes.append(helper.make_node(act, [f"a{i}"], [prev]))
    (_, n_in), (_, n_out) = model.inputs[0], model.outputs[0]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [model.batch, n_in])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [model.batch, n_out])],
        initializer=inits,
    )  # fmt: skip
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.metadata_props.add(key="rknn_custom_string", value=model.custom_string)
    onnx.checker.check_model(m)
    return m.SerializeToString()


def _run_program(source: str, path: str, rows: int):
    namespace: dict = {}
    exec(compile(source, "<program>", "exec"), namespace)
    return namespace["main"](path, rows)


def test_an_onnxruntime_program_runs_unchanged_but_for_the_import(rt, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    model = mlp(dtype="float32", batch_sizes=(5,), custom_string="digits v1")
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(_onnx_twin(model))
    rknn_path = model.save(tmp_path / "m.rknn")
    ported = PROGRAM.replace(ONNX_IMPORT, RKRT_IMPORT)
    changed = [(a, b) for a, b in zip(PROGRAM.splitlines(), ported.splitlines()) if a != b]
    assert changed == [(ONNX_IMPORT, RKRT_IMPORT)]

    x1, y_onnx, again1, desc_onnx, meta_onnx = _run_program(PROGRAM, str(onnx_path), 5)
    x2, y_rkrt, again2, desc_rkrt, meta_rkrt = _run_program(ported, str(rknn_path), 5)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_allclose(y_rkrt, y_onnx, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y_rkrt, again2)
    assert desc_rkrt == desc_onnx == [("input", [5, 4], "tensor(float)"),
                                      ("output", [5, 3], "tensor(float)")]  # fmt: skip
    assert meta_rkrt == meta_onnx == ["rknn_custom_string"]


def test_description_metadata_and_providers(rt) -> None:
    model = mlp(batch_sizes=(1, 8), custom_string='{"a": "b"}')
    with rkort.InferenceSession(model.to_bytes()) as sess:
        (inp,) = sess.get_inputs()
        assert (inp.name, inp.shape, inp.type) == ("input", [None, 4], "tensor(float16)")
        assert sess.get_outputs()[0].type == "tensor(float16)"
        meta = sess.get_modelmeta()
        assert meta.custom_metadata_map == {"rknn_custom_string": '{"a": "b"}'}
        assert sess.get_providers() == ["RknpuExecutionProvider"]
        x = inputs_for(model, batch=8)[0]
        (y,) = sess.run([], {"input": x})
        assert y.dtype == np.float32 and y.shape == (8, 3)
    assert rkort.get_available_providers()[0] == "RknpuExecutionProvider"


def test_strict_errors_are_what_both_kinds_of_user_catch(rt) -> None:
    model = mlp()
    with rkort.InferenceSession(model.to_bytes()) as sess:
        with pytest.raises(rkort.InvalidArgument, match="float64") as err:
            sess.run(None, {"input": np.zeros((1, 4), np.float64)})
        assert isinstance(err.value, rkrt.DTypeError) and isinstance(err.value, rkrt.Error)
        with pytest.raises(rkrt.ShapeError) as err:
            sess.run(None, {"input": np.zeros((2, 4), np.float32)})
        assert isinstance(err.value, rkort.InvalidArgument)
        with pytest.raises(rkort.InvalidArgument, match=r"unknown \['x'\], missing \['input'\]"):
            sess.run(None, {"x": np.zeros((1, 4), np.float32)})
        with pytest.raises(rkort.InvalidArgument, match="unknown output names"):
            sess.run(["probs"], {"input": np.zeros((1, 4), np.float32)})
        with pytest.raises(ValueError, match="run_options"):
            sess.run(None, {"input": np.zeros((1, 4), np.float32)}, run_options=object())
    for kwargs, message in (
        ({"providers": ["CUDAExecutionProvider"]}, "unknown providers"),
        ({"providers": [("RknpuExecutionProvider", {"threads": 2})]}, "options are"),
        ({"providers": ["CPUExecutionProvider"], "provider_options": [{"x": 1}]}, "no effect"),
        ({"providers": ["RknpuExecutionProvider"], "provider_options": [{}, {}]}, "2 entries"),
        ({"sess_options": object()}, "no session options"),
    ):
        with pytest.raises(ValueError, match=message):
            rkort.InferenceSession(model.to_bytes(), **kwargs)


def test_cores_option_runs_concurrent_calls_in_parallel(rt, monkeypatch) -> None:
    monkeypatch.setenv("RKRT_SOC", "rk3588")
    model = mlp()
    x = inputs_for(model)[0]
    rt.set_run_delay(5_000)
    options = [{"cores": ["CORE_0", "CORE_1", "CORE_2"]}]
    with rkort.InferenceSession(model.to_bytes(), providers=["RknpuExecutionProvider"],
                                provider_options=options) as sess:  # fmt: skip

        def calls() -> None:
            for _ in range(4):
                sess.run(None, {"input": x})

        threads = [threading.Thread(target=calls) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sess.get_provider_options()["RknpuExecutionProvider"]["cores"]
    assert rt.max_parallel_runs() >= 2 and rt.counter("concurrent") == 0


def test_run_async_calls_back_with_outputs_or_the_error(rt) -> None:
    model = mlp()
    x = inputs_for(model)[0]
    got: list = []
    done = threading.Event()

    def callback(outputs, user_data, error):
        got.append((outputs, user_data, error))
        if len(got) == 2:
            done.set()

    with rkort.InferenceSession(model.to_bytes()) as sess:
        sess.run_async(["output"], {"input": x}, callback, "first")
        sess.run_async(None, {"input": x.astype(np.float64)}, callback, "second")
        assert done.wait(5)
    by_tag = {tag: (outputs, error) for outputs, tag, error in got}
    np.testing.assert_allclose(by_tag["first"][0][0], model.reference(x)[0], rtol=2e-2, atol=2e-3)
    assert by_tag["first"][1] == "" and by_tag["second"][0] is None
    assert "float64" in by_tag["second"][1]
