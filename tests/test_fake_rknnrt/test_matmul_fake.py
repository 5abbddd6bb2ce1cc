"""The test double's matmul API through raw cffi calls: native layouts and unsafe-call counting.

These are the behaviours rkrt.MatMul relies on the fake to check; they are tested here without
rkrt's guards so the "matmul_unsafe" counter is proven to fire.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pytest
from rkrt_support import library

from rkrt._ffi import ffi as core_ffi
from rkrt._matmul_ffi import enum, ffi

MM = enum("rknn_matmul_type")
FP16, INT8 = MM["RKNN_FLOAT16_MM_FLOAT16_TO_FLOAT32"], MM["RKNN_INT8_MM_INT8_TO_INT32"]
ERR_PARAM = -5


class Raw:
    """A matmul context driven by hand, freeing whatever it made."""

    def __init__(self) -> None:
        self.lib = ffi.dlopen(str(library()))
        self.core = core_ffi.dlopen(str(library()))
        self.handles: list[int] = []
        self.mems: list[tuple[int, Any]] = []

    def info(self, m: int, k: int, n: int, mm_type: int, b_layout: int = 0, ac_layout: int = 0):
        info = ffi.new("rknn_matmul_info*")
        info.M, info.K, info.N, info.type = m, k, n, mm_type
        info.B_layout, info.AC_layout = b_layout, ac_layout
        return info

    def create(self, info: Any) -> tuple[int, int, Any]:
        ctx = ffi.new("rknn_matmul_ctx*")
        attrs = ffi.new("rknn_matmul_io_attr*")
        ret = self.lib.rknn_matmul_create(ctx, info, attrs)
        if ret == 0:
            self.handles.append(int(ctx[0]))
        return ret, int(ctx[0]), attrs

    def mem(self, handle: int, size: int) -> Any:
        mem = self.core.rknn_create_mem(handle, size)
        assert mem != ffi.NULL
        self.mems.append((handle, mem))
        return mem

    def array(self, mem: Any, dtype: Any, count: int) -> np.ndarray:
        return np.frombuffer(ffi.buffer(mem.virt_addr, mem.size), dtype, count=count)

    def close(self) -> None:
        for handle, mem in self.mems:
            assert self.core.rknn_destroy_mem(handle, mem) == 0
        for handle in self.handles:
            assert self.lib.rknn_matmul_destroy(handle) == 0


@pytest.fixture
def raw(rt) -> Iterator[Raw]:
    r = Raw()
    yield r
    r.close()


def dims(attr: Any) -> tuple[int, ...]:
    return tuple(attr.dims[i] for i in range(attr.n_dims))


@pytest.mark.parametrize("mm_type,a_sub,b_tile", [(FP16, 8, (16, 32)), (INT8, 16, (32, 32))])
def test_rk3588_native_layouts(raw: Raw, mm_type: int, a_sub: int, b_tile: tuple) -> None:
    m, k, n = 3, 64, 64
    ret, h, attrs = raw.create(raw.info(m, k, n, mm_type, b_layout=1, ac_layout=1))
    assert ret == 0
    sub_n, sub_k = b_tile
    assert dims(attrs.A) == (k // a_sub, m, a_sub)
    assert dims(attrs.B) == (n // sub_n, k // sub_k, sub_n, sub_k)
    assert dims(attrs.C) == (n // 4, m, 4)
    ab = np.float16 if mm_type == FP16 else np.int8
    c_dt = np.float32 if mm_type == FP16 else np.int32
    rng = np.random.default_rng(0)
    a = rng.integers(-8, 8, (m, k)).astype(ab)
    b = rng.integers(-8, 8, (k, n)).astype(ab)
    mems = [raw.mem(h, attrs.A.size), raw.mem(h, attrs.B.size), raw.mem(h, attrs.C.size)]
    # The layouts of the header, written by hand: A (K/sub, M, sub), B (N/sn, K/sk, sn, sk).
    raw.array(mems[0], ab, m * k)[:] = a.reshape(m, k // a_sub, a_sub).transpose(1, 0, 2).ravel()
    native_b = b.reshape(k // sub_k, sub_k, n // sub_n, sub_n).transpose(2, 0, 3, 1).ravel()
    raw.array(mems[1], ab, k * n)[:] = native_b
    for mem, name in zip(mems, "ABC"):
        assert raw.lib.rknn_matmul_set_io_mem(h, mem, ffi.addressof(attrs, name)) == 0
    assert raw.lib.rknn_matmul_run(h) == 0
    c = raw.array(mems[2], c_dt, m * n).reshape(n // 4, m, 4).transpose(1, 0, 2).reshape(m, n)
    np.testing.assert_array_equal(c, a.astype(np.int64) @ b.astype(np.int64))
    # The runtime's converter produces the same native B.
    out = np.zeros(k * n, ab)
    assert (
        raw.lib.rknn_B_normal_layout_to_native_layout(
            ffi.from_buffer(b), ffi.from_buffer(out), k, n, raw.info(m, k, n, mm_type)
        )
        == 0
    )
    np.testing.assert_array_equal(out, native_b)


def test_rk3588_native_b_is_split_in_8192_row_segments(raw: Raw) -> None:
    k, n = 8192 + 64, 16
    b = (np.arange(k * n) % 2039).astype(np.float16).reshape(k, n)  # exact in float16
    out = np.zeros(k * n, np.float16)
    info = raw.info(1, k, n, FP16)
    assert (
        raw.lib.rknn_B_normal_layout_to_native_layout(
            ffi.from_buffer(b), ffi.from_buffer(out), k, n, info
        )
        == 0
    )

    def tiles(part: np.ndarray) -> np.ndarray:
        kk = part.shape[0]
        return part.reshape(kk // 32, 32, n // 16, 16).transpose(2, 0, 3, 1).ravel()

    np.testing.assert_array_equal(out, np.concatenate([tiles(b[:8192]), tiles(b[8192:])]))


@pytest.mark.parametrize(
    "m,k,n,mm_type",
    [(1, 48, 16, FP16), (1, 64, 8, FP16), (1, 64, 16, INT8), (1, 10240 + 32, 16, FP16),
     (0, 32, 16, FP16)],
)  # fmt: skip
def test_create_refuses_and_counts_what_would_crash(rt, raw, m, k, n, mm_type) -> None:
    ret, _, _ = raw.create(raw.info(m, k, n, mm_type))
    assert ret == ERR_PARAM
    assert rt.counter("matmul_unsafe") == 1
    rt.reset()


def test_small_mem_unbound_run_and_stale_shape_are_counted(rt, raw) -> None:
    ret, h, attrs = raw.create(raw.info(2, 32, 16, FP16))
    assert ret == 0
    assert raw.lib.rknn_matmul_run(h) == ERR_PARAM  # nothing bound
    small = raw.mem(h, attrs.A.size - 2)
    assert raw.lib.rknn_matmul_set_io_mem(h, small, ffi.addressof(attrs, "A")) == ERR_PARAM
    assert rt.counter("matmul_unsafe") == 2
    rt.reset()

    shapes = ffi.new("rknn_matmul_shape[]", [(1, 32, 16), (4, 32, 16)])
    dyn = ffi.new("rknn_matmul_io_attr[]", 2)
    ctx = ffi.new("rknn_matmul_ctx*")
    info = raw.info(4, 32, 16, FP16)
    assert raw.lib.rknn_matmul_create_dynamic_shape(ctx, info, 2, shapes, dyn) == 0
    h2 = int(ctx[0])
    raw.handles.append(h2)
    a, b, c = (raw.mem(h2, dyn[1].A.size), raw.mem(h2, dyn[1].B.size), raw.mem(h2, dyn[1].C.size))
    # Binding before a shape is chosen, then running A/C bound for another shape.
    assert raw.lib.rknn_matmul_set_io_mem(h2, a, ffi.addressof(dyn[0], "A")) == ERR_PARAM
    assert raw.lib.rknn_matmul_set_dynamic_shape(h2, ffi.addressof(shapes, 0)) == 0
    for mem, name in ((a, "A"), (b, "B"), (c, "C")):
        assert raw.lib.rknn_matmul_set_io_mem(h2, mem, ffi.addressof(dyn[0], name)) == 0
    assert raw.lib.rknn_matmul_run(h2) == 0
    assert raw.lib.rknn_matmul_set_dynamic_shape(h2, ffi.addressof(shapes, 1)) == 0
    assert raw.lib.rknn_matmul_run(h2) == ERR_PARAM
    assert rt.counter("matmul_unsafe") == 2
    rt.reset()


def test_destroyed_mem_and_foreign_handle(rt, raw) -> None:
    ret, h, attrs = raw.create(raw.info(1, 32, 16, FP16))
    mems = [raw.mem(h, attrs.A.size), raw.mem(h, attrs.B.size), raw.mem(h, attrs.C.size)]
    for mem, name in zip(mems, "ABC"):
        assert raw.lib.rknn_matmul_set_io_mem(h, mem, ffi.addressof(attrs, name)) == 0
    handle, a = raw.mems.pop(0)
    assert raw.core.rknn_destroy_mem(handle, a) == 0
    assert raw.lib.rknn_matmul_run(h) == ERR_PARAM
    assert rt.counter("matmul_unsafe") == 1
    # A model-API call on a matmul context is refused, not crashed.
    assert raw.core.rknn_run(h, ffi.NULL) == -7
    rt.reset()


def test_int8_quantized_output_uses_the_scales(raw: Raw) -> None:
    m, k, n = 2, 32, 32
    info = raw.info(m, k, n, MM["RKNN_INT8_MM_INT8_TO_INT8"])
    info.B_quant_type = enum("rknn_matmul_quant_type")["RKNN_QUANT_TYPE_PER_CHANNEL_SYM"]
    ret, h, attrs = raw.create(info)
    assert ret == 0
    b_scales = np.linspace(0.01, 0.05, n).astype(np.float32)
    keep = []
    for name, scales in (("A", [0.1]), ("B", b_scales), ("C", [0.5])):
        p = ffi.new("rknn_quant_params*")
        p.name = name.encode()
        arr = ffi.new("float[]", list(scales))
        keep.append(arr)
        p.scale, p.scale_len = arr, len(scales)
        assert raw.lib.rknn_matmul_set_quant_params(h, p) == 0
    rng = np.random.default_rng(1)
    a = rng.integers(-20, 20, (m, k)).astype(np.int8)
    b = rng.integers(-20, 20, (k, n)).astype(np.int8)
    mems = [raw.mem(h, attrs.A.size), raw.mem(h, attrs.B.size), raw.mem(h, attrs.C.size)]
    raw.array(mems[0], np.int8, m * k)[:] = a.ravel()
    raw.array(mems[1], np.int8, k * n)[:] = b.ravel()
    for mem, name in zip(mems, "ABC"):
        assert raw.lib.rknn_matmul_set_io_mem(h, mem, ffi.addressof(attrs, name)) == 0
    assert raw.lib.rknn_matmul_run(h) == 0
    acc = a.astype(np.int64) @ b.astype(np.int64)
    expected = np.clip(np.rint(acc * 0.1 * b_scales / 0.5), -128, 127)
    got = raw.array(mems[2], np.int8, m * n).reshape(m, n)
    assert np.abs(got - expected).max() <= 1  # float32 rounding of the scale product
