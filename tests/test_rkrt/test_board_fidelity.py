"""What a board punishes and a lenient double would hide: hidden input copies, stale caches,
padded native layouts, a caller waiting behind a busy context, unzeroed runtime memory.

Each test here kills a bug that once survived the whole suite (scripts/mutate.py plants them).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from fake_rknnrt import Dense, FakeModel, ImageLayout
from rkrt_support import inputs_for, mlp, tolerance

import rkrt
from rkrt._ffi import enum, ffi
from rkrt.errors import ShapeError

TYPES = enum("rknn_tensor_type")
FORMATS = enum("rknn_tensor_format")
SYNC = enum("rknn_mem_sync_mode")
TO_DEVICE, FROM_DEVICE = SYNC["RKNN_MEMORY_SYNC_TO_DEVICE"], SYNC["RKNN_MEMORY_SYNC_FROM_DEVICE"]


def _address(mem) -> int:
    return int(ffi.cast("uintptr_t", mem))


# ---- 1. inputs reach the runtime in the caller's buffer and dtype, on every call form ----


def _two_input_model() -> FakeModel:
    return mlp((6, 16, 3), inputs=[("a", 4), ("b", 2)])


@pytest.mark.parametrize("form", ["positional", "list", "dict"])
def test_float16_inputs_arrive_as_float16_without_a_copy(rt, form: str) -> None:
    model = _two_input_model()
    a, b = (x.astype(np.float16) for x in inputs_for(model))
    args = {"positional": (a, b), "list": ([a, b],), "dict": ({"a": a, "b": b},)}[form]
    with rkrt.Session(model.to_bytes()) as s:
        for _ in range(2):  # the first call and the cached one
            (y,) = s.run(*args)
            for index, x in enumerate((a, b)):
                seen = rt.last_input(index)
                assert seen["type"] == TYPES["RKNN_TENSOR_FLOAT16"], (form, index, seen)
                assert seen["size"] == x.nbytes, (form, index, seen)
                assert seen["buf"] == x.ctypes.data, f"{form}: input {index} was copied"
                assert seen["pass_through"] == 0
    np.testing.assert_allclose(y, model.reference(a, b)[0], **tolerance("float16"))


# ---- 2. out= arrays are checked again when reshaped in place ----


def test_out_array_reshaped_in_place_after_a_call_is_refused(rt) -> None:
    model = mlp((4, 8, 6), batch_sizes=(2,))
    (x,) = inputs_for(model)
    with rkrt.Session(model.to_bytes()) as s:
        y = np.empty((2, 6), np.float32)
        s.run(x, out=[y])
        y.shape = (3, 4)  # same bytes, same object, still C-contiguous: only the shape differs
        with pytest.raises(ShapeError, match=r"\(3, 4\), expected \(2, 6\)"):
            s.run(x, out=[y])
        y.shape = (2, 6)
        s.run(x, out=[y])
        np.testing.assert_allclose(y, model.reference(x)[0], **tolerance("float16"))


# ---- 3. zero-copy: inputs flushed TO_DEVICE before each run, outputs FROM_DEVICE after ----


def test_binding_syncs_inputs_to_device_and_outputs_from_device(rt) -> None:
    model = _two_input_model()
    runs = 3
    with rkrt.Session(model.to_bytes()) as s, s.bind() as io:
        for k in range(runs):
            xs = inputs_for(model, seed=k)
            for view, x in zip(io.inputs, xs):
                view[...] = x
            io.run()
            # Read only after the run's FROM_DEVICE sync: the values are this run's.
            np.testing.assert_allclose(io.outputs[0], model.reference(*xs)[0],
                                       **tolerance("float16"))  # fmt: skip
        for mem in io._in_mems:
            info = rt.mem_info(_address(mem))
            assert info["last_sync"] == TO_DEVICE and info["syncs_to_device"] == runs, info
            assert info["syncs_from_device"] == 0, info
        for mem in io._out_mems:
            info = rt.mem_info(_address(mem))
            assert info["last_sync"] == FROM_DEVICE and info["syncs_from_device"] == runs, info
            assert info["syncs_to_device"] == 0 and info["unread_output"] == 0, info
    assert rt.counter("sync_direction") == rt.counter("sync_order") == 0


def test_double_counts_syncs_in_the_wrong_direction_or_order(rt) -> None:
    """The counters the test above relies on see each mistake a board would punish."""
    model = mlp((4, 8, 3))
    with rkrt.Session(model.to_bytes()) as s, s.bind() as io:
        handle, sync = s.handle, s._context.runtime.symbol("rknn_mem_sync")
        (mem_in,), (mem_out,) = io._in_mems, io._out_mems
        assert sync(handle, mem_out, FROM_DEVICE) == 0  # before any run wrote it
        assert rt.counter("sync_order") == 1
        assert s._context.runtime.lib.rknn_run(handle, ffi.NULL) == 0  # input never flushed
        assert rt.counter("sync_order") == 2
        assert rt.mem_info(_address(mem_out))["unread_output"] == 1
        assert sync(handle, mem_in, FROM_DEVICE) == 0
        assert sync(handle, mem_out, TO_DEVICE) == 0
        assert rt.counter("sync_direction") == 2
        io.run()  # the binding itself does it right
        assert rt.counter("sync_direction") == 2 and rt.counter("sync_order") == 2
    rt.reset()


# ---- 4./5. native layouts that differ from the plain one: padded rows, other formats ----

LAYOUTS = {
    # same format and dims as the plain attr: only the padded row pitch differs
    "nhwc-padded": ImageLayout(3, 4, 5, fmt="NHWC", native_fmt="NHWC", w_stride=8),
    # a cube: NCHW and NHWC dims coincide, only the format differs
    "nchw-as-nhwc": ImageLayout(4, 4, 4, fmt="NCHW", native_fmt="NHWC", w_stride=4),
    "nchw-as-nhwc-padded": ImageLayout(3, 4, 5, fmt="NCHW", native_fmt="NHWC", w_stride=16),
    "nchw-as-nc1hwc2": ImageLayout(3, 4, 5, fmt="NCHW", native_fmt="NC1HWC2", w_stride=8, c2=8),
    "nhwc-unpadded": ImageLayout(3, 4, 8, fmt="NHWC", native_fmt="NHWC", w_stride=8),
}


def _image_model(layout: ImageLayout) -> FakeModel:
    rng = np.random.default_rng(3)
    n = layout.c * layout.h * layout.w
    w = rng.normal(0, 1 / np.sqrt(n), (n, 3)).astype(np.float32)
    return FakeModel([Dense(w, np.zeros(3, np.float32))], input_layouts=[layout])


def _image(layout: ImageLayout, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=layout.shape(1)).astype(np.float32)


@pytest.mark.parametrize("input_dtype", [None, np.float32], ids=["native", "float32"])
@pytest.mark.parametrize("name", LAYOUTS)
def test_zero_copy_image_input_is_read_as_the_caller_wrote_it(rt, name, input_dtype) -> None:
    layout = LAYOUTS[name]
    model = _image_model(layout)
    with rkrt.Session(model.to_bytes()) as s, s.bind(input_dtype=input_dtype) as io:
        assert io.inputs[0].shape == layout.shape(1)
        for seed in range(2):
            x = _image(layout, seed)
            io.inputs[0][...] = x
            io.run()
            np.testing.assert_allclose(io.outputs[0], model.reference(x)[0],
                                       **tolerance("float16"))  # fmt: skip


@pytest.mark.parametrize("name", LAYOUTS)
def test_general_api_image_input_matches_the_reference(rt, name) -> None:
    layout = LAYOUTS[name]
    model = _image_model(layout)
    x = _image(layout)
    with rkrt.Session(model.to_bytes()) as s:
        assert s.inputs[0].shape == layout.shape(1) and s.inputs[0].format == layout.fmt
        (y,) = s.run(x)
        assert rt.last_input(0)["fmt"] == FORMATS[f"RKNN_TENSOR_{layout.fmt}"]
    np.testing.assert_allclose(y, model.reference(x)[0], **tolerance("float16"))


def _native_bytes(layout: ImageLayout, x: np.ndarray) -> np.ndarray:
    """x (plain shape, batch 1) laid out as the native attr says, padding left 0."""
    chw = x[0] if layout.fmt == "NCHW" else x[0].transpose(2, 0, 1)
    c, h, w = chw.shape
    if layout.native_fmt == "NCHW":
        return chw.copy()
    if layout.native_fmt == "NHWC":
        out = np.zeros((h, layout.w_stride or w, c), x.dtype)
        out[:, :w, :] = chw.transpose(1, 2, 0)
        return out
    c2 = layout.c2
    out = np.zeros((-(-c // c2), h, layout.w_stride or w, c2), x.dtype)
    for k in range(c):
        out[k // c2, :, :w, k % c2] = chw[k]
    return out


@pytest.mark.parametrize("name", LAYOUTS)
def test_native_attrs_describe_the_layout_the_double_reads(rt, name) -> None:
    """pass_through=1 takes native bytes: written as NATIVE_INPUT_ATTR describes them (numpy
    layout code independent of the double), they give the reference result."""
    layout = LAYOUTS[name]
    model = _image_model(layout)
    x = _image(layout).astype(np.float16)
    native = _native_bytes(layout, x)
    with rkrt.Session(model.to_bytes()) as s:
        lib, handle = s._context.runtime.lib, s.handle
        attr = ffi.new("rknn_tensor_attr*")
        q = enum("rknn_query_cmd")["RKNN_QUERY_NATIVE_INPUT_ATTR"]
        assert lib.rknn_query(handle, q, attr, ffi.sizeof(attr[0])) == 0
        assert attr.fmt == FORMATS[f"RKNN_TENSOR_{layout.native_fmt}"]
        dims = [attr.dims[k] for k in range(1, attr.n_dims)]
        if layout.native_fmt != "NCHW":  # dims say W; the rows hold w_stride pixels
            assert attr.w_stride == native.shape[-2]
            dims[-2] = attr.w_stride
        assert tuple(dims) == native.shape
        assert attr.size_with_stride >= native.nbytes
        inp = ffi.new("rknn_input*")
        inp.index, inp.pass_through = 0, 1
        inp.buf, inp.size = ffi.from_buffer(native), native.nbytes
        assert lib.rknn_inputs_set(handle, 1, inp) == 0
        assert lib.rknn_run(handle, ffi.NULL) == 0
        y = np.empty((1, 3), np.float32)
        out = ffi.new("rknn_output*")
        out.want_float, out.is_prealloc, out.buf, out.size = 1, 1, ffi.from_buffer(y), y.nbytes
        assert lib.rknn_outputs_get(handle, 1, out, ffi.NULL) == 0
    np.testing.assert_allclose(y, model.reference(x.astype(np.float32))[0],
                               **tolerance("float16"))  # fmt: skip


@pytest.mark.parametrize("field,value", [("w_stride", 4), ("c", 4), ("c2", 0), ("c2", 65)])
def test_malformed_image_layouts_are_refused_at_init(rt, field: str, value: int) -> None:
    layout = ImageLayout(3, 4, 5, native_fmt="NC1HWC2", w_stride=8, c2=8)
    model = _image_model(layout)
    object.__setattr__(layout, field, value)  # past ImageLayout's own checks, into the bytes
    with pytest.raises(rkrt.RKNNError) as exc:
        rkrt.Session(model.to_bytes())
    assert exc.value.symbol == "RKNN_ERR_MODEL_INVALID"
    assert "input layout" in rt.last_error()


# ---- 6. Pool: a call goes to an idle context, never waits behind a busy one ----


def test_pool_sends_work_to_an_idle_context_not_behind_a_busy_one(rt) -> None:
    model = mlp((4, 8, 3))
    (x,) = inputs_for(model)
    busy_s = 2.0
    with rkrt.Pool(model.to_bytes(), cores=["CORE_0", "CORE_1"], soc="rk3588") as pool:
        rt.set_run_delay(int(busy_s * 1e6))
        slow = pool.submit(x)
        deadline = time.monotonic() + busy_s
        while rt.runs_in_flight() < 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert rt.runs_in_flight() == 1, "the slow run did not start"
        rt.set_run_delay(0)  # the slow run keeps the delay it read
        pool.submit(x).result(timeout=busy_s)  # the other context
        start = time.monotonic()
        quick = pool.submit(x).result(timeout=10 * busy_s)
        waited = time.monotonic() - start
        # One context is idle: this call must not have queued behind the busy one.
        assert not slow.done(), "the busy context finished first: the call waited behind it"
        assert waited < busy_s / 2, waited
        np.testing.assert_allclose(quick[0], slow.result()[0], rtol=0, atol=0)


# ---- 7. runtime memory is not zeroed: whatever rkrt reads it must have written ----


def test_new_runtime_memory_is_not_zero(rt) -> None:
    model = mlp((4, 8, 3))
    with rkrt.Session(model.to_bytes()) as s:
        runtime, handle = s._context.runtime, s.handle
        mem = runtime.symbol("rknn_create_mem")(handle, 64)
        try:
            data = np.frombuffer(ffi.buffer(mem.virt_addr, 64), np.float16)
            assert np.isnan(data).all()
        finally:
            assert runtime.symbol("rknn_destroy_mem")(handle, mem) == 0


@pytest.mark.parametrize("k", [5, 33])
def test_matmul_padding_of_a_is_written_by_rkrt(rt, k: int) -> None:
    """K is padded to 32: the padding of A lives in runtime memory, which need not be zero."""
    rng = np.random.default_rng(k)
    a = rng.normal(size=(4, k)).astype(np.float16)
    b = rng.normal(size=(k, 7)).astype(np.float16)
    with rkrt.MatMul(4, k, 7) as mm:
        mm.set_b(b)
        c = mm.run(a)
    assert np.isfinite(c).all()
    np.testing.assert_allclose(c, a.astype(np.float32) @ b.astype(np.float32), rtol=1e-3,
                               atol=1e-3)  # fmt: skip


# ---- 8. softmax on the matmul path: large logits must not overflow ----


def test_weights_mlp_softmax_survives_logits_above_float32_exp_range(rt, tmp_path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from emit.weights import export_weights
    from rkrt.weights_mlp import from_weights

    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=500, random_state=0).fit(X, y)
    # exp() of a float32 logit above ~88.7 is inf: scale the last layer far past that.
    clf.coefs_[-1] *= 200.0
    clf.intercepts_[-1] *= 200.0
    with from_weights(export_weights(clf, tmp_path / "big.npz")) as npu:
        logits = X @ clf.coefs_[0] + clf.intercepts_[0]
        assert np.abs(np.maximum(logits, 0) @ clf.coefs_[1] + clf.intercepts_[1]).max() > 100
        proba = npu.predict_proba(X)
        assert np.isfinite(proba).all()
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
        labels = npu.predict(X)
    ref = clf.predict_proba(X)
    top = np.sort(ref, axis=1)
    clear = top[:, -1] - top[:, -2] > 0.05
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(labels[clear], clf.predict(X)[clear])
    assert len(set(labels)) == 3  # not collapsed to one class
