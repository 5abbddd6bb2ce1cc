"""rkrt.Session on the test-double runtime: opening, describing, running, closing."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
from rkrt_support import NO_LEAKS, inputs_for, library, mlp, tolerance

import rkrt
from rkrt._ffi import DEFINES, enum, ffi

NO_RENICE = DEFINES["RKNN_FLAG_DISABLE_PROC_HIGH_PRIORITY"]
PERF = DEFINES["RKNN_FLAG_COLLECT_PERF_MASK"]


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_run_matches_numpy_for_each_native_type(rt, dtype: str) -> None:
    model = mlp((6, 16, 4), dtype=dtype)
    x = inputs_for(model)[0]
    with rkrt.Session(model.to_bytes()) as s:
        (y,) = s.run(x)
        assert y.dtype == np.float32 and y.shape == (1, 4)
        np.testing.assert_allclose(y, model.reference(x)[0], **tolerance(dtype))


def test_specs_describe_the_model(rt) -> None:
    model = mlp((4, 8, 3), dtype="int8", inputs=[("a", 1), ("b", 3)],
                outputs=[("p", 2), ("q", 1)], input_quant=[(0.5, 3), (0.25, -2)])  # fmt: skip
    with rkrt.Session(model.to_bytes()) as s:
        described = [(i.index, i.name, i.shape) for i in s.inputs]
        assert described == [(0, "a", (1, 1)), (1, "b", (1, 3))]
        assert [(o.name, o.shape) for o in s.outputs] == [("p", (1, 2)), ("q", (1, 1))]
        a = s.inputs[0]
        assert a.dtype == np.int8 and a.size == 1 and a.qnt_type == "AFFINE_ASYMMETRIC"
        assert (a.scale, a.zero_point) == (0.5, 3) and s.inputs[1].zero_point == -2
        assert a.format == "UNDEFINED"
        with pytest.raises(AttributeError):
            a.name = "x"  # frozen
        assert s.input_shapes == (((1, 1), (1, 3)),) and not s.is_dynamic


def test_specs_are_queried_once_at_open_not_per_call(rt) -> None:
    model = mlp()
    with rkrt.Session(model.to_bytes()) as s:
        queries = rt.calls("rknn_query")
        x = inputs_for(model)[0]
        for _ in range(20):
            s.run(x)
            s.inputs, s.outputs  # noqa: B018
        assert rt.calls("rknn_query") == queries
        assert rt.calls("rknn_run") == 20
        assert rt.calls("rknn_outputs_get") == rt.calls("rknn_outputs_release") == 20


def test_several_inputs_positional_list_and_dict(rt) -> None:
    model = mlp(
        (5, 8, 3), dtype="float32", inputs=[("a", 2), ("b", 3)], outputs=[("p", 1), ("q", 2)]
    )
    a, b = inputs_for(model)
    want = model.reference(a, b)
    with rkrt.Session(model.to_bytes()) as s:
        for got in (s.run(a, b), s.run([a, b]), s.run((a, b)), s.run({"b": b, "a": a})):
            assert len(got) == 2
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, **tolerance("float32"))
        with pytest.raises(TypeError, match=r"takes 2 input\(s\) \['a', 'b'\], got 1"):
            s.run(a)
        with pytest.raises(TypeError, match="got 3"):
            s.run(a, b, b)
        with pytest.raises(ValueError, match=r"unknown \['c'\], missing \['b'\]"):
            s.run({"a": a, "c": b})


def test_model_from_path_and_bytes_like(rt, tmp_path) -> None:
    model = mlp()
    path = model.save(tmp_path / "m.rknn")
    x = inputs_for(model)[0]
    want = model.reference(x)[0]
    for source in (path, str(path), model.to_bytes(), bytearray(model.to_bytes()),
                   memoryview(model.to_bytes())):  # fmt: skip
        with rkrt.Session(source) as s:
            np.testing.assert_allclose(s.run(x)[0], want, **tolerance("float16"))
    with pytest.raises(TypeError, match="path or the model's bytes"):
        rkrt.Session(12)
    with pytest.raises(FileNotFoundError):
        rkrt.Session(tmp_path / "missing.rknn")


@pytest.mark.parametrize("blob", [b"RKNN\0\0\0\0not a fake model", b"garbage" * 10])
def test_invalid_model_raises_model_invalid_and_leaks_nothing(rt, blob: bytes) -> None:
    with pytest.raises(rkrt.RKNNError) as info:
        rkrt.Session(blob)
    assert info.value.symbol == "RKNN_ERR_MODEL_INVALID" and info.value.function == "rknn_init"


def test_truncated_model_is_refused(rt) -> None:
    blob = mlp().to_bytes()
    with pytest.raises(rkrt.RKNNError, match="MODEL_INVALID"):
        rkrt.Session(blob[: len(blob) // 2])


def test_metadata_properties(rt) -> None:
    model = mlp(custom_string='{"estimator": "MLPClassifier"}')
    with rkrt.Session(model.to_bytes()) as s:
        assert s.sdk_version == ("2.5.0 (fake)", "0.9.8 (fake)")
        assert s.custom_string == '{"estimator": "MLPClassifier"}'
        mem = s.mem_size
        assert set(mem) == {
            "total_weight_size", "total_internal_size", "total_dma_allocated_size",
            "total_sram_size", "free_sram_size",
        }  # fmt: skip
        assert mem["total_weight_size"] > 0
        assert "input[1, 4]:float16" in repr(s)


def test_process_priority_flag_default_and_opt_in(rt) -> None:
    blob = mlp().to_bytes()
    with rkrt.Session(blob):
        assert rt.last_init_flags() & NO_RENICE
        assert not rt.last_init_flags() & PERF
    with rkrt.Session(blob, high_priority=True):
        assert not rt.last_init_flags() & NO_RENICE


def test_perf_run_is_answered_without_collect_perf_and_perf_detail_needs_it(rt) -> None:
    """Finding 8: perf_run demanded collect_perf=True, which the API reference's
    RKNN_QUERY_PERF_RUN sample does without (flags 0); PERF_DETAIL needs the flag."""
    model = mlp()
    x = inputs_for(model)[0]
    with rkrt.Session(model.to_bytes()) as s:
        s.run(x)
        assert not rt.last_init_flags() & PERF
        assert isinstance(s.perf_run, int) and s.perf_run >= 0
        with pytest.raises(RuntimeError, match="collect_perf=True"):
            s.perf_detail  # noqa: B018
    with rkrt.Session(model.to_bytes(), collect_perf=True) as s:
        assert rt.last_init_flags() & PERF
        s.run(x)
        assert isinstance(s.perf_run, int) and s.perf_run >= 0
        assert isinstance(s.perf_detail, str) and s.perf_detail


def test_close_is_idempotent_and_use_after_close_is_clear(rt) -> None:
    model = mlp()
    s = rkrt.Session(model.to_bytes())
    assert rt.live()["contexts"] == 1
    s.close()
    s.close()
    assert s.closed and rt.live() == NO_LEAKS
    assert rt.calls("rknn_destroy") == 1
    x = inputs_for(model)[0]
    for use in (lambda: s.run(x), s.dup, s.bind, lambda: s.sdk_version,
                lambda: s.set_core_mask("AUTO")):  # fmt: skip
        with pytest.raises(rkrt.ClosedError, match="closed"):
            use()
    assert "closed" in repr(s)


def test_context_manager_closes_on_error(rt) -> None:
    with pytest.raises(ZeroDivisionError), rkrt.Session(mlp().to_bytes()):
        1 / 0  # noqa: B018
    assert rt.live() == NO_LEAKS


def test_garbage_collection_frees_the_context_once(rt) -> None:
    model = mlp()
    s = rkrt.Session(model.to_bytes())
    s.run(inputs_for(model)[0])
    dup = s.dup()
    del s, dup
    gc.collect()
    assert rt.live() == NO_LEAKS
    assert rt.calls("rknn_destroy") == 2


def test_dup_shares_the_model_and_runs_independently(rt) -> None:
    model = mlp()
    x = inputs_for(model)[0]
    with rkrt.Session(model.to_bytes()) as s:
        with s.dup() as d:
            assert rt.live()["contexts"] == 2 and rt.calls("rknn_dup_context") == 1
            assert d.inputs == s.inputs and d.outputs == s.outputs
            np.testing.assert_array_equal(d.run(x)[0], s.run(x)[0])
        s.close()
        with pytest.raises(rkrt.ClosedError):
            s.dup()


def test_no_leak_over_many_calls_of_every_path(rt) -> None:
    model = mlp()
    x = inputs_for(model)[0]
    y = np.empty((1, 3), np.float32)
    with rkrt.Session(model.to_bytes()) as s:
        for i in range(10_000):
            s.run(x) if i % 2 else s.run(x, out=[y])
        assert rt.live() == {"contexts": 1, "mems": 0, "outputs": 0}
    assert rt.calls("rknn_outputs_get") == rt.calls("rknn_outputs_release") == 10_000


def test_results_are_fresh_arrays_that_never_alias(rt) -> None:
    model = mlp()
    xs = inputs_for(model, seed=3), inputs_for(model, seed=4)
    with rkrt.Session(model.to_bytes()) as s:
        results = [s.run(xs[i % 2][0])[0] for i in range(200)]
    for i, r in enumerate(results):
        np.testing.assert_allclose(r, model.reference(xs[i % 2][0])[0], **tolerance("float16"))
    assert results[0] is not results[2]
    results[0][...] = -1
    assert (results[2] != -1).all()


def test_out_writes_into_the_callers_arrays(rt) -> None:
    model = mlp((4, 8, 3), inputs=[("i", 4)], outputs=[("a", 1), ("b", 2)])
    x = inputs_for(model)[0]
    a, b = np.empty((1, 1), np.float32), np.empty((1, 2), np.float32)
    with rkrt.Session(model.to_bytes()) as s:
        got = s.run(x, out=[a, b])
        assert got[0] is a and got[1] is b
        np.testing.assert_allclose(b, model.reference(x)[1], **tolerance("float16"))
        x2 = inputs_for(model, seed=9)[0]
        s.run(x2, out=(a, b))
        np.testing.assert_allclose(a, model.reference(x2)[0], **tolerance("float16"))


def test_out_after_a_run_without_out_still_writes_into_the_callers_array(rt) -> None:
    model = mlp()
    x1, x2, x3 = (inputs_for(model, seed=seed)[0] for seed in (1, 2, 3))
    y = np.zeros((1, 3), np.float32)
    with rkrt.Session(model.to_bytes()) as s:
        s.run(x1, out=[y])
        (returned,) = s.run(x2)
        kept = returned.copy()
        s.run(x3, out=[y])
        np.testing.assert_allclose(y, model.reference(x3)[0], **tolerance("float16"))
        # ... and the array returned by the plain run is the caller's: never written again.
        np.testing.assert_array_equal(returned, kept)


def test_out_single_array_for_a_single_output(rt) -> None:
    model = mlp()
    x = inputs_for(model)[0]
    y = np.zeros((1, 3), np.float32)
    with rkrt.Session(model.to_bytes()) as s:
        assert s.run(x, out=y)[0] is y
        np.testing.assert_allclose(y, model.reference(x)[0], **tolerance("float16"))


def test_out_validation_happens_before_any_c_call(rt) -> None:
    model = mlp()
    x = inputs_for(model)[0]
    with rkrt.Session(model.to_bytes()) as s:
        before = rt.total_calls()
        bad = [
            ([np.empty((1, 3), np.float64)], rkrt.DTypeError, "float32"),
            ([np.empty((2, 3), np.float32)], rkrt.ShapeError, r"\(2, 3\), expected \(1, 3\)"),
            ([np.empty((1, 6), np.float32)[:, ::2]], ValueError, "C-contiguous"),
            ([], TypeError, "needs 1 array"),
            (["no"], rkrt.DTypeError, "float32 ndarray"),
        ]
        ro = np.empty((1, 3), np.float32)
        ro.flags.writeable = False
        bad.append(([ro], ValueError, "writeable"))
        for out, exc, msg in bad:
            with pytest.raises(exc, match=msg):
                s.run(x, out=out)
        assert rt.total_calls() == before


def test_out_array_made_read_only_after_use_is_refused(rt) -> None:
    model = mlp()
    x = inputs_for(model)[0]
    y = np.empty((1, 3), np.float32)
    with rkrt.Session(model.to_bytes()) as s:
        s.run(x, out=[y])
        y.flags.writeable = False
        with pytest.raises(ValueError, match="writeable"):
            s.run(x, out=[y])


def test_reused_input_array_sees_new_contents(rt) -> None:
    model = mlp()
    x = inputs_for(model)[0]
    with rkrt.Session(model.to_bytes()) as s:
        first = s.run(x)[0]
        x[...] = inputs_for(model, seed=7)[0]
        second = s.run(x)[0]
        np.testing.assert_allclose(second, model.reference(x)[0], **tolerance("float16"))
        assert not np.allclose(first, second)


def test_one_session_shared_by_threads_is_serialised(rt) -> None:
    model = mlp()
    xs = [inputs_for(model, seed=i)[0] for i in range(4)]
    wants = [model.reference(x)[0] for x in xs]
    rt.set_run_delay(200)
    errors = []
    with rkrt.Session(model.to_bytes()) as s:

        def work(k: int) -> None:
            try:
                for _ in range(25):
                    np.testing.assert_allclose(s.run(xs[k])[0], wants[k], **tolerance("float16"))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert rt.counter("concurrent") == 0
    assert rt.calls("rknn_run") == 100


def test_naive_raw_binding_truncates_silently_where_rkrt_refuses(rt) -> None:
    """The vendor-style call sequence passes a wrong-shaped array's byte count straight on."""
    model = mlp()
    blob = model.to_bytes()
    wrong = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)  # model takes (1, 4)
    lib = ffi.dlopen(str(library()))
    ctx = ffi.new("rknn_context*")
    assert lib.rknn_init(ctx, ffi.from_buffer(blob), len(blob), 0, ffi.NULL) == 0
    inputs = ffi.new("rknn_input[1]")
    inputs[0].index, inputs[0].buf, inputs[0].size = 0, ffi.from_buffer(wrong), wrong.nbytes
    inputs[0].type = enum("rknn_tensor_type")["RKNN_TENSOR_FLOAT32"]
    inputs[0].fmt = enum("rknn_tensor_format")["RKNN_TENSOR_UNDEFINED"]
    outputs = ffi.new("rknn_output[1]")
    outputs[0].want_float = 1
    assert lib.rknn_inputs_set(ctx[0], 1, inputs) == 0  # accepted: silently truncated
    assert lib.rknn_run(ctx[0], ffi.NULL) == 0
    assert lib.rknn_outputs_get(ctx[0], 1, outputs, ffi.NULL) == 0
    y = np.frombuffer(ffi.buffer(outputs[0].buf, outputs[0].size), np.float32).copy()
    assert lib.rknn_outputs_release(ctx[0], 1, outputs) == 0
    assert lib.rknn_destroy(ctx[0]) == 0
    assert rt.counter("size_mismatch") == 1
    np.testing.assert_allclose(y, model.reference(wrong[:1])[0].ravel(), **tolerance("float16"))

    rt.reset()
    with rkrt.Session(blob) as s:
        with pytest.raises(rkrt.ShapeError, match=r"\(2, 4\).*accepts \(\(1, 4\),\)"):
            s.run(wrong)
        assert rt.calls("rknn_inputs_set") == 0
    assert rt.counter("size_mismatch") == 0
