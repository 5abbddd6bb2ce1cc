"""rkrt.MatMul against the test-double runtime: numbers, limits, zero-copy, lifetime, leaks.

The `rt` fixture fails a test that leaves a context or mem alive or that made any call the
test double counts as unsafe ("matmul_unsafe" included): every test here proves rkrt never
passes an unsafe call to the matmul API.
"""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
from rkrt_support import rss_bytes

import rkrt
from rkrt.matmul import K_ALIGN, MAX_K, MatMul, split_k


def _fp16_bound(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Worst-case |C - A @ B| for float16 inputs multiplied exactly, summed in float32.

    Rounding a and b to float16 moves each product by at most 2^-10 of its size; K float32
    additions add at most K * 2^-24 of the sum of |products|.
    """
    k = a.shape[1]
    mags = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    return (2.0**-10 + 2.0**-21 + k * 2.0**-24) * mags + 1e-6


def _check_fp16(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    assert c.dtype == np.float32 and c.shape == (a.shape[0], b.shape[1])
    exact = a.astype(np.float64) @ b.astype(np.float64)
    assert np.all(np.abs(c - exact) <= _fp16_bound(a, b))


def _random_fp16_case(rng: np.random.Generator, m: int, k: int, n: int):
    return (rng.standard_normal((m, k)).astype(np.float32),
            rng.standard_normal((k, n)).astype(np.float32))  # fmt: skip


def _random_int8(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return rng.integers(-128, 128, shape).astype(np.int8)


SHAPES = [  # (M, K, N): aligned, unaligned K and/or N, tiny, K > MAX_K
    (4, 64, 32),
    (1, 1, 1),
    (3, 33, 17),
    (7, 100, 10),
    (2, 4096, 48),
    (5, MAX_K, 16),
    (3, MAX_K + 1, 5),
    (2, 25000, 3),
]


@pytest.mark.parametrize("m,k,n", SHAPES)
def test_float16_matches_numpy(rt, m: int, k: int, n: int) -> None:
    rng = np.random.default_rng(k * 31 + n)
    a, b = _random_fp16_case(rng, m, k, n)
    with MatMul(m, k, n) as mm:
        mm.set_b(b)
        assert mm.splits == len(split_k(k)) == (1 if k <= MAX_K else -(-k // MAX_K))
        _check_fp16(mm.run(a), a, b)
        _check_fp16(mm.run(a.astype(np.float16)), a.astype(np.float16), b)


@pytest.mark.parametrize("m,k,n", SHAPES)
def test_int8_is_exact(rt, m: int, k: int, n: int) -> None:
    rng = np.random.default_rng(k * 17 + n)
    a, b = _random_int8(rng, (m, k)), _random_int8(rng, (k, n))
    with MatMul(m, k, n, dtype="int8") as mm:
        mm.set_b(b)
        c = mm.run(a)
    assert c.dtype == np.int32
    np.testing.assert_array_equal(c, a.astype(np.int64) @ b.astype(np.int64))


def test_random_shapes_both_types(rt) -> None:
    rng = np.random.default_rng(2024)
    for _ in range(12):
        m, k, n = int(rng.integers(1, 9)), int(rng.integers(1, 300)), int(rng.integers(1, 70))
        a, b = _random_fp16_case(rng, m, k, n)
        with MatMul(m, k, n) as mm:
            mm.set_b(b)
            _check_fp16(mm.run(a), a, b)
        qa, qb = _random_int8(rng, (m, k)), _random_int8(rng, (k, n))
        with MatMul(m, k, n, dtype=np.int8) as mm:
            mm.set_b(qb)
            np.testing.assert_array_equal(mm.run(qa), qa.astype(np.int64) @ qb.astype(np.int64))


def test_split_k_slices_are_aligned_and_cover_k() -> None:
    for k in (1, 31, 32, MAX_K - 1, MAX_K, MAX_K + 1, 3 * MAX_K + 7, 100_000):
        parts = split_k(k)
        assert parts[0][0] == 0 and parts[-1][1] == k
        assert all(stop == start for (_, stop), (start, _) in zip(parts, parts[1:]))
        assert all(-(-(stop - start) // K_ALIGN) * K_ALIGN <= MAX_K for start, stop in parts)
        assert len(parts) == -(-k // MAX_K)


def test_several_batch_sizes_share_one_dynamic_context(rt) -> None:
    rng = np.random.default_rng(5)
    a, b = _random_fp16_case(rng, 16, 50, 20)
    with MatMul([8, 1, 16, 1], 50, 20) as mm:
        assert mm.batch_sizes == (1, 8, 16)
        mm.set_b(b)
        for m in (16, 1, 8, 8, 1, 16):
            _check_fp16(mm.run(a[:m]), a[:m], b)
        assert rt.live()["contexts"] == 1 and rt.live()["mems"] == 3
        with pytest.raises(rkrt.ShapeError, match=r"M in \[1, 8, 16\]"):
            mm.run(a[:4])


def test_out_receives_the_result(rt) -> None:
    rng = np.random.default_rng(6)
    a, b = _random_fp16_case(rng, 3, 40, 9)
    out = np.full((3, 9), np.nan, np.float32)
    with MatMul(3, 40, 9) as mm:
        mm.set_b(b)
        assert mm.run(a, out=out) is out
        _check_fp16(out, a, b)
        with pytest.raises(rkrt.ShapeError, match="float32 array of shape"):
            mm.run(a, out=np.empty((3, 9), np.float64))


def test_zero_copy_binding(rt) -> None:
    rng = np.random.default_rng(7)
    a, b = _random_fp16_case(rng, 4, 70, 12)
    with MatMul([2, 4], 70, 12) as mm:
        mm.set_b(b)
        big, small = mm.bind(4), mm.bind(2)
        assert big.a.shape == (4, 70) and big.a.dtype == np.float16
        assert big.c.shape == (4, 12) and big.c.dtype == np.float32
        big.a[...] = a
        assert big.run() is big.c
        _check_fp16(big.c, a.astype(np.float16), b)
        small.a[...] = a[2:]
        _check_fp16(small.run(), a[2:].astype(np.float16), b)
        with pytest.raises(ValueError, match="pass the batch size"):
            mm.bind()


def test_zero_copy_is_refused_when_k_is_split(rt) -> None:
    with MatMul(1, MAX_K + 32, 16) as mm, pytest.raises(ValueError, match="use run"):
        mm.bind()


def test_b_reused_over_10k_runs_with_flat_memory_and_nothing_left(rt) -> None:
    rng = np.random.default_rng(8)
    a, b = _random_fp16_case(rng, 2, 64, 16)
    with MatMul(2, 64, 16) as mm:
        mm.set_b(b)
        out = np.empty((2, 16), np.float32)
        expected = mm.run(a).copy()
        for _ in range(1000):
            mm.run(a, out=out)
        rss = rss_bytes()
        for _ in range(10_000):
            mm.run(a, out=out)
        growth = rss_bytes() - rss
        assert rt.live() == {"contexts": 1, "mems": 3, "outputs": 0}
        np.testing.assert_array_equal(out, expected)
    assert growth < 1 << 20, f"RSS grew by {growth} bytes over 10^4 runs"
    assert rt.live() == {"contexts": 0, "mems": 0, "outputs": 0}


def test_garbage_collection_frees_everything(rt) -> None:
    mm = MatMul([1, 2], MAX_K + 100, 8)
    assert rt.live()["contexts"] == 2 and rt.live()["mems"] == 6
    del mm
    gc.collect()
    assert rt.live()["contexts"] == 0 and rt.live()["mems"] == 0


def test_close_is_idempotent_and_use_after_close_raises(rt) -> None:
    mm = MatMul(2, 32, 16)
    mm.set_b(np.ones((32, 16), np.float32))
    view = mm.bind()
    mm.close()
    mm.close()
    assert mm.closed and "closed" in repr(mm)
    with pytest.raises(rkrt.ClosedError):
        mm.run(np.ones((2, 32), np.float32))
    with pytest.raises(rkrt.ClosedError):
        view.run()
    with pytest.raises(rkrt.ClosedError):
        mm.set_b(np.ones((32, 16), np.float32))


@pytest.mark.parametrize(
    "args,kwargs,error,match",
    [
        ((0, 4, 4), {}, ValueError, "M must be at least 1"),
        ((2, -1, 4), {}, ValueError, "K must be at least 1"),
        ((2, 4, 2.5), {}, TypeError, "N must be an int"),
        (([], 4, 4), {}, ValueError, "non-empty"),
        ((list(range(1, 600)), 4, 4), {}, ValueError, "at most 512"),
        ((2, 4, 4), {"dtype": "float32"}, rkrt.DTypeError, "float16"),
        ((2, 4, 4), {"dtype": "int4"}, TypeError, "int8"),
    ],
)
def test_bad_construction_fails_before_c(rt, args, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        MatMul(*args, **kwargs)
    assert rt.live()["contexts"] == 0


def test_bad_arrays_fail_before_c(rt) -> None:
    with MatMul(2, 40, 8) as mm:
        with pytest.raises(RuntimeError, match="set_b"):
            mm.run(np.ones((2, 40), np.float32))
        with pytest.raises(rkrt.ShapeError, match=r"\(K, N\) = \(40, 8\)"):
            mm.set_b(np.ones((8, 40), np.float32))
        with pytest.raises(rkrt.DTypeError, match="float array"):
            mm.set_b(np.ones((40, 8), np.int64))
        with pytest.raises(ValueError, match="not finite in float16"):
            mm.set_b(np.full((40, 8), 1e6))
        mm.set_b(np.ones((40, 8)))  # float64 weights are rounded to float16 once
        with pytest.raises(rkrt.DTypeError, match="float16, float32"):
            mm.run(np.ones((2, 40), np.float64))
        with pytest.raises(rkrt.ShapeError):
            mm.run(np.ones((2, 41), np.float32))
        with pytest.raises(rkrt.ShapeError):
            mm.run(np.ones(40, np.float32))
    with MatMul(2, 40, 8, dtype="int8") as mm:
        with pytest.raises(rkrt.DTypeError, match="quantize"):
            mm.set_b(np.ones((40, 8), np.int16))
        mm.set_b(np.ones((40, 8), np.int8))
        with pytest.raises(rkrt.DTypeError, match="int8"):
            mm.run(np.ones((2, 40), np.float32))


def test_core_mask_is_set_on_every_context(rt, monkeypatch) -> None:
    monkeypatch.setenv("RKRT_FAKE_SOC", "rk3588")
    with MatMul(1, MAX_K + 1, 16, core_mask="CORE_1", soc="rk3588") as mm:
        assert mm.core_mask == rkrt.CoreMask.CORE_1
        assert [rt.core_mask(t.handle) for t in mm._tiles] == [2, 2]


def test_core_mask_the_soc_lacks_is_refused_before_c(rt, monkeypatch) -> None:
    monkeypatch.setenv("RKRT_FAKE_SOC", "rk3568")
    with pytest.raises(ValueError, match="RK3568"):
        MatMul(1, 32, 16, core_mask=rkrt.CoreMask.CORE_0, soc="rk3568")
    assert rt.live()["contexts"] == 0


@pytest.mark.parametrize("soc", ["rk3576", "rk3566", "rk3568", "rk3562"])
def test_padding_satisfies_every_soc(rt, monkeypatch, soc: str) -> None:
    monkeypatch.setenv("RKRT_FAKE_SOC", soc)
    rng = np.random.default_rng(9)
    a, b = _random_fp16_case(rng, 3, 4100, 9)
    with MatMul(3, 4100, 9) as mm:
        mm.set_b(b)
        _check_fp16(mm.run(a), a, b)
    qa, qb = _random_int8(rng, (3, 50)), _random_int8(rng, (50, 9))
    with MatMul(3, 50, 9, dtype="int8") as mm:
        mm.set_b(qb)
        np.testing.assert_array_equal(mm.run(qa), qa.astype(np.int64) @ qb.astype(np.int64))


@pytest.mark.parametrize(
    "function,nth",
    [
        ("rknn_create_mem", 1),
        ("rknn_create_mem", 3),
        ("rknn_matmul_create", 1),
        ("rknn_matmul_set_io_mem", 2),
        ("rknn_B_normal_layout_to_native_layout", 1),
    ],
)
def test_failure_while_opening_leaks_nothing(rt, function: str, nth: int) -> None:
    rt.inject(function, nth=nth)
    with pytest.raises(rkrt.RKNNError) as info, MatMul(2, 64, 16) as mm:
        mm.set_b(np.ones((64, 16), np.float16))
    assert info.value.function == function


@pytest.mark.parametrize("code", [-1, -5, -7])
def test_failed_run_raises_and_the_next_run_is_right(rt, code: int) -> None:
    rng = np.random.default_rng(7)
    a, b = _random_fp16_case(rng, 2, 40, 24)
    with MatMul(2, 40, 24) as mm:
        mm.set_b(b)
        runs = rt.calls("rknn_matmul_run")
        rt.inject("rknn_matmul_run", nth=1, code=code)
        with pytest.raises(rkrt.RKNNError) as info:
            mm.run(a)
        assert (info.value.code, info.value.function) == (code, "rknn_matmul_run")
        _check_fp16(mm.run(a), a, b)
        assert rt.calls("rknn_matmul_run") == runs + 2


def test_runs_from_many_threads_are_serialised(rt) -> None:
    rng = np.random.default_rng(10)
    a, b = _random_fp16_case(rng, 4, 96, 32)
    errors: list[BaseException] = []
    with MatMul([1, 4], 96, 32) as mm:
        mm.set_b(b)
        expected = {m: mm.run(a[:m]).copy() for m in (1, 4)}

        def work(m: int) -> None:
            try:
                for _ in range(200):
                    np.testing.assert_array_equal(mm.run(a[:m]), expected[m])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(1 + 3 * (i % 2),)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert rt.counter("concurrent") == 0
