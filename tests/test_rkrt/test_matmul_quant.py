"""rkrt.MatMul int8 -> int8 (RKNN_INT8_MM_INT8_TO_INT8) with per-layer / per-channel quantization.

Results are compared with a numpy model of what the NPU computes: accumulate
(A - a_zp) @ (B - b_zp) in integers, multiply by a * b[j] / c (the float32 scales the runtime
is given), round to nearest, add c_zp, saturate to int8. The NPU requantizes in its own fixed or
floating point, so each value may be one step off, never more. The `rt` fixture proves no call
was unsafe and nothing leaked.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from rkrt_support import library

import rkrt
from rkrt._matmul_ffi import enum, ffi
from rkrt.matmul import MAX_K, MatMul, QuantParams

ERR_PARAM = -5


def requantized(a: np.ndarray, b: np.ndarray, q: QuantParams) -> np.ndarray:
    """The exact (float64) value C takes before rounding: acc * a * b[j] / c."""
    n = b.shape[1]
    b_scale = np.broadcast_to(np.asarray(q.b, np.float32), (n,)).astype(np.float64)
    b_zp = np.broadcast_to(np.asarray(q.b_zero_point, np.int64), (n,))
    acc = (a.astype(np.int64) - q.a_zero_point) @ (b.astype(np.int64) - b_zp)
    return acc * (float(np.float32(q.a)) * b_scale / float(np.float32(q.c)))


def npu_reference(a: np.ndarray, b: np.ndarray, q: QuantParams) -> np.ndarray:
    """int8 C of the NPU for int8 A, B and the scales and zero points of q."""
    return np.clip(np.rint(requantized(a, b, q)) + q.c_zero_point, -128, 127).astype(np.int64)


def assert_npu_equal(c: np.ndarray, a: np.ndarray, b: np.ndarray, q: QuantParams) -> None:
    """C within one step of the reference, and off by one only where rounding decides it."""
    expected = npu_reference(a, b, q)
    assert c.dtype == np.int8 and c.shape == expected.shape
    diff = np.abs(c.astype(np.int64) - expected)
    assert diff.max(initial=0) <= 1
    real = requantized(a, b, q)[diff == 1]
    # The double requantizes in float32: it may round the other way only next to a .5.
    assert np.all(np.abs(np.abs(real - np.floor(real)) - 0.5) <= 1e-6 * np.abs(real))


def random_case(m: int, k: int, n: int, mode: str, seed: int, steps: float = 40):
    """A, B and QuantParams whose c scale puts most results inside int8 and some outside."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (m, k)).astype(np.int8)
    b = rng.integers(-128, 128, (k, n)).astype(np.int8)
    per_channel, asym = mode.startswith("channel"), mode.endswith("asym")
    b_scale: Any = rng.uniform(0.002, 0.05, n) if per_channel else 0.02
    b_zp: Any = 0
    if asym:
        b_zp = rng.integers(-20, 21, n) if per_channel else -7
    a_zp, c_zp = (int(rng.integers(-30, 31)), int(rng.integers(-30, 31))) if asym else (0, 0)
    # One C step is 1/steps of a typical |product|: results span (and with steps >~ 60
    # saturate) int8.
    spread = 128 * 75 * np.sqrt(k) * 0.05 * np.mean(b_scale)
    q = QuantParams(a=0.05, b=b_scale, c=spread / steps, a_zero_point=a_zp,
                    b_zero_point=b_zp, c_zero_point=c_zp)  # fmt: skip
    return a, b, q


SHAPES = [(4, 64, 32), (3, 33, 17), (1, 1, 1), (5, 100, 70), (2, MAX_K, 40)]
MODES = ["layer", "channel", "layer_asym", "channel_asym"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_int8_to_int8_matches_the_npu_reference(rt, m: int, k: int, n: int, mode: str) -> None:
    a, b, q = random_case(m, k, n, mode, seed=k * 7 + n)
    with MatMul(m, k, n, dtype="int8", out_dtype="int8", quant=q) as mm:
        assert mm.result_dtype == np.int8 and mm.quant is q
        mm.set_b(b)
        c = mm.run(a)
    assert_npu_equal(c, a, b, q)


def test_results_cover_the_range_and_saturate(rt) -> None:
    a, b, q = random_case(8, 256, 48, "channel_asym", seed=3, steps=100)
    expected = npu_reference(a, b, q)
    assert (expected == 127).any() and (expected == -128).any()
    assert len(np.unique(expected)) > 100  # the case exercises the scales, not only the clip
    with MatMul(8, 256, 48, dtype="int8", out_dtype="int8", quant=q) as mm:
        mm.set_b(b)
        assert_npu_equal(mm.run(a), a, b, q)


def test_each_column_uses_its_own_scale_and_zero_point(rt) -> None:
    """Columns with equal data but different scales / zero points give their own results."""
    k, n = 40, 20
    a = np.ones((2, k), np.int8)
    b = np.full((k, n), 3, np.int8)
    scales = 0.01 * np.arange(1, n + 1)
    zps = np.arange(n) % 5 - 2
    q = QuantParams(a=1.0, b=scales, c=1.0, b_zero_point=zps)
    with MatMul(2, k, n, dtype="int8", out_dtype="int8", quant=q) as mm:
        mm.set_b(b)
        c = mm.run(a)
    assert_npu_equal(c, a, b, q)
    # The case tells columns apart: the same values in another column order give another C.
    for swapped in (QuantParams(1.0, scales[::-1], 1.0, b_zero_point=zps),
                    QuantParams(1.0, scales, 1.0, b_zero_point=np.roll(zps, 1))):  # fmt: skip
        assert not np.array_equal(npu_reference(a, b, swapped), c)


def test_padding_of_k_adds_nothing_with_both_zero_points(rt) -> None:
    """K=33 is padded to 64: padded A columns must contribute 0 even when A and B have zero
    points (a zero-filled A would add a_zp * b_zp per padded column)."""
    k, n = 33, 16
    a = np.zeros((1, k), np.int8)
    b = np.zeros((k, n), np.int8)
    q = QuantParams(a=1.0, b=1.0, c=2.0, a_zero_point=3, b_zero_point=2, c_zero_point=0)
    with MatMul(1, k, n, dtype="int8", out_dtype="int8", quant=q) as mm:
        mm.set_b(b)
        c = mm.run(a)
    np.testing.assert_array_equal(c, np.full((1, n), k * (0 - 3) * (0 - 2) // 2))  # 99: no clip
    assert_npu_equal(c, a, b, q)


def test_batch_sizes_zero_copy_and_out(rt) -> None:
    k, n = 70, 45
    a, b, q = random_case(16, k, n, "channel_asym", seed=11)
    with MatMul([1, 5, 16], k, n, dtype="int8", out_dtype="int8", quant=q) as mm:
        mm.set_b(b)
        for rows in (16, 1, 5):
            assert_npu_equal(mm.run(a[:rows]), a[:rows], b, q)
        out = np.empty((5, n), np.int8)
        assert mm.run(a[:5], out=out) is out
        with pytest.raises(rkrt.ShapeError, match="int8 array"):
            mm.run(a[:5], out=np.empty((5, n), np.int32))
        binding = mm.bind(16)
        assert binding.c.dtype == np.int8
        binding.a[...] = a
        assert_npu_equal(binding.run(), a, b, q)
        assert "int8->int8" in repr(mm)


def test_quant_params_are_normalised() -> None:
    q = QuantParams(a=np.float32(0.5), b=[1, 0.25], c=2, b_zero_point=np.int64(3))
    assert q.a == 0.5 and q.b == (1.0, 0.25) and q.b_zero_point == 3 and q.per_channel
    assert not QuantParams(a=1, b=1, c=1).per_channel
    assert QuantParams(a=1, b=1, c=1, b_zero_point=[0, 1]).per_channel
    assert QuantParams(a=0.1, b=0.1, c=0.1).a == float(np.float32(0.1))  # what C will read


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"a": 0}, ValueError, r"QuantParams\.a must be finite and > 0"),
        ({"a": -0.5}, ValueError, "> 0"),
        ({"c": float("nan")}, ValueError, r"QuantParams\.c"),
        ({"c": float("inf")}, ValueError, r"QuantParams\.c"),
        ({"a": 1e-50}, ValueError, "float32"),  # 0 once rounded to float32
        ({"a": 1e39}, ValueError, "float32"),  # inf in float32
        ({"a": True}, TypeError, "real number"),
        ({"a": "0.1"}, TypeError, "real number"),
        ({"b": "0.1"}, TypeError, r"QuantParams\.b must be a real number"),
        ({"b": [0.1, -0.2]}, ValueError, r"QuantParams\.b\[1\]"),
        ({"b": [[0.1, 0.2]]}, ValueError, "1-D"),
        ({"b": []}, ValueError, "non-empty"),
        ({"a_zero_point": 200}, ValueError, "int8 range"),
        ({"c_zero_point": 1.5}, TypeError, "must be an int"),
        ({"b_zero_point": [0, 300]}, ValueError, r"b_zero_point\[1\] must be in the int8"),
        ({"b_zero_point": [0, False]}, TypeError, "must be an int"),
    ],
)
def test_bad_quant_params_are_refused(kwargs: dict, error: type, match: str) -> None:
    args = {"a": 0.1, "b": 0.1, "c": 0.1, **kwargs}
    with pytest.raises(error, match=match):
        QuantParams(**args)


GOOD = QuantParams(a=0.1, b=0.1, c=0.1)


@pytest.mark.parametrize(
    "n,kwargs,error,match",
    [
        (8, {"quant": QuantParams(0.1, [0.1] * 7, 0.1)}, ValueError, r"7 values.*N = 8"),
        (8, {"quant": QuantParams(0.1, 0.1, 0.1, b_zero_point=[1] * 9)}, ValueError,
         r"b_zero_point has 9 values.*N = 8"),
        (8, {"out_dtype": "int8"}, ValueError, r"needs its scales: pass quant=QuantParams"),
        (8, {"out_dtype": "int8", "quant": {"a": 0.1}}, ValueError, "needs its scales"),
        (8, {"out_dtype": "int32", "quant": GOOD}, ValueError, "applies to dtype='int8', out"),
        (8, {"out_dtype": "float32"}, rkrt.DTypeError, "INT8_MM_INT8_TO_FLOAT32"),
        (8, {"dtype": "float16", "out_dtype": None, "quant": GOOD}, ValueError,
         "float16 -> float32"),
        (8, {"dtype": "float16", "out_dtype": "int8", "quant": GOOD}, rkrt.DTypeError,
         "supported: dtype='float16'"),
        (8, {"out_dtype": "int16"}, rkrt.DTypeError, "not supported"),
    ],
)  # fmt: skip
def test_unsupported_combinations_fail_before_c(rt, n, kwargs, error, match) -> None:
    args = {"dtype": "int8", "out_dtype": "int8", "quant": None, **kwargs}
    with pytest.raises(error, match=match):
        MatMul(2, 32, n, **args)
    assert rt.calls("rknn_matmul_create") == 0 and rt.live()["contexts"] == 0


def test_k_beyond_one_matmul_is_refused_for_int8_results(rt) -> None:
    with pytest.raises(ValueError, match="cannot be added.*out_dtype='int32'"):
        MatMul(1, MAX_K + 1, 16, dtype="int8", out_dtype="int8", quant=GOOD)
    assert rt.calls("rknn_matmul_create") == 0


def test_a_failed_set_quant_params_frees_everything(rt) -> None:
    rt.inject("rknn_matmul_set_quant_params", nth=2)  # B's params
    with pytest.raises(rkrt.RKNNError, match="rknn_matmul_set_quant_params"):
        MatMul(2, 64, 32, dtype="int8", out_dtype="int8", quant=GOOD)
    assert rt.calls("rknn_matmul_set_quant_params") == 2
    # the rt fixture checks that the context made before the failure was destroyed


def test_the_double_refuses_a_b_zero_point_under_a_symmetric_type(rt) -> None:
    """Why rkrt asks for the ASYM types: a SYM one may ignore B's zero point on the NPU."""
    lib = ffi.dlopen(str(library()))
    quant_types = enum("rknn_matmul_quant_type")
    info = ffi.new("rknn_matmul_info*")
    info.M, info.K, info.N = 1, 32, 32
    info.type = enum("rknn_matmul_type")["RKNN_INT8_MM_INT8_TO_INT8"]
    for quant_type, expected in (("PER_LAYER_SYM", ERR_PARAM), ("PER_LAYER_ASYM", 0)):
        info.B_quant_type = quant_types[f"RKNN_QUANT_TYPE_{quant_type}"]
        ctx, attrs = ffi.new("rknn_matmul_ctx*"), ffi.new("rknn_matmul_io_attr*")
        assert lib.rknn_matmul_create(ctx, info, attrs) == 0
        scale, zp = ffi.new("float[]", [0.5]), ffi.new("int32_t[]", [4])
        p = ffi.new("rknn_quant_params*")
        p.name, p.scale, p.scale_len, p.zp, p.zp_len = b"B", scale, 1, zp, 1
        try:
            assert lib.rknn_matmul_set_quant_params(ctx[0], p) == expected
        finally:
            assert lib.rknn_matmul_destroy(ctx[0]) == 0
