"""onnxruntime's IOBinding and OrtValue for rkrt.ort, so programs that bind their inputs and
preallocate their outputs run unchanged.

All memory is the CPU's (``device_type="cpu"``): the runtime reads the inputs and writes the
outputs there. An OrtValue wraps a numpy array without copying it, and an input is bound by
reference, so changing the array in place changes the next run's input, as in onnxruntime.
When every output is bound to an OrtValue, a run writes the results into them
(``Session.run(out=...)``): a loop then allocates no arrays.

What differs from onnxruntime, on purpose:

* Names, devices and element types are checked when bound, not at the run; errors are
  :class:`rkrt.ort.InvalidArgument` (onnxruntime raises RuntimeError).
* Raw pointers (``bind_input``, ``bind_output(buffer_ptr=...)``) are refused: nothing could
  check what they point to. Bind a numpy array or an OrtValue instead.
* Outputs are float32, as ``InferenceSession.run``'s are; an OrtValue bound to an output is
  float32 too.
* ``update_inplace`` takes data of the OrtValue's own dtype only: onnxruntime copies the bytes
  of another dtype without converting them.
* An output bound without an OrtValue gets a new array at each run (onnxruntime reuses one,
  so an earlier ``numpy()`` of it changes under the caller).
"""

from __future__ import annotations

import operator
from typing import Any, Optional, Sequence

import numpy as np

from .ort_options import InvalidArgument, _InvalidShape

# numpy dtype -> (onnx's name as in NodeArg.type, onnx.TensorProto element code)
_ONNX = {
    np.dtype(np.float32): ("float", 1), np.dtype(np.uint8): ("uint8", 2),
    np.dtype(np.int8): ("int8", 3), np.dtype(np.uint16): ("uint16", 4),
    np.dtype(np.int16): ("int16", 5), np.dtype(np.int32): ("int32", 6),
    np.dtype(np.int64): ("int64", 7), np.dtype(np.bool_): ("bool", 9),
    np.dtype(np.float16): ("float16", 10), np.dtype(np.float64): ("double", 11),
    np.dtype(np.uint32): ("uint32", 12), np.dtype(np.uint64): ("uint64", 13),
}  # fmt: skip
_BY_CODE = {code: dtype for dtype, (_, code) in _ONNX.items()}
_F32 = np.dtype(np.float32)


def onnx_type(dtype: np.dtype) -> str:
    """onnxruntime's name of a tensor of ``dtype``, e.g. ``'tensor(float16)'``."""
    name = _ONNX[dtype][0] if dtype in _ONNX else dtype.name
    return f"tensor({name})"


def _element_dtype(element_type: Any) -> np.dtype:
    """A numpy dtype from a numpy type or an onnx element code (what onnxruntime takes)."""
    if isinstance(element_type, (int, np.integer)) and not isinstance(element_type, bool):
        code = operator.index(element_type)
        if code not in _BY_CODE:
            raise InvalidArgument(
                f"element type {code} is not an onnx element type rkrt.ort has; "
                f"use one of {sorted(_BY_CODE)} or a numpy type such as np.float32"
            )
        return _BY_CODE[code]
    dtype = np.dtype(element_type)
    if dtype not in _ONNX:
        raise InvalidArgument(f"element type {dtype} has no onnx tensor type; use np.float32")
    return dtype


def _cpu(device_type: str, device_id: int) -> None:
    if str(device_type).lower() != "cpu" or device_id != 0:
        raise InvalidArgument(
            f"device {device_type!r} {device_id} is not memory rkrt.ort can use: the runtime "
            "reads inputs from and writes outputs to CPU memory; use device_type='cpu', "
            "device_id=0"
        )


def _no_pointer(what: str) -> InvalidArgument:
    return InvalidArgument(
        f"{what} takes a raw pointer, which rkrt.ort refuses: nothing could check what it "
        "points to. Bind a numpy array (bind_cpu_input) or an OrtValue "
        "(bind_ortvalue_input / bind_ortvalue_output, OrtValue.ortvalue_from_numpy)"
    )


class OrtValue:
    """A tensor in CPU memory (onnxruntime's OrtValue): a numpy array, never copied."""

    __slots__ = ("_array",)

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    @staticmethod
    def ortvalue_from_numpy(
        numpy_obj: np.ndarray, device_type: str = "cpu", device_id: int = 0
    ) -> OrtValue:
        """Wrap ``numpy_obj``, sharing its memory (a non-contiguous array is copied first, as
        onnxruntime does)."""
        _cpu(device_type, device_id)
        if not isinstance(numpy_obj, np.ndarray):
            raise TypeError(
                f"OrtValue.ortvalue_from_numpy takes a numpy array, not "
                f"{type(numpy_obj).__name__}; wrap it with np.asarray(..., dtype=np.float32)"
            )
        _element_dtype(numpy_obj.dtype)
        return OrtValue(np.ascontiguousarray(numpy_obj))

    @staticmethod
    def ortvalue_from_shape_and_type(
        shape: Sequence[int], element_type: Any, device_type: str = "cpu", device_id: int = 0
    ) -> OrtValue:
        """A new zero-filled tensor; ``element_type`` is a numpy type or an onnx element code."""
        _cpu(device_type, device_id)
        return OrtValue(
            np.zeros(tuple(operator.index(d) for d in shape), _element_dtype(element_type))
        )

    def numpy(self) -> np.ndarray:
        """The array itself (not a copy, as onnxruntime's numpy() of CPU memory)."""
        return self._array

    def shape(self) -> list[int]:
        return list(self._array.shape)

    def data_type(self) -> str:
        """e.g. ``'tensor(float)'``."""
        return onnx_type(self._array.dtype)

    def element_type(self) -> int:
        """The onnx element code, e.g. 1 for float32."""
        return _ONNX[self._array.dtype][1]

    def device_name(self) -> str:
        return "cpu"

    def has_value(self) -> bool:
        return True

    def is_tensor(self) -> bool:
        return True

    def is_sparse_tensor(self) -> bool:
        return False

    def is_tensor_sequence(self) -> bool:
        return False

    def data_ptr(self) -> int:
        """The address of the first element."""
        return int(self._array.__array_interface__["data"][0])

    def tensor_size_in_bytes(self) -> int:
        return int(self._array.nbytes)

    def update_inplace(self, data: np.ndarray) -> None:
        """Copy ``data`` (same dtype and number of elements) into this tensor's memory."""
        data = np.asanyarray(data)
        array = self._array
        if data.dtype != array.dtype or data.size != array.size:
            raise InvalidArgument(
                f"update_inplace got {data.size} elements of {data.dtype} for an OrtValue of "
                f"{array.size} elements of {array.dtype}; convert first with "
                f"data.astype(np.{array.dtype.name}) (onnxruntime would copy the bytes "
                "unconverted)"
            )
        np.copyto(array, data.reshape(array.shape))


class IOBinding:
    """onnxruntime's IOBinding: bind inputs and outputs once, then
    ``session.run_with_iobinding(binding)`` for each run. Made by ``session.io_binding()``."""

    def __init__(self, session: Any) -> None:
        self.session = session  # the rkrt.ort.InferenceSession (not imported: it imports this)
        self._in_names = [i.name for i in session.get_inputs()]
        self._out_names = [o.name for o in session.get_outputs()]
        self._inputs: dict[str, np.ndarray] = {}
        # name -> OrtValue written in place, or None (a new array each run) with its shape if given
        self._outputs: dict[str, tuple[Optional[OrtValue], Optional[tuple[int, ...]]]] = {}
        self._results: list[OrtValue] = []
        self._plan: Optional[_Plan] = None  # what a run needs, made again after any (un)binding

    def _name(self, name: str, names: list[str], kind: str) -> str:
        if name not in names:
            raise InvalidArgument(f"unknown {kind} name {name!r}; the model's {kind}s are {names}")
        return name

    def bind_cpu_input(self, name: str, arr_on_cpu: np.ndarray) -> None:
        """Bind an input to ``arr_on_cpu`` (by reference: in-place changes reach the next run)."""
        self._set_input(self._name(name, self._in_names, "input"), arr_on_cpu)

    def _set_input(self, name: str, array: Any) -> None:
        self._inputs[name] = array
        if self._plan is not None:  # rebinding inside a loop keeps the rest of the plan
            self._plan.feed[self._in_names.index(name)] = array

    def bind_ortvalue_input(self, name: str, ortvalue: OrtValue) -> None:
        """Bind an input to an OrtValue (``update_inplace`` changes the next run's input)."""
        self._name(name, self._in_names, "input")
        self._set_input(name, _checked(ortvalue).numpy())

    def bind_input(self, name: str, device_type: str, device_id: int, element_type: Any,
                   shape: Sequence[int], buffer_ptr: int) -> None:  # fmt: skip
        """Refused: a raw pointer cannot be checked (see the module doc)."""
        raise _no_pointer("bind_input")

    def bind_output(
        self,
        name: str,
        device_type: str = "cpu",
        device_id: int = 0,
        element_type: Any = None,
        shape: Optional[Sequence[int]] = None,
        buffer_ptr: Optional[int] = None,
    ) -> None:
        """Ask for an output (a new float32 array each run); ``element_type`` and ``shape``,
        if given, must be what the run returns."""
        self._name(name, self._out_names, "output")
        _cpu(device_type, device_id)
        if buffer_ptr is not None:
            raise _no_pointer("bind_output(buffer_ptr=...)")
        if element_type is not None and _element_dtype(element_type) != _F32:
            raise InvalidArgument(
                f"output {name!r} is float32 in rkrt.ort, not {_element_dtype(element_type)}; "
                "pass element_type=np.float32 or leave it out"
            )
        dims = None if shape is None else tuple(operator.index(d) for d in shape)
        self._outputs[name] = (None, dims)
        self._plan = None

    def bind_ortvalue_output(self, name: str, ortvalue: OrtValue) -> None:
        """Write an output into ``ortvalue`` at each run (float32, the output's shape)."""
        self._name(name, self._out_names, "output")
        array = _checked(ortvalue).numpy()
        if array.dtype != _F32 or not array.flags.writeable:
            raise InvalidArgument(
                f"output {name!r} is bound to a {'' if array.flags.writeable else 'read-only '}"
                f"OrtValue of {array.dtype}; rkrt.ort writes float32 results: use "
                f"OrtValue.ortvalue_from_shape_and_type({list(array.shape)}, np.float32)"
            )
        self._outputs[name] = (ortvalue, None)
        self._plan = None

    def clear_binding_inputs(self) -> None:
        self._inputs.clear()
        self._plan = None

    def clear_binding_outputs(self) -> None:
        self._outputs.clear()
        self._results = []
        self._plan = None

    def synchronize_inputs(self) -> None:
        """Nothing to do: inputs are CPU memory, read when the run starts."""

    def synchronize_outputs(self) -> None:
        """Nothing to do: a run has written its outputs when it returns."""

    def get_outputs(self) -> list[OrtValue]:
        """The last run's bound outputs, in the order they were bound."""
        return list(self._results)

    def copy_outputs_to_cpu(self) -> list[np.ndarray]:
        """Copies of the last run's bound outputs, in the order they were bound."""
        return [v.numpy().copy() for v in self._results]

    # ---- for InferenceSession.run_with_iobinding ----

    def plan(self) -> _Plan:
        """The bound inputs in the model's order, and where each output goes."""
        if self._plan is None:
            self._plan = _Plan(self._in_names, self._inputs, self._out_names, self._outputs)
        return self._plan

    def keep(self, plan: _Plan, results: list[np.ndarray]) -> None:
        """Take a run's results (one per model output, in model order) for the bound outputs."""
        if plan.out is not None:  # the run wrote into the bound OrtValues
            self._results = plan.values
            return
        kept = []
        for k, name, value, shape in plan.picks:
            y = results[k]
            if value is None:
                if shape is not None and shape != y.shape:
                    raise _InvalidShape(
                        f"output {name!r} was bound with shape {list(shape)}, but the run "
                        f"returned {list(y.shape)}; bind it with that shape or none"
                    )
                value = OrtValue(y)
            else:
                target = value.numpy()
                if target.shape != y.shape:
                    raise _InvalidShape(
                        f"output {name!r} is bound to an OrtValue of shape {list(target.shape)}, "
                        f"but the run returned {list(y.shape)}; bind one of that shape"
                    )
                target[...] = y
            kept.append(value)
        self._results = kept


class _Plan:
    """One binding's run, worked out once: ``feed`` (the inputs in model order), ``out`` (one
    array per model output when all are bound to OrtValues, else None) and ``picks`` (per
    bound output, in binding order: model index, name, OrtValue or None, shape asked)."""

    __slots__ = ("feed", "out", "picks", "values")

    def __init__(
        self,
        in_names: list[str],
        inputs: dict[str, np.ndarray],
        out_names: list[str],
        outputs: dict[str, tuple[Optional[OrtValue], Optional[tuple[int, ...]]]],
    ) -> None:
        missing = [n for n in in_names if n not in inputs]
        if missing:
            raise InvalidArgument(
                f"inputs {missing} are not bound; bind each with bind_cpu_input(name, array)"
            )
        if not outputs:
            raise InvalidArgument(
                "no output is bound; at least one output should be requested: "
                "bind one with bind_output(name)"
            )
        self.feed = [inputs[n] for n in in_names]
        index = {n: k for k, n in enumerate(out_names)}
        self.picks = [(index[n], n, value, shape) for n, (value, shape) in outputs.items()]
        self.values = [value for _, _, value, _ in self.picks]
        bound = [outputs.get(n, (None, None))[0] for n in out_names]
        self.out = None if None in bound else [v.numpy() for v in bound]  # type: ignore[union-attr]


def _checked(ortvalue: Any) -> OrtValue:
    if not isinstance(ortvalue, OrtValue):
        raise TypeError(
            f"expected an rkrt.ort.OrtValue, not {type(ortvalue).__module__}."
            f"{type(ortvalue).__name__}; make one with rkrt.ort.OrtValue.ortvalue_from_numpy"
        )
    return ortvalue
