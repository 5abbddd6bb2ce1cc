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


# ---- what the double only claims: checked against the real runtime (README "What is
# verified where") ----


def test_runtime_release_matches_its_functions(board) -> None:
    library, model = board
    with rkrt.Session(model, library=library):
        pass
    info = rkrt.runtime_info(library)
    assert info.version is not None, info.api_version
    # The release families rkrt infers from the exported functions (rkrt.library).
    assert ("rknn_mem_sync" in info.functions) == (info.version >= (1, 6, 0))
    assert ("rknn_matmul_create_dynamic_shape" in info.functions) == (info.version >= (2, 1, 0))


def test_matmul_runs_or_is_refused_by_release(board) -> None:
    library, _ = board
    info = rkrt.runtime_info(library)
    if "rknn_matmul_create_dynamic_shape" not in info.functions:
        with pytest.raises(rkrt.UnsupportedRuntimeError, match="2.1.0"):
            rkrt.MatMul(4, 64, 32, library=library)
        return
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 64)), rng.normal(size=(64, 32))
    with rkrt.MatMul(4, 64, 32, library=library) as mm:
        mm.set_b(b)
        want = a.astype(np.float16).astype(np.float32) @ b.astype(np.float16).astype(np.float32)
        np.testing.assert_allclose(mm.run(a.astype(np.float32)), want, rtol=1e-2, atol=1e-2)


def test_dma_heap_buffer_as_input(board) -> None:
    library, model = board
    if not rkrt.external.heaps():
        pytest.skip("this board's kernel offers no DMA heap (/dev/dma_heap)")
    with rkrt.Session(model, library=library) as s, s.dup() as d:
        spec = d.inputs[0]
        xs = _inputs(s, seed=5)
        want = s.run(*xs)
        with rkrt.external.dma_alloc(spec.n_elems * 4) as buf:
            assert rkrt.external.is_dmabuf(buf.fd)
            buf.array.view(np.float32)[:] = xs[0].ravel()
            with d.bind(inputs={0: buf.memory(np.float32)}) as b:
                for dst, x in zip(b.inputs[1:], xs[1:]):
                    dst[...] = x
                b.run()
                np.testing.assert_allclose(b.outputs[0], want[0], rtol=1e-2, atol=1e-2)


def test_single_core_auto_mask_and_perf_run_without_collect_perf(board) -> None:
    library, model = board
    with rkrt.Session(model, library=library) as s:
        s.set_core_mask("AUTO")  # on RK3566/68/62 rkrt makes no call (the runtime refuses it)
        s.run(*_inputs(s))
        assert s.perf_run > 0  # answered without RKNN_FLAG_COLLECT_PERF_MASK
