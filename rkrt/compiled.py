"""A compiled .rknn model as an estimator's forward pass: its Session and its metadata."""

from __future__ import annotations

import os
from concurrent.futures import Future
from typing import Callable, Optional, Sequence

import numpy as np

from .arguments import PathLike
from .batches import compiled_batch_sizes
from .cores import CoreMask, MaskLike, parse_mask
from .metadata import MetadataError, ModelMetadata, read_sidecar, sidecar_path
from .pool import Pool
from .session import Session


def _run_chunk(session: Session, chunk: np.ndarray, out: Optional[np.ndarray]) -> np.ndarray:
    if out is None:
        return session.run(chunk)[0]
    session.run(chunk, out=[out])
    return out


class CompiledModel:
    """The forward pass of a model converted by emit (or scirknn): one Session, or with
    ``cores`` a Pool of one context per core mask, whose ``submit`` runs chunks in parallel.

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
        cores: Optional[Sequence[MaskLike]] = None,
    ) -> None:
        self.source = os.fspath(path)
        self.label = f"({self.source!r})"
        try:
            sidecar: Optional[ModelMetadata] = read_sidecar(path)
        except FileNotFoundError:
            sidecar = None
        self._pool: Optional[Pool] = None
        self.submit: Optional[Callable[[np.ndarray, Optional[np.ndarray]], Future]] = None
        if cores is None:
            self._session = Session(path, core_mask=core_mask, library=library)
        else:
            if parse_mask(core_mask) != CoreMask.AUTO:
                raise ValueError(
                    "give core_mask (one context) or cores (one context per mask), not both"
                )
            self._pool = Pool(path, cores=cores, library=library)
            self._session = self._pool.sessions[0]
            self.submit = self._submit
        try:
            self.metadata = sidecar if sidecar is not None else self._custom_string_metadata()
            accept(self.metadata, self.source)
            self.batch_sizes, self.width = self._check()
        except BaseException:
            self.close()
            raise

    def run(self, chunk: np.ndarray, out: Optional[np.ndarray]) -> np.ndarray:
        """The model's output on one compiled batch of rows, into ``out`` when given."""
        if self._pool is not None:
            return self._pool.apply(_run_chunk, chunk, out).result()
        return _run_chunk(self._session, chunk, out)

    def _submit(self, chunk: np.ndarray, out: Optional[np.ndarray]) -> Future:
        return self._pool.apply(_run_chunk, chunk, out)  # type: ignore[union-attr]

    def close(self) -> None:
        """Release the NPU contexts; idempotent."""
        if self._pool is not None:
            self._pool.close()
        else:
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
        return compiled_batch_sizes(session), width
