"""Pool.run_batch: one batch of rows over every context, in chunks of the compiled sizes."""

from __future__ import annotations

import time

import numpy as np
import pytest
from rkrt_support import mlp

import rkrt
from rkrt.batches import compiled_batch_sizes, plan_spread


def _one_context_chunks(model, x: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """The reference: a single Session over the same chunks, one after the other."""
    with rkrt.Session(model.to_bytes()) as s:
        parts = []
        for start, size in plan_spread(len(x), sizes, 3):
            chunk = np.zeros((size, x.shape[1]), np.float32)
            rows = min(size, len(x) - start)
            chunk[:rows] = x[start : start + rows]
            parts.append(s.run(chunk)[0][:rows])
    return np.concatenate(parts) if parts else np.empty((0, 3), np.float32)


def test_plan_spreads_rows_over_the_contexts() -> None:
    assert plan_spread(3000, (32, 8, 1), 3)[:2] == [(0, 32), (32, 32)]
    assert plan_spread(3000, (32, 8, 1), 3)[-1] == (2976, 32)  # 24 rows, zero-padded
    # 40 rows: one chunk of 32 would leave two contexts idle
    assert plan_spread(40, (32, 8, 1), 3) == [(0, 8), (8, 8), (16, 8), (24, 8), (32, 8)]
    assert plan_spread(2, (32, 8, 1), 3) == [(0, 1), (1, 1)]
    assert plan_spread(2, (32, 8), 3) == [(0, 8)]
    assert plan_spread(0, (32, 8), 3) == []


@pytest.mark.parametrize("rows", [0, 1, 7, 32, 33, 100, 3000])
def test_results_equal_one_context_running_the_chunks(rt, rk3588, rows) -> None:
    model = mlp(batch_sizes=(1, 8, 32))
    x = np.random.default_rng(rows).normal(size=(rows, 4)).astype(np.float32)
    with rkrt.Pool(model.to_bytes()) as pool:
        (y,) = pool.run_batch(x)
        assert compiled_batch_sizes(pool.sessions[0]) == (32, 8, 1)
    assert y.shape == (rows, 3) and y.dtype == np.float32
    np.testing.assert_array_equal(y, _one_context_chunks(model, x, (32, 8, 1)))
    if rows:
        np.testing.assert_allclose(y, model.reference(x)[0], rtol=2e-2, atol=2e-3)


def test_several_inputs_and_outputs_by_position_or_name(rt, rk3588) -> None:
    model = mlp((5, 16, 6), inputs=[("a", 2), ("b", 3)], outputs=[("p", 4), ("q", 2)],
                batch_sizes=(4, 16))  # fmt: skip
    rng = np.random.default_rng(3)
    a = rng.normal(size=(50, 2)).astype(np.float32)
    b = rng.normal(size=(50, 3)).astype(np.float16)
    with rkrt.Pool(model.to_bytes()) as pool:
        p, q = pool.run_batch(a, b)
        p2, q2 = pool.run_batch({"b": b, "a": a})
        with pytest.raises(rkrt.ShapeError, match="same number of rows"):
            pool.run_batch(a, b[:49])
        with pytest.raises(ValueError, match="input names"):
            pool.run_batch({"a": a})
        with pytest.raises(TypeError, match="takes 2 input"):
            pool.run_batch(a)
        with pytest.raises(rkrt.DTypeError):
            pool.run_batch(a.astype(np.float64), b)
        assert pool.in_flight == 0
    want = model.reference(a, b)
    np.testing.assert_allclose(p, want[0], rtol=2e-2, atol=2e-3)
    np.testing.assert_allclose(q, want[1], rtol=2e-2, atol=2e-3)
    np.testing.assert_array_equal(p, p2)
    np.testing.assert_array_equal(q, q2)


def test_a_model_whose_shapes_vary_otherwise_is_refused(rt, rk3588) -> None:
    class Described:
        input_shapes = (((1, 4),), ((1, 8),))

    with pytest.raises(ValueError, match="do not differ only in a batch size"):
        compiled_batch_sizes(Described())  # type: ignore[arg-type]


def test_the_chunks_run_in_parallel(rt, rk3588) -> None:
    model = mlp(batch_sizes=(1, 8, 32))
    x = np.random.default_rng(0).normal(size=(600, 4)).astype(np.float32)
    rt.set_run_delay(4_000)
    timings = {}
    for name, cores in (("one", ["CORE_0"]), ("all", None)):
        with rkrt.Pool(model.to_bytes(), cores=cores) as pool:
            pool.run_batch(x)  # shapes switched once per context
            started = time.perf_counter()
            pool.run_batch(x)
            timings[name] = time.perf_counter() - started
    assert rt.max_parallel_runs() == 3
    assert timings["one"] / timings["all"] > 1.5  # 3 at best; generous on a shared machine
