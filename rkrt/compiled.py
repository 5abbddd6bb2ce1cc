"""A compiled .rknn model as an estimator's forward pass: its Session and its metadata."""

from __future__ import annotations

import os
from typing import Callable, Optional

import numpy as np

from .arguments import PathLike
from .cores import MaskLike
from .metadata import MetadataError, ModelMetadata, read_sidecar, sidecar_path
from .session import Session


class CompiledModel:
    """The forward pass of a model converted by emit (or scirknn): one Session.

    ``metadata`` comes from the sidecar when there is one (a wrong sidecar fails before the
    runtime is touched), else from the model's custom string. ``accept`` sees it first (the
    estimator refusing a task it cannot run), then the model's tensors are checked against it.
    """

    def __init__(
        self,
        path: PathLike,
        core_mask: MaskLike,
        library: Optional[str],
        accept: Callable[[ModelMetadata, str], None],
    ) -> None:
        self.source = os.fspath(path)
        self.label = f"({self.source!r})"
        try:
            sidecar: Optional[ModelMetadata] = read_sidecar(path)
        except FileNotFoundError:
            sidecar = None
        self._session = session = Session(path, core_mask=core_mask, library=library)
        try:
            self.metadata = sidecar if sidecar is not None else self._custom_string_metadata()
            accept(self.metadata, self.source)
            self.batch_sizes, self.width = self._check()
        except BaseException:
            session.close()
            raise

    def run(self, chunk: np.ndarray, out: Optional[np.ndarray]) -> np.ndarray:
        """The model's output on one compiled batch of rows, into ``out`` when given."""
        if out is None:
            return self._session.run(chunk)[0]
        self._session.run(chunk, out=[out])
        return out

    def close(self) -> None:
        """Release the NPU context; idempotent."""
        self._session.close()

    def _custom_string_metadata(self) -> ModelMetadata:
        text = self._session.custom_string
        if not text.strip():
            raise MetadataError(
                f"{self.source}: no sidecar at {sidecar_path(self.source)} and the model's "
                "custom string is empty, so nothing says what its outputs mean. Copy the .json "
                "written with the model next to it, or convert it again with emit (which "
                "fills both)."
            )
        return ModelMetadata.from_custom_string(text, source=f"custom string of {self.source}")

    def _check(self) -> tuple[tuple[int, ...], int]:
        """The model's batch sizes (largest first) and output width, checked against the
        metadata."""
        path, session, metadata = self.source, self._session, self.metadata
        if len(session.inputs) != 1 or len(session.outputs) != 1:
            raise ValueError(
                f"{path} has {len(session.inputs)} inputs and {len(session.outputs)} outputs; "
                "rkrt.sklearn runs models with one input and one output, as emit builds them. "
                "Use rkrt.Session for other models."
            )
        in_shape, out_shape = session.inputs[0].shape, session.outputs[0].shape
        if len(in_shape) != 2 or len(out_shape) != 2:
            raise ValueError(
                f"{path} takes {in_shape} and returns {out_shape}; rkrt.sklearn expects "
                "(batch, features) -> (batch, outputs) tensors"
            )
        if in_shape[1] != metadata.n_features_in:
            raise MetadataError(
                f"{path}: the metadata says {metadata.n_features_in} features but the model's "
                f"input is {in_shape}; the metadata belongs to another model"
            )
        width = out_shape[1]
        if metadata.classes is not None:
            n_classes = len(metadata.classes)
            binary_single = metadata.task == "classifier" and n_classes == 2 and width == 1
            if width != n_classes and not binary_single:
                raise MetadataError(
                    f"{path}: the metadata lists {n_classes} classes but the model outputs "
                    f"{width} values per row; the metadata belongs to another model"
                )
        sizes = tuple(sorted({int(s[0][0]) for s in session.input_shapes}, reverse=True))
        return sizes, width
