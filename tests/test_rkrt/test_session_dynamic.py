"""Models with several allowed input shapes (the toolkit's dynamic_input)."""

from __future__ import annotations

import numpy as np
import pytest
from rkrt_support import inputs_for, mlp, tolerance

import rkrt


def test_input_shapes_lists_every_allowed_shape(rt) -> None:
    model = mlp(batch_sizes=(1, 8, 32))
    with rkrt.Session(model.to_bytes()) as s:
        assert s.is_dynamic
        assert s.input_shapes == (((1, 4),), ((8, 4),), ((32, 4),))
        assert s.inputs[0].shape == (1, 4) and s.outputs[0].shape == (1, 3)
        # Each set's outputs, read by switching to it at open; the first set is current after.
        assert s.output_shapes == (((1, 3),), ((8, 3),), ((32, 3),))
        for batch in (32, 8, 1):
            (y,) = s.run(inputs_for(model, batch=batch)[0])
            assert (y.shape,) == s.output_shapes[s.input_shapes.index(((batch, 4),))]


def test_static_model_answers_model_invalid_and_has_one_shape(rt) -> None:
    with rkrt.Session(mlp().to_bytes()) as s:
        assert s.input_shapes == (((1, 4),),) and not s.is_dynamic
        assert s.output_shapes == (((1, 3),),)
    assert rt.calls("rknn_set_input_shapes") == 0


def test_run_switches_shapes_only_when_they_change(rt) -> None:
    model = mlp(batch_sizes=(1, 8))
    with rkrt.Session(model.to_bytes()) as s:
        switches = rt.calls("rknn_set_input_shapes")
        for batch in (8, 8, 1, 1, 8):
            x = inputs_for(model, batch=batch, seed=batch)[0]
            (y,) = s.run(x)
            assert y.shape == (batch, 3)
            np.testing.assert_allclose(y, model.reference(x)[0], **tolerance("float16"))
            assert s.inputs[0].shape == (batch, 4) and s.outputs[0].shape == (batch, 3)
        assert rt.calls("rknn_set_input_shapes") - switches == 3
    assert rt.counter("size_mismatch") == 0


def test_run_out_follows_the_current_shape(rt) -> None:
    model = mlp(batch_sizes=(1, 4))
    x = inputs_for(model, batch=4)[0]
    y = np.empty((4, 3), np.float32)
    with rkrt.Session(model.to_bytes()) as s:
        with pytest.raises(rkrt.ShapeError, match=r"\(4, 3\), expected \(1, 3\)"):
            s.run(x[:1], out=[y])
        s.run(x, out=[y])
        np.testing.assert_allclose(y, model.reference(x)[0], **tolerance("float16"))


def test_other_shapes_list_the_allowed_ones(rt) -> None:
    model = mlp(batch_sizes=(1, 8))
    with rkrt.Session(model.to_bytes()) as s:
        calls = rt.total_calls()
        with pytest.raises(rkrt.ShapeError) as info:
            s.run(np.zeros((3, 4), np.float32))
        assert rt.total_calls() == calls
    assert "(3, 4)" in str(info.value) and "((1, 4),), ((8, 4),)" in str(info.value)


def test_several_inputs_switch_together(rt) -> None:
    model = mlp((5, 8, 2), dtype="float32", inputs=[("a", 2), ("b", 3)], batch_sizes=(2, 5))
    with rkrt.Session(model.to_bytes()) as s:
        assert s.input_shapes == (((2, 2), (2, 3)), ((5, 2), (5, 3)))
        assert s.output_shapes == (((2, 2),), ((5, 2),))
        a, b = inputs_for(model, batch=5)
        np.testing.assert_allclose(s.run(a, b)[0], model.reference(a, b)[0], **tolerance("float32"))
        with pytest.raises(rkrt.ShapeError):
            s.run(a, b[:2])


def test_switch_failure_is_an_rknn_error(rt) -> None:
    model = mlp(batch_sizes=(1, 8))
    with rkrt.Session(model.to_bytes()) as s:
        rt.inject("rknn_set_input_shapes", code=-5)
        with pytest.raises(rkrt.RKNNError, match="rknn_set_input_shapes"):
            s.run(inputs_for(model, batch=8)[0])
        x = inputs_for(model, batch=8)[0]
        np.testing.assert_allclose(s.run(x)[0], model.reference(x)[0], **tolerance("float16"))


def test_a_runtime_without_set_input_shapes_names_the_symbol(rt, monkeypatch) -> None:
    model = mlp(batch_sizes=(1, 8))
    with rkrt.Session(model.to_bytes()) as s:
        runtime = s._context.runtime
        real = runtime.symbol

        def old_runtime(name: str):
            if name == "rknn_set_input_shapes":
                raise rkrt.MissingSymbolError(name, runtime.path)
            return real(name)

        monkeypatch.setattr(runtime, "symbol", old_runtime)
        with pytest.raises(rkrt.MissingSymbolError, match="no function rknn_set_input_shapes"):
            s.run(inputs_for(model, batch=8)[0])
