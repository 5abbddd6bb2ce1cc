"""Zero-copy buffer layouts: the attr ``rknn_set_io_mem`` gets, the bytes a buffer needs, and
the numpy view of that buffer in the tensor's logical shape.

Two ways to bind a tensor, after Rockchip's ``rknn_create_mem_demo.cpp`` (RKNN SDK 2.3.2) and
the user guide's zero-copy tables (1.5.2, 4.4.5.2):

- **native**: the runtime's own native attr, unchanged (type, format, ``w_stride``,
  ``size_with_stride``): nothing to convert on the NPU side. Used when the buffer is of the
  native type and the native layout is the logical one, rows possibly padded (NHWC with
  ``w_stride`` > W): numpy then views the padded rows and converts on assignment
  (``b.inputs[0][...] = x``).
- **plain**: the tensor's plain attr as the runtime reported it (format, dims and its
  ``w_stride`` kept), with ``type`` set to the buffer's: the runtime converts type and layout
  (float32 outputs, as the demo binds them; NC1HWC2 inputs, which no numpy view can present
  in the logical shape, bound in their plain layout as the demo binds NHWC images; external
  memory, which its producer writes in the logical layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._ffi import enum, ffi
from .tensor import TYPE_OF_NUMPY

_NHWC = enum("rknn_tensor_format")["RKNN_TENSOR_NHWC"]


def _dims(attr: Any) -> tuple[int, ...]:
    return tuple(int(attr.dims[k]) for k in range(attr.n_dims))


def _row_stride(attr: Any) -> int:
    """Pixels per row of a 4-D NHWC buffer when wider than W (padded rows), else 0."""
    if attr.n_dims == 4 and attr.fmt == _NHWC and attr.w_stride > attr.dims[2]:
        return int(attr.w_stride)
    return 0


def _elements(attr: Any) -> int:
    """Elements the buffer holds, padding included."""
    dims = _dims(attr)
    stride = _row_stride(attr)
    if stride:
        return dims[0] * dims[1] * stride * dims[3]
    return int(np.prod(dims, dtype=np.int64))


def viewable(native: Any, plain: Any) -> bool:
    """Whether the native layout is the logical one, up to padded rows."""
    return (native.fmt == plain.fmt and native.n_dims == plain.n_dims
            and _dims(native) == _dims(plain))  # fmt: skip


@dataclass(frozen=True)
class Layout:
    """How one tensor's buffer is bound: ``attr`` for rknn_set_io_mem, the buffer's ``dtype``,
    ``nbytes`` it needs at this shape, the logical ``shape``, and ``row_stride`` (0 unless
    NHWC rows are padded)."""

    attr: Any
    dtype: np.dtype
    nbytes: int
    shape: tuple[int, ...]
    row_stride: int
    native: bool

    def view(self, address: Any, size: int) -> np.ndarray:
        """The logical-shape numpy view of a buffer at ``address`` (a ``void*``/``char*``)."""
        count = _elements(self.attr)
        flat = np.frombuffer(ffi.buffer(ffi.cast("char*", address), size), self.dtype, count)
        if not self.row_stride:
            return flat.reshape(self.shape)
        n, h, w, c = self.shape
        return flat.reshape(n, h, self.row_stride, c)[:, :, :w, :]


def plan(native: Any, plain: Any, dtype: np.dtype, external: bool) -> Layout:
    """The layout of a buffer of ``dtype`` for the tensor with these native and plain attrs
    (at the current shape); ``external``: memory the caller laid out in the logical layout."""
    shape = _dims(plain)
    if not external and TYPE_OF_NUMPY[dtype] == native.type and viewable(native, plain):
        attr = ffi.new("rknn_tensor_attr*", native[0])
        nbytes = max(int(native.size_with_stride), _elements(native) * dtype.itemsize)
        return Layout(attr, dtype, nbytes, shape, _row_stride(native), True)
    attr = ffi.new("rknn_tensor_attr*", plain[0])
    attr.type = TYPE_OF_NUMPY[dtype]
    attr.size = int(plain.n_elems) * dtype.itemsize
    attr.size_with_stride = nbytes = _elements(plain) * dtype.itemsize
    return Layout(attr, dtype, nbytes, shape, _row_stride(plain), False)
