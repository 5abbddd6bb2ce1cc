"""Zero-copy IO: Session.bind() and IOBinding."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from rkrt_support import NO_LEAKS, inputs_for, mlp, python_allocations, tolerance

import rkrt


def quantize(x: np.ndarray, spec: rkrt.TensorSpec) -> np.ndarray:
    return np.clip(np.rint(x / spec.scale) + spec.zero_point, -128, 127).astype(np.int8)


@pytest.mark.parametrize("model_dtype", ["float32", "float16", "int8"])
def test_default_binding_native_inputs_float32_outputs(rt, model_dtype: str) -> None:
    """Finding 6: inputs were bound as FLOAT32 for the runtime to convert, which no official
    demo does; by default they are the tensor's native type (numpy converts on assignment),
    outputs float32 converted by the runtime as rknn_create_mem_demo.cpp binds them."""
    model = mlp((4, 16, 3), dtype=model_dtype)
    with rkrt.Session(model.to_bytes()) as s, s.bind() as b:
        spec = s.inputs[0]
        assert b.inputs[0].dtype == spec.dtype == np.dtype(model_dtype)
        assert b.outputs[0].dtype == np.float32 and b.outputs[0].shape == (1, 3)
        for seed in range(3):
            x = inputs_for(model, seed=seed)[0]
            if model_dtype == "int8":
                b.inputs[0][...] = quantize(x, spec)
                x = (quantize(x, spec).astype(np.float32) - spec.zero_point) * spec.scale
            else:
                b.inputs[0][...] = x  # float16: numpy rounds as the runtime would
            b.run()
            np.testing.assert_allclose(b.outputs[0], model.reference(x)[0],
                                       **tolerance(model_dtype))  # fmt: skip
    assert rt.counter("unsafe") == 0


@pytest.mark.parametrize("model_dtype", ["float32", "float16", "int8"])
def test_float32_inputs_converted_by_the_runtime_are_an_opt_in(rt, model_dtype: str) -> None:
    model = mlp((4, 16, 3), dtype=model_dtype)
    with rkrt.Session(model.to_bytes()) as s, s.bind(input_dtype=np.float32) as b:
        assert b.inputs[0].dtype == np.float32 and b.inputs[0].shape == (1, 4)
        for seed in range(3):
            x = inputs_for(model, seed=seed)[0]
            b.inputs[0][...] = x
            b.run()
            want = model.reference(x)[0]
            np.testing.assert_allclose(b.outputs[0], want, **tolerance(model_dtype))
    assert rt.counter("unsafe") == 0


def test_native_float16_buffers_need_no_conversion(rt) -> None:
    model = mlp(dtype="float16")
    x = inputs_for(model)[0]
    with rkrt.Session(model.to_bytes()) as s, s.bind(input_dtype=None, output_dtype=None) as b:
        assert b.inputs[0].dtype == np.float16 and b.outputs[0].dtype == np.float16
        b.inputs[0][...] = x.astype(np.float16)
        b.run()
        np.testing.assert_allclose(b.outputs[0].astype(np.float32), model.reference(x)[0],
                                   **tolerance("float16"))  # fmt: skip


def test_buffers_come_from_native_attrs_and_are_freed(rt) -> None:
    model = mlp((5, 8, 3), inputs=[("a", 2), ("b", 3)], outputs=[("p", 1), ("q", 2)])
    with rkrt.Session(model.to_bytes()) as s:
        b = s.bind()
        assert rt.live()["mems"] == 4
        assert rt.calls("rknn_create_mem") == 4 and rt.calls("rknn_set_io_mem") == 4
        b.close()
        b.close()
        assert rt.live()["mems"] == 0 and rt.calls("rknn_destroy_mem") == 4
        assert b.closed and b.inputs == () and "closed" in repr(b)
        with pytest.raises(rkrt.ClosedError):
            b.run()


def test_session_close_frees_the_binding_before_the_context(rt) -> None:
    s = rkrt.Session(mlp().to_bytes())
    b = s.bind()
    s.close()
    assert rt.live() == NO_LEAKS and b.closed
    b.close()  # nothing left to free: no double free
    assert rt.calls("rknn_destroy_mem") == 2 and rt.counter("bad_pointer") == 0


def test_garbage_collection_frees_mems_and_context(rt) -> None:
    s = rkrt.Session(mlp().to_bytes())
    b = s.bind()
    b.run()
    del s, b
    gc.collect()
    assert rt.live() == NO_LEAKS


def test_loop_syncs_around_run_and_allocates_nothing(rt) -> None:
    model = mlp()
    x = inputs_for(model)[0]
    with rkrt.Session(model.to_bytes()) as s, s.bind() as b:
        inp, out, run = b.inputs[0], b.outputs, b.run

        def step() -> np.ndarray:
            inp[...] = x
            run()
            return out[0]

        kept, peak = python_allocations(step)
        # Nothing kept, and nothing big even transiently (the loop's own ints stay below 1 KiB).
        assert kept < 256 and peak < 1024
        np.testing.assert_allclose(out[0], model.reference(x)[0], **tolerance("float16"))
    assert rt.calls("rknn_mem_sync") == 2 * 2100
    assert rt.calls("rknn_inputs_set") == rt.calls("rknn_outputs_get") == 0


def test_general_and_zero_copy_never_mix(rt) -> None:
    model = mlp()
    x = inputs_for(model)[0]
    with rkrt.Session(model.to_bytes()) as s:
        s.run(x)
        with pytest.raises(RuntimeError, match=r"dup\(\)\.bind\(\)"):
            s.bind()
    with rkrt.Session(model.to_bytes()) as s:
        b = s.bind()
        with pytest.raises(RuntimeError, match="bound for zero-copy"):
            s.run(x)
        with pytest.raises(RuntimeError, match="already bound"):
            s.bind()
        b.close()
        with pytest.raises(RuntimeError, match="bound for zero-copy"):
            s.run(x)
        with s.dup() as d:
            np.testing.assert_allclose(d.run(x)[0], model.reference(x)[0], **tolerance("float16"))
        b2 = s.bind()  # a context that is zero-copy may be bound again
        b2.run()
    assert rt.counter("mixed_api") == 0


def test_bad_buffer_dtype_is_refused_before_c(rt) -> None:
    with rkrt.Session(mlp(dtype="float16").to_bytes()) as s:
        calls = rt.total_calls()
        with pytest.raises(rkrt.DTypeError, match="float32 or as its native float16"):
            s.bind(input_dtype=np.int8)
        assert rt.total_calls() == calls
        s.bind().close()  # the refused bind left the session usable


def test_dynamic_shapes_allocate_the_largest_and_rebind(rt) -> None:
    model = mlp(batch_sizes=(1, 16, 4))
    with rkrt.Session(model.to_bytes()) as s, s.bind() as b:
        assert rt.live()["mems"] == 2
        assert b.inputs[0].shape == (1, 4)
        for batch in (16, 4, 1, 16):
            b.set_input_shapes((batch, 4))
            x = inputs_for(model, batch=batch, seed=batch)[0]
            b.inputs[0][...] = x
            b.run()
            assert b.outputs[0].shape == (batch, 3)
            np.testing.assert_allclose(b.outputs[0], model.reference(x)[0], **tolerance("float16"))
        assert rt.calls("rknn_create_mem") == 2  # never reallocated
        with pytest.raises(rkrt.ShapeError, match="accepts"):
            b.set_input_shapes((3, 4))
    assert rt.counter("unsafe") == 0


@pytest.mark.parametrize("function", ["rknn_create_mem", "rknn_set_io_mem"])
def test_failed_bind_frees_what_it_made(rt, function: str) -> None:
    with rkrt.Session(mlp().to_bytes()) as s:
        rt.inject(function, nth=2, code=-4)
        with pytest.raises(rkrt.RKNNError, match=function):
            s.bind()
        assert rt.live()["mems"] == 0


@pytest.mark.parametrize("function", ["rknn_mem_sync", "rknn_run"])
def test_run_errors_carry_the_function(rt, function: str) -> None:
    with rkrt.Session(mlp().to_bytes()) as s, s.bind() as b:
        rt.inject(function, code=-2)
        with pytest.raises(rkrt.RKNNError) as info:
            b.run()
        assert (info.value.function, info.value.symbol) == (function, "RKNN_ERR_TIMEOUT")
        b.run()


def test_padded_native_rows_keep_the_runtimes_w_stride(rt) -> None:
    """Finding 6: a padded native 4-D input was re-bound in the plain layout with
    w_stride = 0; now the native attr goes to the runtime as queried and the view steps over
    the padding (numpy writes the logical image into the padded rows)."""
    from fake_rknnrt import Dense, FakeModel, ImageLayout

    layout = ImageLayout(3, 4, 5, fmt="NHWC", native_fmt="NHWC", w_stride=8)
    w = np.random.default_rng(0).normal(0, 0.1, (60, 3)).astype(np.float32)
    model = FakeModel([Dense(w, np.zeros(3, np.float32))], dtype="float16", input_layouts=[layout])
    x = np.random.default_rng(1).normal(size=layout.shape(1)).astype(np.float32)
    with rkrt.Session(model.to_bytes()) as s, s.bind() as b:
        view = b.inputs[0]
        assert view.shape == (1, 4, 5, 3) and view.dtype == np.float16
        assert view.strides[1] == 8 * 3 * 2  # a row holds w_stride pixels
        b.inputs[0][...] = x
        b.run()
        np.testing.assert_allclose(b.outputs[0], model.reference(x)[0], **tolerance("float16"))
