"""rkrt.ort: an onnxruntime program runs on the NPU with only its import changed."""

from __future__ import annotations

import enum
import threading

import numpy as np
import pytest
from rkrt_support import NO_LEAKS, inputs_for, mlp

import rkrt
import rkrt.ort as rkort

# An ordinary onnxruntime program: tune, open, describe, feed by name, read outputs and metadata.
PROGRAM = """
import numpy as np
import onnxruntime as ort

def main(path, rows):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    outs = [o.name for o in sess.get_outputs()]
    x = np.random.default_rng(7).normal(size=(rows, inp.shape[1])).astype(np.float32)
    run_options = ort.RunOptions()
    run_options.log_severity_level = 3
    (probs,) = sess.run(outs, {inp.name: x}, run_options)
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


def run_both(program: str, model, tmp_path, rows: int) -> tuple:
    """``program``'s results on onnxruntime (the model's ONNX twin) and on rkrt.ort (its
    .rknn), the latter with only the import line changed."""
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(_onnx_twin(model))
    rknn_path = model.save(tmp_path / "m.rknn")
    ported = program.replace(ONNX_IMPORT, RKRT_IMPORT)
    changed = [(a, b) for a, b in zip(program.splitlines(), ported.splitlines()) if a != b]
    assert changed == [(ONNX_IMPORT, RKRT_IMPORT)]
    return _run_program(program, str(onnx_path), rows), _run_program(ported, str(rknn_path), rows)


def test_an_onnxruntime_program_runs_unchanged_but_for_the_import(rt, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    model = mlp(dtype="float32", batch_sizes=(5,), custom_string="digits v1")
    on_onnx, on_rkrt = run_both(PROGRAM, model, tmp_path, 5)
    x1, y_onnx, again1, desc_onnx, meta_onnx = on_onnx
    x2, y_rkrt, again2, desc_rkrt, meta_rkrt = on_rkrt
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
        (out,) = sess.get_outputs()
        assert (out.name, out.shape, out.type) == ("output", [None, 3], "tensor(float16)")
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
        # A tuple for one input is that input's data, never the list of all inputs.
        with pytest.raises(rkort.InvalidArgument, match=r"given 'input' \(#0\) \(1, 1, 4\)"):
            sess.run(None, {"input": (np.zeros((1, 4), np.float32),)})
        with pytest.raises(rkort.InvalidArgument, match=r"unknown \['x'\], missing \['input'\]"):
            sess.run(None, {"x": np.zeros((1, 4), np.float32)})
        with pytest.raises(rkort.InvalidArgument, match=r"unknown \['x'\], missing \[\]"):
            sess.run(None, {"input": np.zeros((1, 4), np.float32), "x": None})
        with pytest.raises(rkort.InvalidArgument, match="unknown output names"):
            sess.run(["probs"], {"input": np.zeros((1, 4), np.float32)})
        with pytest.raises(TypeError, match="run_options must be rkrt.ort.RunOptions"):
            sess.run(None, {"input": np.zeros((1, 4), np.float32)}, run_options=object())
    for kwargs, message in (
        ({"providers": ["CUDAExecutionProvider"]}, "unknown providers"),
        ({"providers": [("RknpuExecutionProvider", {"threads": 2})]}, "options are"),
        ({"providers": ["CPUExecutionProvider"], "provider_options": [{"x": 1}]}, "no effect"),
        ({"providers": ["RknpuExecutionProvider"], "provider_options": [{}, {}]}, "2 entries"),
        ({"disabled_optimizers": ["x"]}, r"takes no \['disabled_optimizers'\]"),
    ):
        with pytest.raises(ValueError, match=message):
            rkort.InferenceSession(model.to_bytes(), **kwargs)
    with pytest.raises(TypeError, match="sess_options must be rkrt.ort.SessionOptions"):
        rkort.InferenceSession(model.to_bytes(), sess_options=object())


def test_options_have_onnxruntime_defaults_and_types() -> None:
    ort = pytest.importorskip("onnxruntime")
    for ours, theirs in ((rkort.SessionOptions(), ort.SessionOptions()),
                         (rkort.RunOptions(), ort.RunOptions())):  # fmt: skip
        fields = type(ours)._FIELDS
        assert set(fields) <= {n for n in dir(theirs) if not n.startswith("_")}
        for name in fields:
            mine, real = getattr(ours, name), getattr(theirs, name)
            if isinstance(mine, enum.Enum):  # onnxruntime's are pybind11 enums
                assert (type(mine).__name__, mine.name, int(mine)) == (
                    type(real).__name__, real.name, int(real)), name  # fmt: skip
                assert {m.name: m.value for m in type(mine)} == {
                    k: int(v) for k, v in type(real).__members__.items()
                }
            else:
                assert (type(mine), mine) == (type(real), real), name
    options = rkort.SessionOptions()
    with pytest.raises(AttributeError, match="did you mean 'intra_op_num_threads'"):
        options.intra_op_threads = 2  # a typo never passes silently
    with pytest.raises(AttributeError, match="no attribute 'threads'; its attributes are"):
        options.threads = 2
    with pytest.raises(TypeError, match="intra_op_num_threads takes an int, not str"):
        options.intra_op_num_threads = "2"
    with pytest.raises(TypeError, match="intra_op_num_threads takes an int, not float"):
        options.intra_op_num_threads = 2.0
    options.intra_op_num_threads = np.int64(4)  # what onnxruntime takes too
    assert type(options.intra_op_num_threads) is int and options.intra_op_num_threads == 4
    with pytest.raises(TypeError, match="enable_mem_pattern takes True or False, not 0"):
        options.enable_mem_pattern = 0
    options.enable_mem_pattern = np.bool_(False)
    assert options.enable_mem_pattern is False
    with pytest.raises(TypeError, match="logid takes a str, not int"):
        options.logid = 7
    with pytest.raises(TypeError, match="GraphOptimizationLevel member"):
        options.graph_optimization_level = 99
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(RuntimeError, match="does not have configuration with key: nope"):
        options.get_session_config_entry("nope")
    with pytest.raises(TypeError, match="two strings"):
        options.add_session_config_entry("k", 3)


def test_session_options_that_would_produce_something_raise(rt) -> None:
    model = mlp()
    for name, value, message in (
        ("enable_profiling", True, "collect_perf=True"),
        ("optimized_model_filepath", "opt.onnx", "already compiled"),
    ):
        options = rkort.SessionOptions()
        setattr(options, name, value)
        with pytest.raises(ValueError, match=message):
            rkort.InferenceSession(model.to_bytes(), sess_options=options)
    options = rkort.SessionOptions()
    options.intra_op_num_threads = 3
    with rkort.InferenceSession(model.to_bytes(), options) as sess:
        kept = sess.get_session_options()
        assert kept is not options and kept.intra_op_num_threads == 3
        options.intra_op_num_threads = 5  # the session keeps what it was opened with
        assert sess.get_session_options().intra_op_num_threads == 3


def test_terminate_stops_a_run_before_it_starts(rt) -> None:
    model = mlp()
    x = inputs_for(model)[0]
    with rkort.InferenceSession(model.to_bytes()) as sess:
        stop = rkort.RunOptions()
        stop.terminate = True
        runs = rt.calls("rknn_run")
        with pytest.raises(rkort.Fail, match="terminate flag"):
            sess.run(None, {"input": x}, stop)
        with pytest.raises(rkort.Fail, match="terminate flag"):
            sess.run_async(None, {"input": x}, lambda *a: None, None, stop)
        assert rt.calls("rknn_run") == runs
        stop.terminate = False
        (y,) = sess.run(None, {"input": x}, stop)
        assert rt.calls("rknn_run") == runs + 1 and y.shape == (1, 3)


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
        if len(got) == 3:
            done.set()

    with rkort.InferenceSession(model.to_bytes()) as sess:
        sess.run_async(["output"], {"input": x}, callback, "first")
        sess.run_async(None, {"input": x.astype(np.float64)}, callback, "second")
        sess.run_async(None, {"input": (x,)}, callback, "third")  # a tuple is one input's data
        assert done.wait(5)
    by_tag = {tag: (outputs, error) for outputs, tag, error in got}
    np.testing.assert_allclose(by_tag["first"][0][0], model.reference(x)[0], rtol=2e-2, atol=2e-3)
    assert by_tag["first"][1] == "" and by_tag["second"][0] is None
    assert "float64" in by_tag["second"][1]
    assert by_tag["third"][0] is None and "(1, 1, 4)" in by_tag["third"][1]


def test_a_closed_session_refuses_every_kind_of_run(rt, monkeypatch) -> None:
    monkeypatch.setenv("RKRT_SOC", "rk3588")
    model = mlp()
    x = inputs_for(model)[0]
    for cores in (["CORE_0"], ["CORE_0", "CORE_1"]):  # one context runs without the pool's queue
        sess = rkort.InferenceSession(
            model.to_bytes(), providers=[("RknpuExecutionProvider", {"cores": cores})]
        )
        io = sess.io_binding()
        io.bind_cpu_input("input", x)
        io.bind_output("output")
        sess.close()
        runs = rt.calls("rknn_run")
        with pytest.raises(rkrt.ClosedError):
            sess.run(None, {"input": x})
        with pytest.raises(rkrt.ClosedError):
            sess.run_with_iobinding(io)
        with pytest.raises(rkrt.ClosedError):
            sess.run_async(None, {"input": x}, lambda *a: None)
        assert rt.calls("rknn_run") == runs
    assert rt.live() == NO_LEAKS
