"""The general-API run path: rknn_inputs_set, rknn_run, rknn_outputs_get on one context.

Everything a call needs is prepared once (C structs, per-input dtype tables, result slabs);
the per-call path checks identities and shapes and calls C. Anything unusual (another
dtype, a copy, a shape switch, a wrong input) takes the slow path, which validates it all.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ._ffi import ffi
from .context import GENERAL, Context, Shapes
from .errors import DTypeError, ShapeError, check
from .tensor import TYPE_OF_NUMPY, TensorSpec, accepted_input_dtypes

_NULL = ffi.NULL
_F32 = np.dtype(np.float32)
CAST_MODES = (None, "safe")


def _fmt_shapes(shapes: Sequence[Shapes]) -> str:
    return ", ".join(str(s) for s in shapes)


class _Input:
    """Per-call state of one input: its C struct, accepted dtypes and the last array seen.

    Holding the last array keeps its data pointer valid (numpy refuses to resize an array
    that is referenced elsewhere), so passing the same array again skips re-deriving it.
    """

    __slots__ = ("c", "table", "shape", "last", "last_dtype")

    def __init__(self, c: Any, table: dict[np.dtype, tuple[int, int]], shape: tuple[int, ...]):
        self.c, self.table, self.shape = c, table, shape
        self.last: Any = None
        self.last_dtype: Any = None


class _Output:
    """Per-call state of one output: its C struct, fresh result arrays, the last out= array."""

    __slots__ = ("c", "results", "shape", "last")

    def __init__(self, c: Any, shape: tuple[int, ...]) -> None:
        self.c, self.shape = c, shape
        self.results = _results(shape)
        self.last: Any = None


# Results are carved from slabs of up to this many bytes (at most _SLAB_ROWS results each):
# one view and one precomputed pointer per call instead of np.empty plus ffi.from_buffer.
_SLAB_BYTES = 1 << 16
_SLAB_ROWS = 64


def _results(shape: tuple[int, ...]) -> Iterator[tuple[np.ndarray, Any]]:
    """Endless (float32 array, its C pointer) pairs of ``shape``, never sharing memory."""
    nbytes = max(1, int(np.prod(shape, dtype=np.int64))) * 4
    rows = max(1, min(_SLAB_ROWS, _SLAB_BYTES // nbytes))
    while True:
        slab = np.empty((rows, *shape), _F32)
        base = ffi.cast("char*", ffi.from_buffer(slab, require_writable=True))
        for k in range(rows):
            yield slab[k], base + k * nbytes


class GeneralRunner:
    """run() of one Context through the general API; ``cast`` as Session's."""

    def __init__(self, ctx: Context, cast: Optional[str]) -> None:
        self._ctx = ctx
        self._cast = cast
        n_in, n_out = ctx.n_in, ctx.n_out
        self._n_in, self._n_out = n_in, n_out
        # Prebuilt C structs, reused by every run(): only buf/type/size change per call.
        self._c_inputs = ffi.new("rknn_input[]", n_in)
        self._c_outputs = ffi.new("rknn_output[]", n_out)
        for i, attr in enumerate(ctx.in_attrs):
            self._c_inputs[i].index = i
            self._c_inputs[i].fmt = attr.fmt
        for i in range(n_out):
            c = self._c_outputs[i]
            c.index, c.want_float, c.is_prealloc = i, 1, 1
        self._in_slots: tuple[_Input, ...] = ()
        self._out_slots: tuple[_Output, ...] = ()
        self.adopt_specs()
        lib = ctx.runtime.lib
        # Everything run() calls, bound once: attribute lookups are measurable per call.
        self._calls = (ctx.live_handle(), lib.rknn_inputs_set, lib.rknn_run,
                       lib.rknn_outputs_get, lib.rknn_outputs_release)  # fmt: skip

    def adopt_specs(self) -> None:
        """Rebuild the per-call state for the context's current specs (after a switch)."""
        ctx = self._ctx
        # Per input: the dtypes the runtime converts itself, each with its rknn type and byte
        # count, so run() does one dict lookup instead of any dtype reasoning.
        self._in_slots = tuple(
            _Input(
                self._c_inputs[s.index],
                {
                    dt: (TYPE_OF_NUMPY[dt], s.n_elems * dt.itemsize)
                    for dt in accepted_input_dtypes(s.dtype)
                },
                s.shape,
            )
            for s in ctx.inputs
        )
        self._out_slots = tuple(_Output(self._c_outputs[s.index], s.shape) for s in ctx.outputs)
        for c, s in zip(self._c_outputs, ctx.outputs):
            c.size = s.n_elems * 4

    def forget(self) -> None:
        """Drop the references to the caller's last arrays (the context is closing)."""
        self._in_slots = self._out_slots = ()

    def run(self, arrays: tuple[Any, ...], out: Optional[Sequence[np.ndarray]]) -> list[np.ndarray]:
        """See Session.run."""
        ctx = self._ctx
        lock = ctx.lock
        lock.acquire()
        try:
            if ctx.mode != GENERAL:
                ctx.enter_general()
            # Fast path: arrays of an accepted dtype and the exact shape, C-contiguous and
            # aligned, go straight through. Anything else takes _prepare(), which validates,
            # converts or copies, switches shapes, or raises.
            slots = self._in_slots
            if len(arrays) == len(slots):
                try:
                    for slot, a in zip(slots, arrays):
                        if a is not slot.last or a.dtype is not slot.last_dtype:
                            c = slot.c
                            c.type, c.size = slot.table[a.dtype]
                            if not a.flags.aligned:
                                raise KeyError
                            c.buf = ffi.from_buffer(a)
                            slot.last, slot.last_dtype = a, a.dtype
                        elif not a.flags.c_contiguous:  # its strides were reassigned in place
                            raise KeyError
                        if a.shape != slot.shape:
                            raise KeyError
                except (KeyError, AttributeError, TypeError, ValueError):
                    arrays = self._prepare(arrays)
            else:
                arrays = self._prepare(arrays)
            if out is None:
                result = []
                for o in self._out_slots:
                    y, o.c.buf = next(o.results)
                    # The C struct no longer points at the last out= array: forget it, or the
                    # next run(out=[that array]) would skip re-pointing and write elsewhere.
                    o.last = None
                    result.append(y)
            else:
                result = [out] if type(out) is np.ndarray else list(out)
                outs = self._out_slots
                if len(result) == len(outs):
                    for o, y in zip(outs, result):
                        if (
                            y is not o.last
                            or y.dtype is not _F32
                            or y.shape != o.shape
                            or not y.flags.writeable
                            or not y.flags.c_contiguous  # strides reassigned in place
                        ):
                            self._check_out(result)
                            break
                else:
                    self._check_out(result)
            handle, inputs_set, run, outputs_get, outputs_release = self._calls
            ret = inputs_set(handle, self._n_in, self._c_inputs)
            if ret < 0:
                check(ret, "rknn_inputs_set")
            ret = run(handle, _NULL)
            if ret < 0:
                check(ret, "rknn_run")
            c_outputs = self._c_outputs
            try:
                ret = outputs_get(handle, self._n_out, c_outputs, _NULL)
                if ret < 0:
                    check(ret, "rknn_outputs_get")
            finally:
                ret = outputs_release(handle, self._n_out, c_outputs)
            if ret < 0:
                check(ret, "rknn_outputs_release")
            return result
        finally:
            lock.release()

    def _unpack(self, arrays: tuple[Any, ...]) -> list[Any]:
        names = [s.name for s in self._ctx.inputs]
        if len(arrays) == 1 and isinstance(arrays[0], dict):
            given = arrays[0]
            unknown = [k for k in given if k not in names]
            missing = [n for n in names if n not in given]
            if unknown or missing:
                raise ValueError(
                    f"input names do not match the model: unknown {unknown}, missing {missing}; "
                    f"the model's inputs are {names}"
                )
            return [given[n] for n in names]
        # One list is the list of inputs, unless the model has one input and the list is that
        # input's data (nested numbers rather than arrays).
        if (
            len(arrays) == 1
            and isinstance(arrays[0], (list, tuple))
            and (self._n_in > 1 or any(isinstance(a, np.ndarray) for a in arrays[0]))
        ):
            arrays = tuple(arrays[0])
        if len(arrays) != self._n_in:
            raise TypeError(
                f"this model takes {self._n_in} input(s) {names}, got {len(arrays)}; pass them "
                "positionally, as one list, or as one dict by name"
            )
        return list(arrays)

    def _check_dtype(self, spec: TensorSpec, a: np.ndarray) -> np.dtype:
        """The dtype ``a`` goes to the runtime as (converted later, once its shape is valid)."""
        accepted = accepted_input_dtypes(spec.dtype)
        dt = a.dtype
        if not dt.isnative and dt.newbyteorder("=") in accepted:
            return dt.newbyteorder("=")
        if dt in accepted:
            return dt
        if self._cast == "safe" and dt.kind in "fiub":
            return _F32
        names = ", ".join(str(d) for d in accepted)
        raise DTypeError(
            f"input {spec.name!r} (#{spec.index}) has dtype {dt}, which this runtime cannot "
            f"take for a {spec.dtype} input; accepted: {names}. Fix: pass "
            f"x.astype(np.float32), or open the Session with cast='safe' to convert automatically"
        )

    def _switch_shapes(self, shapes: Shapes) -> None:
        try:
            self._ctx.switch_shapes(shapes)
        except BaseException:
            # The runtime's current shape is unknown now: no input matches a None shape, so
            # the next run() switches again instead of passing byte counts of a stale shape.
            for slot in self._in_slots:
                slot.shape = None
            raise
        self.adopt_specs()

    def _prepare(self, arrays: tuple[Any, ...]) -> list[np.ndarray]:
        """The slow path: validate everything, copy where needed, switch shapes if allowed."""
        ctx = self._ctx
        items = [np.asarray(a) for a in self._unpack(arrays)]
        dtypes = [self._check_dtype(spec, a) for spec, a in zip(ctx.inputs, items)]
        # Shapes are checked before any copy: a huge (e.g. broadcast) array of a wrong shape
        # must be refused, not converted first.
        shapes = tuple(a.shape for a in items)
        if shapes != tuple(slot.shape for slot in self._in_slots):
            if shapes not in ctx.shape_sets:
                given = "; ".join(
                    f"{s.name!r} (#{s.index}) {a.shape}" for s, a in zip(ctx.inputs, items)
                )
                raise ShapeError(
                    f"input shapes do not match the model: given {given}; the model accepts "
                    f"{_fmt_shapes(ctx.shape_sets)} (one shape per input). Fix: reshape the "
                    "input(s) to an accepted shape"
                )
            self._switch_shapes(shapes)
        checked = [np.require(a, dt, ["C", "A"]) for a, dt in zip(items, dtypes)]
        for slot, a in zip(self._in_slots, checked):
            slot.c.type, slot.c.size = slot.table[a.dtype]
            slot.c.buf = ffi.from_buffer(a)
            slot.last, slot.last_dtype = a, a.dtype
        return checked

    def _check_out(self, result: list[Any]) -> None:
        """The slow path of out=: validate every array and point the C structs at them."""
        if len(result) != self._n_out:
            raise TypeError(f"out= needs {self._n_out} array(s), one per output; got {len(result)}")
        for spec, y in zip(self._ctx.outputs, result):
            if not isinstance(y, np.ndarray) or y.dtype != _F32:
                raise DTypeError(
                    f"out array for output {spec.name!r} must be a float32 ndarray, got "
                    f"{getattr(y, 'dtype', type(y).__name__)}; allocate it with "
                    f"np.empty({spec.shape}, np.float32)"
                )
            if y.shape != spec.shape:
                raise ShapeError(
                    f"out array for output {spec.name!r} has shape {y.shape}, expected {spec.shape}"
                )
            if not (y.flags.c_contiguous and y.flags.aligned and y.flags.writeable):
                raise ValueError(
                    f"out array for output {spec.name!r} must be C-contiguous, aligned and "
                    "writeable (the runtime writes into it directly); use np.empty(...)"
                )
        for o, y in zip(self._out_slots, result):
            o.c.buf = ffi.from_buffer(y, require_writable=True)
            o.last = y
