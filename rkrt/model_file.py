"""What rknn_init is given: a model as a path or its bytes, read and checked once."""

from __future__ import annotations

import os
from typing import Union

from .arguments import PathLike

Model = Union[PathLike, bytes, bytearray, memoryview]


def read_model(model: Model) -> bytes | memoryview:
    """The model's bytes; TypeError for anything but a path or bytes, ValueError when empty."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        data, source = model, "the model bytes"
    elif isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as f:
            data, source = f.read(), os.fspath(model)
    else:
        raise TypeError(
            f"model must be a path or the model's bytes, not {type(model).__name__}; "
            "pass e.g. Session('model.rknn') or Session(Path('model.rknn').read_bytes())"
        )
    if memoryview(data).nbytes == 0:
        # rknn_init reads a size of 0 as "model is a NUL-terminated file path": an empty
        # buffer would send the runtime reading whatever memory follows it.
        raise ValueError(f"{source}: the model is empty (0 bytes); pass a .rknn file's contents")
    return data


# The tags of an ONNX ModelProto's fields 2 to 8 (producer_name ... opset_import), one of
# which follows its field 1 (ir_version, a small varint) in every serialised model.
_ONNX_SECOND = frozenset((0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42))


def is_onnx(data: bytes | memoryview) -> bool:
    """Whether ``data`` starts as a serialised ONNX model does (what a user coming from
    onnxruntime passes by habit)."""
    head = bytes(memoryview(data)[:3])
    return len(head) == 3 and head[0] == 0x08 and 0 < head[1] < 0x80 and head[2] in _ONNX_SECOND


ONNX_HINT = (
    "these bytes are an ONNX model, not a .rknn one: convert it on the host with "
    "rknn-toolkit2 (a scikit-learn model: python -m emit), then open the .rknn"
)
