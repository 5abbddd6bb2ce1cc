"""rkrt.io_layout: which attr a zero-copy buffer is bound with, its size, its numpy view."""

from __future__ import annotations

import numpy as np

from rkrt._ffi import enum, ffi
from rkrt.io_layout import plan, viewable
from rkrt.tensor import TYPES

FMT = enum("rknn_tensor_format")
F16, F32, I8 = TYPES["RKNN_TENSOR_FLOAT16"], TYPES["RKNN_TENSOR_FLOAT32"], TYPES["RKNN_TENSOR_INT8"]


def attr(fmt: str, dims, type_: int, w_stride: int = 0, size_with_stride: int = 0):
    a = ffi.new("rknn_tensor_attr*")
    a.fmt, a.n_dims, a.type = FMT[f"RKNN_TENSOR_{fmt}"], len(dims), type_
    for k, d in enumerate(dims):
        a.dims[k] = d
    a.n_elems = int(np.prod(dims))
    a.size = a.n_elems * 2
    a.w_stride, a.size_with_stride = w_stride, size_with_stride or a.size
    return a


def test_padded_nhwc_native_buffer_is_viewed_through_its_padding() -> None:
    plain = attr("NHWC", (1, 2, 3, 4), F16, w_stride=3)
    native = attr("NHWC", (1, 2, 3, 4), F16, w_stride=8, size_with_stride=1 * 2 * 8 * 4 * 2)
    layout = plan(native, plain, np.dtype(np.float16), external=False)
    assert layout.native and layout.attr.w_stride == 8 and layout.row_stride == 8
    assert layout.nbytes == 2 * 8 * 4 * 2
    assert layout.attr.size_with_stride == native.size_with_stride
    raw = np.full(layout.nbytes // 2, -1, np.float16)
    view = layout.view(ffi.from_buffer(raw), layout.nbytes)
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    view[...] = x  # numpy converts float32 -> float16 and skips the padding
    rows = raw.reshape(1, 2, 8, 4)
    np.testing.assert_array_equal(rows[:, :, :3, :], x)
    assert (rows[:, :, 3:, :] == -1).all()  # padding untouched


def test_layouts_numpy_cannot_view_are_bound_plain_with_the_runtimes_strides() -> None:
    plain = attr("NHWC", (1, 4, 4, 3), I8, w_stride=4)
    native = attr("NC1HWC2", (1, 1, 4, 4, 16), I8, w_stride=4, size_with_stride=256)
    assert not viewable(native, plain)
    layout = plan(native, plain, np.dtype(np.int8), external=False)
    assert not layout.native and layout.attr.fmt == FMT["RKNN_TENSOR_NHWC"]
    assert layout.attr.w_stride == 4 and layout.attr.type == I8  # kept, not zeroed
    assert layout.nbytes == 48 and layout.shape == (1, 4, 4, 3)


def test_float32_and_external_buffers_take_the_plain_attr_in_their_type() -> None:
    plain = attr("UNDEFINED", (2, 5), F16)
    native = attr("UNDEFINED", (2, 5), F16, size_with_stride=64)
    native_layout = plan(native, plain, np.dtype(np.float16), external=False)
    assert native_layout.native and native_layout.nbytes == 64
    for dtype, external in ((np.float32, False), (np.float16, True)):
        layout = plan(native, plain, np.dtype(dtype), external=external)
        assert not layout.native and layout.attr.type == (F32 if dtype is np.float32 else F16)
        assert layout.nbytes == 10 * np.dtype(dtype).itemsize == layout.attr.size
