"""An onnxruntime-style facade over rkrt, for moving an onnxruntime program to the NPU.

>>> import rkrt.ort as ort                      # was: import onnxruntime as ort
>>> sess = ort.InferenceSession("model.rknn")
>>> name = sess.get_inputs()[0].name
>>> (y,) = sess.run(None, {name: x})

What differs from onnxruntime, on purpose:

* Results are float32 whatever the tensor's native type (``NodeArg.type`` names the native
  one, e.g. ``'tensor(float16)'``): the runtime converts, as rkrt.Session does.
* Inputs are checked as strictly as rkrt.Session checks them: a dtype the runtime cannot take
  raises :class:`InvalidArgument` (also an :class:`rkrt.DTypeError`), a shape the model does
  not accept :class:`InvalidArgument` (also an :class:`rkrt.ShapeError`). Nothing is cast.
* A dimension that differs between the model's compiled shapes is reported as None.
* ``io_binding()``/``run_with_iobinding()``, ``run_with_ort_values()`` and ``OrtValue`` are
  onnxruntime's, over CPU memory; raw pointers are refused (see rkrt.ort_iobinding).
* ``SessionOptions`` and ``RunOptions`` are onnxruntime's, typed alike; their CPU tuning
  has no effect (see rkrt.ort_options), profiling and an optimised-model file raise.
* Providers: ``"RknpuExecutionProvider"`` (the NPU) is what runs; ``"CPUExecutionProvider"``
  is accepted in the list, as onnxruntime programs name it, but no CPU fallback exists.
  Options of the NPU provider: ``core_mask`` (one context, default ``"AUTO"``) or ``cores``
  (a list of core masks, one context each, shared by concurrent ``run`` calls), and
  ``max_pending`` for ``run_async`` (see rkrt.Pool).
"""

from __future__ import annotations

import copy
import os
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

from .errors import DTypeError, ShapeError
from .model_file import Model
from .ort_iobinding import IOBinding, OrtValue, onnx_type
from .ort_options import (
    ExecutionMode,
    ExecutionOrder,
    Fail,
    GraphOptimizationLevel,
    InvalidArgument,
    RunOptions,
    SessionOptions,
    _InvalidDType,
    _InvalidShape,
    check_run_options,
)
from .pool import Pool
from .tensor import TensorSpec

NPU = "RknpuExecutionProvider"
CPU = "CPUExecutionProvider"
_OPTIONS = ("core_mask", "cores", "max_pending")


@dataclass(frozen=True)
class NodeArg:
    """One input or output: ``name``, ``shape`` (None for a varying dimension), ``type``."""

    name: str
    shape: list[Optional[int]]
    type: str


@dataclass(frozen=True)
class ModelMetadata:
    """onnxruntime's model metadata; the .rknn custom string is under ``rknn_custom_string``."""

    custom_metadata_map: dict[str, str] = field(default_factory=dict)
    description: str = ""
    domain: str = ""
    graph_description: str = ""
    graph_name: str = ""
    producer_name: str = "rknn"
    version: int = 0


def get_available_providers() -> list[str]:
    """The providers InferenceSession accepts, the NPU first."""
    return [NPU, CPU]


def get_device() -> str:
    """What onnxruntime calls the device it runs on."""
    return "NPU"


def _node_args(specs: Sequence[TensorSpec], shapes: Sequence[Sequence[tuple[int, ...]]]) -> list:
    args = []
    for spec, accepted in zip(specs, shapes):
        dims: list[Optional[int]] = list(spec.shape)
        for k, d in enumerate(dims):
            if any(len(s) != len(dims) or s[k] != d for s in accepted):
                dims[k] = None
        args.append(NodeArg(spec.name, dims, onnx_type(spec.dtype)))
    return args


def _npu_options(providers: Any, provider_options: Any) -> dict[str, Any]:
    """The NPU provider's options from onnxruntime-style ``providers``/``provider_options``."""
    names: list[str] = []
    options: list[dict[str, Any]] = []
    for p in providers if providers is not None else [NPU]:
        name, opts = (p[0], dict(p[1])) if isinstance(p, tuple) else (p, {})
        names.append(name)
        options.append(opts)
    if provider_options is not None:
        if len(provider_options) != len(names):
            raise ValueError(
                f"provider_options has {len(provider_options)} entries for {len(names)} "
                "providers; give one dict per provider, in the same order"
            )
        options = [dict(o) for o in provider_options]
    unknown = [n for n in names if n not in (NPU, CPU)]
    if unknown:
        raise ValueError(
            f"unknown providers {unknown}: rkrt.ort runs on the NPU ({NPU!r}); "
            f"{CPU!r} is accepted in the list but never used"
        )
    npu: dict[str, Any] = {}
    for name, opts in zip(names, options):
        if name == CPU and opts:
            raise ValueError(f"{CPU} options {opts} have no effect in rkrt.ort; remove them")
        if name == NPU:
            npu = opts
    bad = [k for k in npu if k not in _OPTIONS]
    if bad or ("core_mask" in npu and "cores" in npu):
        raise ValueError(
            f"{NPU} options are {_OPTIONS} ('core_mask' or 'cores', not both); got {sorted(npu)}"
        )
    return npu


class InferenceSession:
    """An opened .rknn model with onnxruntime's InferenceSession API (see the module doc)."""

    def __init__(
        self,
        path_or_bytes: Union[Model, str, os.PathLike],
        sess_options: Optional[SessionOptions] = None,
        providers: Optional[Sequence[Union[str, tuple[str, dict[str, Any]]]]] = None,
        provider_options: Optional[Sequence[dict[str, Any]]] = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise ValueError(
                f"rkrt.ort's InferenceSession takes no {sorted(kwargs)}: the graph was "
                "optimised when the .rknn was built; remove them"
            )
        if sess_options is None:
            sess_options = SessionOptions()
        elif not isinstance(sess_options, SessionOptions):
            raise TypeError(
                "sess_options must be rkrt.ort.SessionOptions or None, not "
                f"{type(sess_options).__name__}"
            )
        sess_options.refuse_unsupported()
        self._sess_options = copy.deepcopy(sess_options)
        npu = _npu_options(providers, provider_options)
        cores = npu.get("cores", [npu.get("core_mask", "AUTO")])
        self._providers = [NPU]
        self._provider_options = {NPU: {k: str(v) for k, v in npu.items()}}
        self._pool = Pool(path_or_bytes, cores=cores, max_pending=npu.get("max_pending"))
        session = self._pool.sessions[0]
        # One context needs no idle queue: its Session serialises concurrent runs itself.
        self._run_one = session.run if len(self._pool) == 1 else self._pool.run
        shapes = session.input_shapes
        self._inputs = _node_args(session.inputs, list(zip(*shapes)))
        self._outputs = _node_args(session.outputs, list(zip(*session.output_shapes)))
        self._out_index = {o.name: i for i, o in enumerate(self._outputs)}
        self._in_names = [i.name for i in self._inputs]
        custom = session.custom_string
        self._meta = ModelMetadata({"rknn_custom_string": custom} if custom else {})

    def get_inputs(self) -> list[NodeArg]:
        """The model's inputs, in order."""
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        """The model's outputs, in order."""
        return list(self._outputs)

    def get_modelmeta(self) -> ModelMetadata:
        """The model's metadata: the .rknn custom string in ``custom_metadata_map``."""
        return self._meta

    def get_session_options(self) -> SessionOptions:
        """A copy of the options the session was opened with (onnxruntime returns one too)."""
        return copy.deepcopy(self._sess_options)

    def get_providers(self) -> list[str]:
        """The providers this session runs on."""
        return list(self._providers)

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        """Each provider's options, as strings (like onnxruntime)."""
        return {k: dict(v) for k, v in self._provider_options.items()}

    def _feed(self, input_feed: Mapping[str, Any]) -> list[Any]:
        if not isinstance(input_feed, Mapping):
            raise InvalidArgument(
                f"input_feed must be a dict of input name to array, not "
                f"{type(input_feed).__name__}; the model's inputs are {self._in_names}"
            )
        if len(input_feed) == len(self._in_names):  # then every name found means none unknown
            try:
                return [input_feed[n] for n in self._in_names]
            except KeyError:
                pass
        unknown = [k for k in input_feed if k not in self._in_names]
        missing = [n for n in self._in_names if n not in input_feed]
        if unknown or missing:
            raise InvalidArgument(
                f"input_feed names do not match the model: unknown {unknown}, missing {missing}; "
                f"the model's inputs are {self._in_names}"
            )
        return [input_feed[n] for n in self._in_names]

    def _select(self, output_names: Optional[Sequence[str]]) -> Optional[list[int]]:
        if not output_names:
            return None
        unknown = [n for n in output_names if n not in self._out_index]
        if unknown:
            raise InvalidArgument(
                f"unknown output names {unknown}; the model's outputs are {list(self._out_index)}"
            )
        return [self._out_index[n] for n in output_names]

    def run(
        self,
        output_names: Optional[Sequence[str]],
        input_feed: Mapping[str, Any],
        run_options: Optional[RunOptions] = None,
    ) -> list[np.ndarray]:
        """The outputs named (all for None or []), for inputs given by name."""
        check_run_options(run_options)
        picked = self._select(output_names)
        results = self._run(self._feed(input_feed))
        return results if picked is None else [results[i] for i in picked]

    def _args(self, arrays: list[Any]) -> Sequence[Any]:
        """Session.run's arguments: arrays positionally (its fast path); anything else by name,
        so that a tuple or list given for one input is never taken for the list of inputs."""
        if all(type(a) is np.ndarray for a in arrays):
            return arrays
        return [dict(zip(self._in_names, arrays))]

    def _run(self, arrays: list[Any], out: Optional[list[np.ndarray]] = None) -> list[np.ndarray]:
        try:
            return self._run_one(*self._args(arrays), out=out)
        except DTypeError as exc:
            raise _InvalidDType(str(exc)) from None
        except ShapeError as exc:
            raise _InvalidShape(str(exc)) from None

    def run_with_ort_values(
        self,
        output_names: Optional[Sequence[str]],
        input_dict_ort_values: Mapping[str, OrtValue],
        run_options: Optional[RunOptions] = None,
    ) -> list[OrtValue]:
        """:meth:`run` with OrtValues in and out (each output a new one)."""
        check_run_options(run_options)
        picked = self._select(output_names)
        values = self._feed(input_dict_ort_values)
        bad = [type(v).__name__ for v in values if not isinstance(v, OrtValue)]
        if bad:
            raise TypeError(
                f"run_with_ort_values takes rkrt.ort.OrtValue inputs, got {bad}; wrap arrays "
                "with OrtValue.ortvalue_from_numpy, or pass them to run()"
            )
        results = self._run([v.numpy() for v in values])
        return [OrtValue(results[i]) for i in (range(len(results)) if picked is None else picked)]

    def io_binding(self) -> IOBinding:
        """A new IOBinding for :meth:`run_with_iobinding` (see rkrt.ort_iobinding)."""
        return IOBinding(self)

    def run_with_iobinding(
        self, iobinding: IOBinding, run_options: Optional[RunOptions] = None
    ) -> None:
        """Run on the bound inputs; the bound outputs are then in ``iobinding.get_outputs()``
        (written into their OrtValues, if bound to ones)."""
        if not isinstance(iobinding, IOBinding) or iobinding.session is not self:
            raise InvalidArgument(
                "run_with_iobinding takes an IOBinding made by this session's io_binding()"
            )
        check_run_options(run_options)
        plan = iobinding.plan()
        iobinding.keep(plan, self._run(plan.feed, plan.out))

    def run_async(
        self,
        output_names: Optional[Sequence[str]],
        input_feed: Mapping[str, Any],
        callback: Callable[[Optional[list[np.ndarray]], Any, str], None],
        user_data: Any = None,
        run_options: Optional[RunOptions] = None,
    ) -> None:
        """Run in the background, then ``callback(outputs, user_data, error)`` on a pool thread
        (``error`` is "" on success, else the message, with ``outputs`` None)."""
        check_run_options(run_options)
        picked = self._select(output_names)
        future = self._pool.submit(*self._args(self._feed(input_feed)))

        def done(f: Future) -> None:
            if f.cancelled():
                callback(None, user_data, "cancelled: the session was closed")
                return
            exc = f.exception()
            if exc is not None:
                callback(None, user_data, str(exc))
                return
            results = f.result()
            callback(results if picked is None else [results[i] for i in picked], user_data, "")

        future.add_done_callback(done)

    def close(self) -> None:
        """Release the NPU contexts (onnxruntime frees them when the session is collected)."""
        self._pool.close()

    def __enter__(self) -> InferenceSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "ExecutionMode",
    "ExecutionOrder",
    "Fail",
    "GraphOptimizationLevel",
    "IOBinding",
    "InferenceSession",
    "InvalidArgument",
    "ModelMetadata",
    "NodeArg",
    "OrtValue",
    "RunOptions",
    "SessionOptions",
    "get_available_providers",
    "get_device",
]
