"""On a real board: rkrt against the vendor's librknnrt.so and a real .rknn model.

Run there with
    RKRT_BOARD_LIBRARY=/usr/lib/librknnrt.so RKRT_BOARD_MODEL=model.rknn pytest -m board
(the model: any .rknn built for that SoC, e.g. one made by `python -m emit`).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from rkrt_support import rss_bytes

import rkrt

pytestmark = pytest.mark.board


@pytest.fixture(scope="module")
def board() -> tuple[str, str]:
    library, model = os.environ.get("RKRT_BOARD_LIBRARY"), os.environ.get("RKRT_BOARD_MODEL")
    if not library or not model:
        pytest.fail("set RKRT_BOARD_LIBRARY and RKRT_BOARD_MODEL to run the board tests")
    return library, model


def _inputs(s: rkrt.Session, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=t.shape).astype(np.float32) for t in s.inputs]


def test_open_describe_run(board) -> None:
    library, model = board
    with rkrt.Session(model, library=library) as s:
        api, drv = s.sdk_version
        assert api and drv
        assert s.inputs and s.outputs
        ys = s.run(*_inputs(s))
        assert [y.shape for y in ys] == [o.shape for o in s.outputs]
        assert all(np.isfinite(y).all() for y in ys)


def test_strict_validation_on_the_real_runtime(board) -> None:
    library, model = board
    with rkrt.Session(model, library=library) as s:
        x = _inputs(s)[0]
        with pytest.raises(rkrt.DTypeError):
            s.run(x.astype(np.int64), *_inputs(s)[1:])
        with pytest.raises(rkrt.ShapeError):
            s.run(np.zeros((x.shape[0] + 1, *x.shape[1:]), np.float32), *_inputs(s)[1:])


def test_zero_copy_matches_run(board) -> None:
    library, model = board
    with rkrt.Session(model, library=library) as s, s.dup() as d, d.bind() as b:
        xs = _inputs(s, seed=3)
        want = s.run(*xs)
        for buf, x in zip(b.inputs, xs):
            buf[...] = x
        b.run()
        for got, w in zip(b.outputs, want):
            np.testing.assert_allclose(got, w, rtol=1e-2, atol=1e-2)


def test_core_masks_and_pool(board) -> None:
    library, model = board
    soc = rkrt.detect_soc()
    with rkrt.Pool(model, library=library) as pool:
        assert len(pool) == {"rk3588": 3, "rk3576": 2}.get(soc, 1)
        xs = _inputs(pool.sessions[0])
        results = list(pool.map([xs] * 12))
        for r in results[1:]:
            np.testing.assert_array_equal(r[0], results[0][0])
    if soc not in ("rk3588", "rk3576"):
        with pytest.raises(ValueError, match=soc.upper()):
            rkrt.Session(model, library=library, core_mask="CORE_0")


def test_many_calls_keep_memory_flat(board) -> None:
    library, model = board
    with rkrt.Session(model, library=library) as s:
        xs = _inputs(s)
        for _ in range(2000):
            s.run(*xs)
        rss = rss_bytes()
        for _ in range(20000):
            s.run(*xs)
        assert rss_bytes() - rss < 1 << 20
