"""Hostile inputs: hypothesis over dtypes, shapes, strides, byte order, memory order, read-only,
unaligned, zero-size and huge arrays, on Session.run and rkrt.sklearn.

Every call either returns what the reference computes or raises DTypeError / ShapeError /
ValueError, and nothing ever reaches the runtime with a wrong byte count: the test double's
"size_mismatch" and "unsafe" counters stay 0.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_rknnrt import FakeModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rkrt_support import mlp, tolerance

import rkrt
from rkrt import sklearn as board
from rkrt.metadata import ModelMetadata, write_sidecar

MODELS = {
    "float16": mlp((4, 16, 3), dtype="float16", seed=2),
    "int8": mlp((4, 16, 3), dtype="int8", seed=3),
    "dynamic": mlp((4, 16, 3), dtype="float32", seed=4, batch_sizes=(1, 3, 64)),
}
DTYPES = ["float32", "float16", "uint8", "int8", "float64", "int32", "int64", "int16", "bool",
          "complex64", ">f4", ">f2", ">f8", "<u2", "O"]  # fmt: skip
LAYOUTS = ["C", "F", "strided", "reversed", "unaligned", "readonly", "broadcast"]
EXAMPLES = 300  # per property; the tally is printed for the README
generated = {"session": 0, "sklearn": 0}


def values(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Numbers every dtype represents exactly enough (small, non-negative for unsigned)."""
    x = rng.uniform(-4, 4, shape)
    if dtype.kind == "u" or dtype.kind == "b":
        x = np.abs(x)
    if dtype.kind in "iub":
        x = np.round(x)
    return x.astype(dtype)


def laid_out(x: np.ndarray, layout: str) -> np.ndarray:
    """The same values as ``x`` in another memory layout."""
    if layout == "F":
        return np.asfortranarray(x)
    if layout == "strided" and x.ndim:
        wide = np.repeat(x, 2, axis=-1)
        return wide[..., ::2]
    if layout == "reversed" and x.ndim:
        return np.ascontiguousarray(x[..., ::-1])[..., ::-1]
    if layout == "unaligned" and x.dtype.itemsize > 1 and x.dtype.kind != "O":
        raw = np.empty(x.nbytes + 1, np.uint8)[1:]
        y = raw.view(x.dtype).reshape(x.shape)
        y[...] = x
        assert not y.flags.aligned or not y.size
        return y
    if layout == "readonly":
        y = x.copy()
        y.setflags(write=False)
        return y
    if layout == "broadcast" and x.ndim and x.shape[0]:
        return np.broadcast_to(x[:1], x.shape)  # zero stride: every row is the first
    return x


@st.composite
def hostile_input(draw: Any, model: FakeModel) -> tuple[np.ndarray, str]:
    width = model.inputs[0][1]
    valid = [(b, width) for b in model.batch_sizes]
    shape = draw(
        st.one_of(
            st.sampled_from(valid),
            st.sampled_from([(0, width), (model.batch, width + 1), (width,), (1, 1, width)]),
            st.lists(st.integers(0, 5), max_size=3).map(tuple),
        )
    )
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    layout = draw(st.sampled_from(LAYOUTS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = values(rng, shape, dtype)
    return laid_out(x, layout), layout


def expected_session_outcome(model: FakeModel, x: np.ndarray) -> Any:
    """The exception class Session.run must raise for x, or None when it must compute."""
    # The user guide's input table (1.5.2, Table 4-1).
    accepted = {np.dtype(np.float32), np.dtype(np.uint8)}
    accepted.add(np.dtype(np.int8) if model.dtype == "int8" else np.dtype(np.float16))
    if x.dtype.newbyteorder("=") not in accepted:
        return rkrt.DTypeError
    if x.shape not in {(b, model.inputs[0][1]) for b in model.batch_sizes}:
        return rkrt.ShapeError
    return None


@pytest.mark.parametrize("name", MODELS)
def test_session_run_on_hostile_arrays(rt, name: str) -> None:
    model = MODELS[name]
    with rkrt.Session(model.to_bytes()) as s:

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
        @given(hostile_input(model))
        def check(case: tuple[np.ndarray, str]) -> None:
            x, layout = case
            generated["session"] += 1
            snapshot = x.copy()
            outcome = expected_session_outcome(model, x)
            if outcome is None:
                (y,) = s.run(x)
                want = model.reference(np.ascontiguousarray(x, dtype=np.float32))[0]
                np.testing.assert_allclose(y, want, **tolerance(model.dtype), err_msg=layout)
            else:
                with pytest.raises(outcome):
                    s.run(x)
            np.testing.assert_array_equal(x, snapshot)  # the caller's array is never touched
            assert rt.counter("size_mismatch") == rt.counter("unsafe") == 0

        check()
    print(f"Session.run/{name}: {generated['session']} inputs generated so far")


def test_in_place_changes_to_a_reused_array_are_noticed(rt) -> None:
    """The fast path reuses the last array's pointer; changing that array in place (shape,
    dtype, or strides, which numpy < 2.4 lets one reassign) must not send stale bytes."""
    model = MODELS["float16"]
    x = np.arange(4, dtype=np.float32).reshape(1, 4) / 4
    out = [np.empty((1, 3), np.float32)]
    with rkrt.Session(model.to_bytes()) as s:
        s.run(x, out=out)
        x.shape = (2, 2)
        with pytest.raises(rkrt.ShapeError):
            s.run(x)
        x.shape = (1, 4)
        # Setting strides in place is deprecated from numpy 2.4, but possible, and exactly what
        # could fool a cache of "this array was already checked".
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            x.strides = (16, 0)  # every element now reads x[0, 0]
        (y,) = s.run(x, out=out)
        np.testing.assert_allclose(y, model.reference(np.ascontiguousarray(x))[0],
                                   **tolerance("float16"))  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            out[0].strides = (12, 0)
        with pytest.raises(ValueError, match="C-contiguous"):
            s.run(x, out=out)
    assert rt.counter("size_mismatch") == 0


def test_huge_arrays_are_refused_without_copying(rt, tmp_path: Path) -> None:
    row = np.zeros(4, ">f4")  # byte-swapped: a conversion would have to copy everything
    terabyte = np.broadcast_to(row, (2**38, 4))
    with rkrt.Session(MODELS["dynamic"].to_bytes(), cast="safe") as s:
        with pytest.raises(rkrt.ShapeError, match=r"\(274877906944, 4\)"):
            s.run(terabyte)
        with pytest.raises(rkrt.ShapeError):
            s.run(np.broadcast_to(np.float64(1), (2**20, 2**20)))
        # The largest compiled batch works from a broadcast, byte-swapped array.
        big = np.broadcast_to(np.arange(4, dtype=">f4"), (64, 4))
        (y,) = s.run(big)
        want = MODELS["dynamic"].reference(np.ascontiguousarray(big, dtype=np.float32))[0]
        np.testing.assert_allclose(y, want, **tolerance("float32"))
    with board_estimator(tmp_path) as clf, pytest.raises(ValueError, match="6 features"):
        clf.predict(np.broadcast_to(np.float32(0), (2**38, 6)))
    assert rt.counter("size_mismatch") == 0


# ---- rkrt.sklearn --------------------------------------------------------------------------

SK_MODEL = mlp((5, 12, 3), dtype="float16", seed=6, batch_sizes=(1, 4, 16))


def board_estimator(directory: Path) -> board.MLPClassifier:
    path = Path(directory) / "reliability_inputs_sk.rknn"
    if not path.exists():
        SK_MODEL.save(path)
        meta = ModelMetadata(task="classifier", outputs="probabilities", n_features_in=5,
                             classes=("a", "b", "c"), batch_sizes=(1, 4, 16))  # fmt: skip
        write_sidecar(path, meta)
    return board.MLPClassifier(path)


@st.composite
def hostile_table(draw: Any) -> np.ndarray:
    rows = draw(st.one_of(st.integers(0, 40), st.just(0)))
    cols = draw(st.sampled_from([5, 5, 5, 4, 6]))
    shape = draw(st.sampled_from([(rows, cols), (rows, cols), (cols,), (1, rows, cols), ()]))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = values(rng, shape, dtype)
    if dtype.kind == "f" and x.size and draw(st.booleans()):
        x.flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from([np.nan, np.inf]))
    return laid_out(x, draw(st.sampled_from(LAYOUTS)))


def test_sklearn_predict_on_hostile_tables(rt, tmp_path: Path) -> None:
    with board_estimator(tmp_path) as clf:

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
        @given(hostile_table())
        def check(x: np.ndarray) -> None:
            generated["sklearn"] += 1
            valid = (
                x.ndim == 2
                and x.shape[1] == 5
                and x.dtype.kind in "biufO"  # object arrays of numbers, as scikit-learn
                and bool(np.isfinite(x.astype(np.float64)).all())
            )
            if valid:
                proba = clf.predict_proba(x)
                x32 = np.ascontiguousarray(x, dtype=np.float32)
                want = SK_MODEL.reference(x32)[0] if len(x32) else np.empty((0, 3))
                np.testing.assert_allclose(proba, want, **tolerance("float16"))
                np.testing.assert_array_equal(clf.predict(x), clf.classes_[want.argmax(1)])
            else:
                with pytest.raises(ValueError):
                    clf.predict_proba(x)
            assert rt.counter("size_mismatch") == rt.counter("unsafe") == 0

        check()
    print(f"rkrt.sklearn: {generated['sklearn']} inputs generated")
