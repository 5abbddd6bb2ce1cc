"""TensorSpec, and the dtype rules that map numpy arrays onto rknn tensor types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._ffi import enum, ffi

TYPES = enum("rknn_tensor_type")
FLOAT32, FLOAT16 = TYPES["RKNN_TENSOR_FLOAT32"], TYPES["RKNN_TENSOR_FLOAT16"]
INT8, UINT8 = TYPES["RKNN_TENSOR_INT8"], TYPES["RKNN_TENSOR_UINT8"]

_NUMPY_OF_TYPE = {
    TYPES[f"RKNN_TENSOR_{name.upper()}"]: np.dtype(name)
    for name in ("float32", "float16", "int8", "uint8", "int16", "uint16", "int32", "uint32",
                 "int64", "bool")
}  # fmt: skip
# numpy has no int4 or bfloat16: those tensors are described by their raw storage.
_NUMPY_OF_TYPE[TYPES["RKNN_TENSOR_INT4"]] = np.dtype("V1")
_NUMPY_OF_TYPE[TYPES["RKNN_TENSOR_BFLOAT16"]] = np.dtype("V2")
TYPE_OF_NUMPY = {_NUMPY_OF_TYPE[t]: t for t in (FLOAT32, FLOAT16, INT8, UINT8)}

_FORMATS = {v: k.removeprefix("RKNN_TENSOR_") for k, v in enum("rknn_tensor_format").items()}
_QNT = {v: k.removeprefix("RKNN_TENSOR_QNT_") for k, v in enum("rknn_tensor_qnt_type").items()}


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as the runtime describes it (queried once, at open).

    ``dtype`` is the tensor's native type on the NPU; ``size`` its byte count in that type.
    ``format`` is "NCHW", "NHWC", "NC1HWC2" or "UNDEFINED"; ``qnt_type`` "NONE", "DFP" or
    "AFFINE_ASYMMETRIC", with ``scale`` and ``zero_point`` for affine quantization.
    """

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    format: str
    qnt_type: str
    scale: float
    zero_point: int
    size: int

    @classmethod
    def from_attr(cls, attr: Any) -> TensorSpec:
        """A spec from a filled ``rknn_tensor_attr``."""
        return cls(
            index=int(attr.index),
            name=ffi.string(attr.name).decode("utf-8", "replace"),
            shape=tuple(int(attr.dims[i]) for i in range(attr.n_dims)),
            dtype=_NUMPY_OF_TYPE.get(attr.type, np.dtype("V1")),
            format=_FORMATS.get(attr.fmt, str(attr.fmt)),
            qnt_type=_QNT.get(attr.qnt_type, str(attr.qnt_type)),
            scale=float(attr.scale),
            zero_point=int(attr.zp),
            size=int(attr.size),
        )

    @property
    def n_elems(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))


def accepted_input_dtypes(native: np.dtype) -> tuple[np.dtype, ...]:
    """Source dtypes the runtime converts (pass_through=0) into an input of type ``native``.

    The RKNN API user guide's table (1.5.2, 4.4.5.1 "General Input and Output", Table 4-1):
    int8 inputs take int8, uint8 and float32; float16 inputs uint8, float16 and float32
    (float16 into an int8 model is not listed, so it is refused). Other native types (float32
    models) take float32, float16 and uint8. int32/int64 reach the runtime's normalize step
    and fail there; float64 and the rest are unsupported.
    """
    f32, f16, u8 = np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.uint8)
    if native == np.dtype(np.int8):
        return (f32, u8, np.dtype(np.int8))
    return (f32, f16, u8)
