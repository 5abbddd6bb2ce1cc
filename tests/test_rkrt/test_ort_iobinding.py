"""rkrt.ort's IOBinding and OrtValue: an onnxruntime program that binds its inputs and
preallocates its outputs runs on the NPU with only its import changed."""

from __future__ import annotations

import numpy as np
import pytest
from rkrt_support import inputs_for, mlp, tolerance
from test_ort import run_both

import rkrt
import rkrt.ort as rkort

# onnxruntime's IOBinding idioms: bind by reference, read copies, then a preallocated loop.
PROGRAM = """
import numpy as np
import onnxruntime as ort

def main(path, rows):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
    rng = np.random.default_rng(3)
    x = rng.normal(size=(rows, inp.shape[1])).astype(np.float32)
    io = sess.io_binding()
    io.bind_cpu_input(inp.name, x)
    io.bind_output(out.name)
    sess.run_with_iobinding(io)
    (first,) = io.copy_outputs_to_cpu()
    x[:] = rng.normal(size=x.shape)  # bound by reference: the next run reads the new values
    sess.run_with_iobinding(io)
    (second,) = io.copy_outputs_to_cpu()
    x_value = ort.OrtValue.ortvalue_from_numpy(np.zeros_like(x))
    y_value = ort.OrtValue.ortvalue_from_shape_and_type(out.shape, np.float32)
    io.bind_ortvalue_input(inp.name, x_value)
    io.bind_ortvalue_output(out.name, y_value)
    loop = []
    for step in range(3):
        x_value.update_inplace((x * (step + 1)).astype(np.float32))
        io.synchronize_inputs()
        sess.run_with_iobinding(io)
        io.synchronize_outputs()
        loop.append(y_value.numpy().copy())
    (held,) = io.get_outputs()
    described = [y_value.shape(), y_value.data_type(), y_value.element_type(),
                 y_value.device_name(), held.shape(), held.data_ptr() == y_value.data_ptr()]
    (as_value,) = sess.run_with_ort_values([out.name], {inp.name: x_value})
    loop.append(as_value.numpy())
    return first, second, loop, described
"""


def test_an_io_binding_program_runs_unchanged_but_for_the_import(rt, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    model = mlp(dtype="float32", batch_sizes=(5,))
    on_onnx, on_rkrt = run_both(PROGRAM, model, tmp_path, 5)
    first1, second1, loop1, desc_onnx = on_onnx
    first2, second2, loop2, desc_rkrt = on_rkrt
    close = tolerance("float32")
    np.testing.assert_allclose(first2, first1, **close)
    np.testing.assert_allclose(second2, second1, **close)
    assert not np.allclose(second2, first2)  # the in-place change reached the run
    for y2, y1 in zip(loop2, loop1, strict=True):
        np.testing.assert_allclose(y2, y1, **close)
    assert desc_rkrt == desc_onnx


def test_outputs_bound_to_ortvalues_are_handed_to_the_runtime(rt, monkeypatch) -> None:
    model = mlp(batch_sizes=(2,), outputs=[("a", 2), ("b", 1)])
    x = inputs_for(model)[0]
    handed: list = []
    real_run = rkrt.Session.run

    def spy(session, *arrays, out=None):
        handed.append(out)
        return real_run(session, *arrays, out=out)

    monkeypatch.setattr(rkrt.Session, "run", spy)
    with rkort.InferenceSession(model.to_bytes()) as sess:
        expected = sess.run(None, {"input": x})
        a = rkort.OrtValue.ortvalue_from_shape_and_type([2, 2], np.float32)
        b = rkort.OrtValue.ortvalue_from_shape_and_type([2, 1], 1)  # onnx's code for float
        io = sess.io_binding()
        io.bind_cpu_input("input", x)
        io.bind_ortvalue_output("b", b)  # bound out of model order
        io.bind_ortvalue_output("a", a)
        sess.run_with_iobinding(io)
        assert [y is v.numpy() for y, v in zip(handed[-1], (a, b))] == [True, True]
        got = io.get_outputs()
        assert got[0] is b and got[1] is a  # in the order they were bound
        np.testing.assert_array_equal(a.numpy(), expected[0])
        np.testing.assert_array_equal(b.numpy(), expected[1])

        # One output into an OrtValue, the other new each run: the run returns new arrays and
        # the bound one is filled from them.
        a.numpy()[...] = 0
        io.clear_binding_outputs()
        assert io.get_outputs() == []
        io.bind_ortvalue_output("a", a)
        io.bind_output("b", element_type=np.float32, shape=[2, 1])
        sess.run_with_iobinding(io)
        assert handed[-1] is None
        got_a, got_b = io.get_outputs()
        assert got_a is a
        np.testing.assert_array_equal(a.numpy(), expected[0])
        np.testing.assert_array_equal(got_b.numpy(), expected[1])
        copies = io.copy_outputs_to_cpu()
        copies[1][...] = -1
        np.testing.assert_array_equal(io.get_outputs()[1].numpy(), expected[1])
        io.bind_ortvalue_output("a", rkort.OrtValue.ortvalue_from_shape_and_type([1, 2], 1))
        with pytest.raises(rkort.InvalidArgument, match=r"shape \[1, 2\].*\[2, 2\]") as err:
            sess.run_with_iobinding(io)
        assert isinstance(err.value, rkrt.ShapeError)


def test_binding_errors_name_what_is_wrong(rt) -> None:
    model = mlp(batch_sizes=(2,))
    x = inputs_for(model)[0]
    with (
        rkort.InferenceSession(model.to_bytes()) as sess,
        rkort.InferenceSession(model.to_bytes()) as other,
    ):
        io = sess.io_binding()
        with pytest.raises(rkort.InvalidArgument, match=r"unknown input name 'x'.*\['input'\]"):
            io.bind_cpu_input("x", x)
        with pytest.raises(rkort.InvalidArgument, match=r"unknown output name 'y'.*\['output'\]"):
            io.bind_output("y")
        with pytest.raises(rkort.InvalidArgument, match="device 'cuda' 0"):
            io.bind_output("output", "cuda")
        with pytest.raises(rkort.InvalidArgument, match="raw pointer"):
            io.bind_output("output", buffer_ptr=x.ctypes.data)
        with pytest.raises(rkort.InvalidArgument, match="raw pointer"):
            io.bind_input("input", "cpu", 0, np.float32, [2, 4], x.ctypes.data)
        with pytest.raises(rkort.InvalidArgument, match="float32 in rkrt.ort, not float16"):
            io.bind_output("output", element_type=np.float16)
        f64 = rkort.OrtValue.ortvalue_from_numpy(np.zeros((2, 3)))
        with pytest.raises(rkort.InvalidArgument, match="OrtValue of float64"):
            io.bind_ortvalue_output("output", f64)
        frozen = np.zeros((2, 3), np.float32)
        frozen.flags.writeable = False
        with pytest.raises(rkort.InvalidArgument, match="read-only"):
            io.bind_ortvalue_output("output", rkort.OrtValue.ortvalue_from_numpy(frozen))
        with pytest.raises(TypeError, match="rkrt.ort.OrtValue, not numpy.ndarray"):
            io.bind_ortvalue_input("input", x)
        with pytest.raises(TypeError, match=r"OrtValue inputs, got \['ndarray'\]"):
            sess.run_with_ort_values(None, {"input": x})
        assert io.get_outputs() == []  # nothing was bound by a call that raised

        with pytest.raises(rkort.InvalidArgument, match=r"inputs \['input'\] are not bound"):
            sess.run_with_iobinding(io)
        io.bind_cpu_input("input", x)
        with pytest.raises(rkort.InvalidArgument, match="at least one output"):
            sess.run_with_iobinding(io)
        io.bind_output("output", shape=[1, 3])
        with pytest.raises(rkrt.ShapeError, match=r"bound with shape \[1, 3\].*\[2, 3\]") as err:
            sess.run_with_iobinding(io)
        assert isinstance(err.value, rkort.InvalidArgument)
        io.bind_ortvalue_output("output", rkort.OrtValue.ortvalue_from_shape_and_type([1, 3], 1))
        with pytest.raises(rkort.InvalidArgument) as err:
            sess.run_with_iobinding(io)
        assert isinstance(err.value, rkrt.ShapeError)
        io.bind_output("output")
        with pytest.raises(rkort.InvalidArgument, match="made by this session"):
            other.run_with_iobinding(io)
        io.bind_cpu_input("input", x.astype(np.float64))
        with pytest.raises(rkort.InvalidArgument, match="float64") as err:
            sess.run_with_iobinding(io)
        assert isinstance(err.value, rkrt.DTypeError)

        io.bind_cpu_input("input", x)
        stop = rkort.RunOptions()
        stop.terminate = True
        runs = rt.calls("rknn_run")
        with pytest.raises(rkort.Fail, match="terminate flag"):
            sess.run_with_iobinding(io, stop)
        assert rt.calls("rknn_run") == runs
        sess.run_with_iobinding(io)
        assert rt.calls("rknn_run") == runs + 1
        np.testing.assert_array_equal(io.copy_outputs_to_cpu()[0], sess.run(None, {"input": x})[0])


def test_update_inplace_refuses_what_onnxruntime_would_copy_unconverted() -> None:
    target = np.zeros((2, 2), np.float32)
    value = rkort.OrtValue.ortvalue_from_numpy(target)
    value.update_inplace(np.arange(4, dtype=np.float32))  # same dtype and size: any shape
    np.testing.assert_array_equal(target, [[0, 1], [2, 3]])
    with pytest.raises(rkort.InvalidArgument, match="4 elements of float64.*astype"):
        value.update_inplace(np.ones(4))
    with pytest.raises(rkort.InvalidArgument, match="3 elements of float32"):
        value.update_inplace(np.ones(3, np.float32))
    np.testing.assert_array_equal(target, [[0, 1], [2, 3]])


@pytest.mark.parametrize(
    "dtype", ["float32", "float16", "float64", "int8", "uint8", "int16", "int32", "int64", "bool"]
)
def test_ortvalue_describes_and_shares_memory_as_onnxruntime_does(dtype) -> None:
    ort = pytest.importorskip("onnxruntime")
    a = np.zeros((2, 3), dtype)
    mine, theirs = rkort.OrtValue.ortvalue_from_numpy(a), ort.OrtValue.ortvalue_from_numpy(a)
    for method in ("shape", "data_type", "element_type", "device_name", "tensor_size_in_bytes",
                   "has_value", "is_tensor", "is_sparse_tensor", "is_tensor_sequence"):  # fmt: skip
        assert getattr(mine, method)() == getattr(theirs, method)(), method
    assert mine.data_ptr() == a.ctypes.data
    a[0, 0] = 1
    assert mine.numpy()[0, 0] == theirs.numpy()[0, 0] == 1  # both wrap the caller's memory
    code = theirs.element_type()
    made = rkort.OrtValue.ortvalue_from_shape_and_type([3, 2], code)
    assert made.data_type() == ort.OrtValue.ortvalue_from_shape_and_type([3, 2], code).data_type()
    assert made.numpy().shape == (3, 2) and not made.numpy().any()


def test_ortvalue_copies_only_what_it_cannot_wrap() -> None:
    strided = np.ones((4, 2), np.float32).T
    value = rkort.OrtValue.ortvalue_from_numpy(strided)
    strided[0, 0] = 9
    assert value.numpy()[0, 0] == 1 and value.numpy().flags.c_contiguous
    with pytest.raises(TypeError, match="takes a numpy array, not list"):
        rkort.OrtValue.ortvalue_from_numpy([1.0, 2.0])
    with pytest.raises(rkort.InvalidArgument, match="device 'cuda' 0"):
        rkort.OrtValue.ortvalue_from_numpy(strided, "cuda")
    with pytest.raises(rkort.InvalidArgument, match="element type 99"):
        rkort.OrtValue.ortvalue_from_shape_and_type([2], 99)
