"""A drop-in for Rockchip's ``rknnlite.api.RKNNLite``, built on ``rkrt.Session``.

Programs written for the vendor API switch by changing one line::

    from rknnlite.api import RKNNLite      # before
    from rkrt.lite import RKNNLite         # after

``load_rknn``, ``init_runtime(core_mask=...)``, ``inference(inputs=[...], data_format=...)``,
``release`` and the ``NPU_CORE_*`` constants behave as the vendor's, with these differences:

* ``load_rknn`` and ``init_runtime`` keep the vendor's return codes (0 success, -1
  failure, the reason logged on the ``rkrt.lite`` logger), so the usual
  ``if ret != 0: exit(ret)`` checks still work; the log names the real cause
  (missing file, invalid model, a core mask the SoC lacks, no librknnrt.so).
* ``inference`` raises instead of returning None plus a log line: a wrong input
  shape raises ``rkrt.ShapeError`` (the vendor checks only ``ndim`` and silently
  truncates or over-reads), int64/int32/bool/object arrays raise ``rkrt.DTypeError``
  before the runtime is called (the vendor fails inside the runtime with "Normalize
  does not support for this data type"), a runtime failure raises ``rkrt.RKNNError``
  with the code, and calling it before a successful ``init_runtime`` raises RuntimeError.
* float64 arrays (numpy's default) are converted to float32, which the runtime takes;
  the runtime itself does not accept float64.
* ``inputs_pass_through`` only accepts None or all zeros (no pass-through); anything else
  raises ValueError instead of handing the runtime unconverted bytes.
* ``init_runtime`` takes only ``core_mask``; a mask the SoC cannot honour fails before
  any runtime call. ``verbose`` and ``verbose_file`` are accepted: verbose logs each step
  at INFO level on ``rkrt.lite``, verbose_file also writes that log to the file.
* Tensor attributes are queried once, at ``init_runtime``, not on every call.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional, Sequence, Union

import numpy as np

from .cores import CoreMask
from .errors import RKNNError, RuntimeNotFoundError
from .session import Session
from .tensor import TensorSpec

_log = logging.getLogger("rkrt.lite")

DataFormat = Optional[Union[str, Sequence[Optional[str]]]]
_DATA_FORMATS = (None, "nhwc", "nchw")
# Axis orders turning data given in one 4-D layout into the model's.
_TRANSPOSE = {("nchw", "NHWC"): (0, 2, 3, 1), ("nhwc", "NCHW"): (0, 3, 1, 2)}


class RKNNLite:
    """The vendor's RKNNLite API over rkrt (see the module docstring for the differences)."""

    NPU_CORE_AUTO = int(CoreMask.AUTO)
    NPU_CORE_0 = int(CoreMask.CORE_0)
    NPU_CORE_1 = int(CoreMask.CORE_1)
    NPU_CORE_2 = int(CoreMask.CORE_2)
    NPU_CORE_0_1 = int(CoreMask.CORE_0_1)
    NPU_CORE_0_1_2 = int(CoreMask.CORE_0_1_2)
    NPU_CORE_ALL = int(CoreMask.ALL)

    def __init__(self, verbose: bool = False, verbose_file: Optional[str] = None) -> None:
        self._model: Optional[bytes] = None
        self._session: Optional[Session] = None
        self._verbose = verbose
        if verbose_file is not None:
            _log.addHandler(logging.FileHandler(verbose_file))

    def _info(self, message: str, *args: Any) -> None:
        if self._verbose:
            _log.info(message, *args)

    def load_rknn(self, path: Union[str, os.PathLike]) -> int:
        """Read the model file; 0 on success, -1 (reason logged) on failure."""
        try:
            with open(path, "rb") as f:
                self._model = f.read()
        except OSError as exc:
            _log.error("load_rknn: cannot read %s: %s", os.fspath(path), exc)
            return -1
        self._info("load_rknn: %s (%d bytes)", os.fspath(path), len(self._model))
        return 0

    def init_runtime(self, core_mask: int = NPU_CORE_AUTO) -> int:
        """Open the loaded model on the NPU; 0 on success, -1 (reason logged) on failure."""
        if self._model is None:
            _log.error("init_runtime: no model loaded; call load_rknn(path) first")
            return -1
        self.release()
        try:
            self._session = Session(self._model, core_mask=core_mask)
        except (RKNNError, RuntimeNotFoundError, ValueError) as exc:
            _log.error("init_runtime: %s", exc)
            return -1
        self._info(
            "init_runtime: inputs %s, outputs %s",
            [s.shape for s in self._session.inputs],
            [s.shape for s in self._session.outputs],
        )
        return 0

    def inference(
        self,
        inputs: Sequence[Any],
        data_format: DataFormat = None,
        inputs_pass_through: Optional[Sequence[int]] = None,
    ) -> list[np.ndarray]:
        """Run the model on `inputs` (one array per model input); float32 outputs."""
        if self._session is None:
            raise RuntimeError(
                "inference() before a successful init_runtime(): call load_rknn(path) and "
                "init_runtime() and check that both return 0"
            )
        if inputs_pass_through is not None and any(inputs_pass_through):
            raise ValueError(
                f"inputs_pass_through={list(inputs_pass_through)!r}: rkrt.lite does not pass "
                "unconverted bytes to the runtime; give float32, float16 or uint8 data and "
                "leave inputs_pass_through unset"
            )
        if not isinstance(inputs, (list, tuple)):
            raise TypeError(
                f"inputs must be a list of arrays (one per model input), got "
                f"{type(inputs).__name__}; wrap it: inputs=[x]"
            )
        formats = _formats(data_format, len(inputs))
        specs = self._session.inputs
        arrays = [
            _prepared(x, fmt, specs[i] if i < len(specs) else None)
            for i, (x, fmt) in enumerate(zip(inputs, formats))
        ]
        return self._session.run(*arrays)

    def release(self) -> None:
        """Close the NPU context (the loaded model stays loaded); idempotent."""
        if self._session is not None:
            self._session.close()
            self._session = None


def _formats(data_format: DataFormat, n_inputs: int) -> list[Optional[str]]:
    formats = (
        list(data_format) if isinstance(data_format, (list, tuple)) else [data_format] * n_inputs
    )
    if len(formats) != n_inputs:
        raise ValueError(f"data_format has {len(formats)} entries for {n_inputs} inputs")
    for fmt in formats:
        if fmt not in _DATA_FORMATS:
            raise ValueError(f"data_format {fmt!r} is not one of None, 'nhwc', 'nchw'")
    return formats


def _prepared(x: Any, data_format: Optional[str], spec: Optional[TensorSpec]) -> np.ndarray:
    """The input as the model's layout; float64 narrowed to float32, other dtypes untouched."""
    array = np.asarray(x)
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    if spec is not None and array.ndim == 4 and data_format is not None:
        order = _TRANSPOSE.get((data_format, spec.format))
        if order is not None:
            array = np.ascontiguousarray(array.transpose(order))
    return array
