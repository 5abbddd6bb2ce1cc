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
