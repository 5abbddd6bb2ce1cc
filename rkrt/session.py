"""Session: one rknn_context, its tensor specs, and the strict general-API run() path."""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence, Union

import numpy as np

from ._ffi import DEFINES, enum, ffi
from .cores import CoreMask, MaskLike, detect_soc, validate_mask
from .errors import ClosedError, DTypeError, RKNNError, ShapeError, check
from .library import PathLike, Runtime, load
from .tensor import TYPE_OF_NUMPY, TensorSpec, accepted_input_dtypes

if TYPE_CHECKING:
    from .binding import IOBinding
    from .external import ExternalMemory, Key

_Q = enum("rknn_query_cmd")
_NULL = ffi.NULL
_F32 = np.dtype(np.float32)
_CAST_MODES = (None, "safe")
_FLAG_NO_RENICE = DEFINES["RKNN_FLAG_DISABLE_PROC_HIGH_PRIORITY"]
_FLAG_PERF = DEFINES["RKNN_FLAG_COLLECT_PERF_MASK"]

# Context states. A context is either driven by inputs_set/outputs_get ("general") or by bound
# memory ("zero-copy"), never both: the runtime misbehaves when they are mixed.
_FRESH, _GENERAL, _ZERO_COPY, _CLOSED = 0, 1, 2, 3

Model = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]


class _Context:
    """Owns one rknn_context and the runtime memory blocks made on it; frees each exactly once.

    Kept apart from Session so that weakref.finalize can free it without a reference to the
    Session itself (which would keep it alive forever).
    """

    def __init__(self, runtime: Runtime, handle: int, owned: bool = True) -> None:
        self.runtime = runtime
        self.handle: Optional[int] = handle
        self.mems: list[Any] = []
        # False for an adopted context: its creator destroys it, rkrt only its own mems.
        self.owned = owned

    def destroy_mems(self, mems: Sequence[Any]) -> None:
        """Destroy each block once; a refused one is not retried (that could double free)."""
        destroy = self.runtime.symbol("rknn_destroy_mem")
        codes = []
        for mem in mems:
            if mem in self.mems:
                self.mems.remove(mem)
                codes.append(destroy(self.handle, mem))
        check(min(codes, default=0), "rknn_destroy_mem")

    def release(self) -> None:
        """Free the memory blocks, then the context; a second call does nothing."""
        if self.handle is None:
            return
        try:
            self.destroy_mems(list(self.mems))
        finally:
            handle, self.handle = self.handle, None
            if self.owned:
                check(self.runtime.lib.rknn_destroy(handle), "rknn_destroy")


def _read_model(model: Model) -> bytes | memoryview:
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


def _dtype_or_none(dtype: Any) -> Optional[np.dtype]:
    return None if dtype is None else np.dtype(dtype)


def _fmt_shapes(shapes: Sequence[tuple[int, ...]]) -> str:
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


class Session:
    """An opened .rknn model on one NPU context.

    ``model`` is a path or the model's bytes. Calls from several threads are serialised by a
    lock (safe, one at a time); for parallel inference use :class:`rkrt.Pool` or :meth:`dup`.

    ``cast=None`` (default) refuses input dtypes the runtime cannot take; ``cast="safe"`` opts
    in to converting float64, integer and bool inputs to float32 in Python first.
    ``soc`` overrides the SoC read from the device tree for core-mask checks.
    """

    def __init__(
        self,
        model: Model,
        *,
        core_mask: MaskLike = CoreMask.AUTO,
        library: Optional[PathLike] = None,
        high_priority: bool = False,
        collect_perf: bool = False,
        cast: Optional[str] = None,
        soc: Optional[str] = None,
    ) -> None:
        self._state = _CLOSED  # until the context exists, so close()/__del__ are no-ops
        if cast not in _CAST_MODES:
            raise ValueError(f"cast must be one of {_CAST_MODES}, not {cast!r}")
        soc = detect_soc(soc)
        mask = validate_mask(core_mask, soc)
        data = _read_model(model)
        runtime = load(library)
        flags = (0 if high_priority else _FLAG_NO_RENICE) | (_FLAG_PERF if collect_perf else 0)
        ctx_out = ffi.new("rknn_context*")
        buf = ffi.from_buffer(data)
        try:
            check(runtime.lib.rknn_init(ctx_out, buf, len(buf), flags, _NULL), "rknn_init")
        except RKNNError as exc:
            if isinstance(model, (str, os.PathLike)):  # say which file was refused
                exc.args = (f"{os.fspath(model)}: {exc.args[0]}",)
            raise
        self._attach(runtime, int(ctx_out[0]), flags, cast, soc, mask)

    @classmethod
    def adopt(
        cls,
        handle: int,
        *,
        owned: bool = False,
        library: Optional[PathLike] = None,
        cast: Optional[str] = None,
        soc: Optional[str] = None,
    ) -> Session:
        """A Session over an ``rknn_context`` created elsewhere (C code, another binding).

        ``owned=False`` (default): the creator keeps the context. close() and garbage
        collection free only what rkrt made on it (bound memory) and leave it alive; destroy
        it yourself, after this Session is closed. ``owned=True``: this Session takes it over
        and destroys it at close(), as if rkrt had opened it; its creator must not. If adopt
        raises, nothing was destroyed either way. One Session per context: two would not
        serialise their calls.

        The context must come from the same librknnrt that rkrt loads (``library``, else
        $RKRT_LIBRARY, else the system places). The runtime cannot report a context's core
        mask or init flags: ``core_mask`` says AUTO until :meth:`set_core_mask`, and perf
        queries are unavailable.
        """
        if isinstance(handle, bool) or not isinstance(handle, int):
            raise TypeError(f"handle must be an rknn_context as an int, not {type(handle).__name__}"
                            "; from cffi pass ctx[0] of an rknn_context*")  # fmt: skip
        if not 0 < handle < 2**64:
            raise ValueError(f"handle {handle} is not an rknn_context (expected 1..2**64-1)")
        if cast not in _CAST_MODES:
            raise ValueError(f"cast must be one of {_CAST_MODES}, not {cast!r}")
        soc = detect_soc(soc)
        runtime = load(library)
        session = cls.__new__(cls)
        session._state = _CLOSED
        session._attach(runtime, handle, 0, cast, soc, CoreMask.AUTO, owned=False)
        session._context.owned = owned
        return session

    @property
    def handle(self) -> int:
        """The raw ``rknn_context`` as an int, for C code (see :meth:`adopt` for ownership).

        It stays this Session's: do not destroy it, and do not call the runtime on it from C
        while this Session may run (a context serves one caller at a time).
        """
        return self._handle

    def _attach(
        self, runtime: Runtime, handle: int, flags: int, cast: Optional[str], soc: Optional[str],
        mask: CoreMask, owned: bool = True,
    ) -> None:  # fmt: skip
        ctx = self._context = _Context(runtime, handle, owned)
        self._finalizer = weakref.finalize(self, ctx.release)
        self._runtime = runtime
        self._flags = flags
        self._cast = cast
        self._soc = soc
        self._lock = threading.Lock()
        self._binding: Optional[IOBinding] = None
        self._core_mask = CoreMask.AUTO
        lib = runtime.lib
        # Everything run() calls, bound once: attribute lookups are measurable per call.
        self._calls = (handle, lib.rknn_inputs_set, lib.rknn_run, lib.rknn_outputs_get,
                       lib.rknn_outputs_release)  # fmt: skip
        self._state = _FRESH
        try:
            self._query_specs()
            if mask != CoreMask.AUTO:
                self.set_core_mask(mask)
        except BaseException:
            self.close()
            raise

    # ---- opening: everything the per-call path needs is computed here, once ----

    def _query(self, cmd: str, ctype: str, index: Optional[int] = None) -> Any:
        info = ffi.new(ctype + "*")
        if index is not None:
            info.index = index
        check(
            self._runtime.lib.rknn_query(self._handle, _Q[cmd], info, ffi.sizeof(ctype)),
            "rknn_query",
        )
        return info

    @property
    def _handle(self) -> int:
        handle = self._context.handle
        if handle is None:
            raise ClosedError("this rkrt.Session is closed; open a new one")
        return handle

    def _query_attrs(self, cmd: str, count: int) -> list[Any]:
        return [self._query(cmd, "rknn_tensor_attr", i) for i in range(count)]

    def _query_specs(self) -> None:
        num = self._query("RKNN_QUERY_IN_OUT_NUM", "rknn_input_output_num")
        n_in, n_out = int(num.n_input), int(num.n_output)
        self._in_attrs = self._query_attrs("RKNN_QUERY_INPUT_ATTR", n_in)
        self._shape_sets = self._query_dynamic_shapes(self._in_attrs)
        # Prebuilt C structs, reused by every run(): only buf/type/size change per call.
        self._c_inputs = ffi.new("rknn_input[]", n_in)
        self._c_outputs = ffi.new("rknn_output[]", n_out)
        for i, attr in enumerate(self._in_attrs):
            self._c_inputs[i].index = i
            self._c_inputs[i].fmt = attr.fmt
        for i in range(n_out):
            c = self._c_outputs[i]
            c.index, c.want_float, c.is_prealloc = i, 1, 1
        self._n_in, self._n_out = n_in, n_out
        if self.is_dynamic:
            # The runtime wants a shape chosen before the first run; start with the first one.
            self._switch_shapes(self._shape_sets[0])
        else:
            self._set_specs(self._in_attrs, self._query_attrs("RKNN_QUERY_OUTPUT_ATTR", n_out))

    def _query_dynamic_shapes(self, attrs: list[Any]) -> tuple[tuple[tuple[int, ...], ...], ...]:
        ranges = []
        for i in range(len(attrs)):
            try:
                r = self._query("RKNN_QUERY_INPUT_DYNAMIC_RANGE", "rknn_input_range", i)
            except RKNNError as exc:
                if exc.symbol != "RKNN_ERR_MODEL_INVALID":
                    raise
                # A static model answers MODEL_INVALID here: it has one fixed shape.
                return (tuple(TensorSpec.from_attr(a).shape for a in attrs),)
            dims, count = range(r.n_dims), range(r.shape_number)
            ranges.append([tuple(int(r.dyn_range[j][k]) for k in dims) for j in count])
        if not ranges:
            return ((),)
        return tuple(zip(*ranges))

    def _set_specs(self, in_attrs: list[Any], out_attrs: list[Any]) -> None:
        self._inputs = tuple(TensorSpec.from_attr(a) for a in in_attrs)
        self._outputs = tuple(TensorSpec.from_attr(a) for a in out_attrs)
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
            for s in self._inputs
        )
        self._out_slots = tuple(_Output(self._c_outputs[s.index], s.shape) for s in self._outputs)
        for c, s in zip(self._c_outputs, self._outputs):
            c.size = s.n_elems * 4

    def _switch_shapes(self, shapes: tuple[tuple[int, ...], ...]) -> None:
        attrs = ffi.new("rknn_tensor_attr[]", self._n_in)
        for i, (attr, shape) in enumerate(zip(self._in_attrs, shapes)):
            attrs[i] = attr[0]
            attrs[i].n_dims = len(shape)
            for k, d in enumerate(shape):
                attrs[i].dims[k] = d
        set_shapes = self._runtime.symbol("rknn_set_input_shapes")
        try:
            check(set_shapes(self._handle, self._n_in, attrs), "rknn_set_input_shapes")
            self._set_specs(
                self._query_attrs("RKNN_QUERY_CURRENT_INPUT_ATTR", self._n_in),
                self._query_attrs("RKNN_QUERY_CURRENT_OUTPUT_ATTR", self._n_out),
            )
        except BaseException:
            # The runtime's current shape is unknown now: no input matches a None shape, so
            # the next run() switches again instead of passing byte counts of a stale shape.
            for slot in getattr(self, "_in_slots", ()):  # none yet while opening
                slot.shape = None
            raise

    # ---- description ----

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """The model's inputs (for a dynamic model: at the current shape)."""
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """The model's outputs (for a dynamic model: at the current shape)."""
        return self._outputs

    @property
    def input_shapes(self) -> tuple[tuple[tuple[int, ...], ...], ...]:
        """Every accepted combination of input shapes, one shape per input in each entry."""
        return self._shape_sets

    @property
    def is_dynamic(self) -> bool:
        """True when the model accepts more than one input shape."""
        return len(self._shape_sets) > 1

    @property
    def sdk_version(self) -> tuple[str, str]:
        """(API version, driver version) reported by the runtime."""
        v = self._query("RKNN_QUERY_SDK_VERSION", "rknn_sdk_version")
        return ffi.string(v.api_version).decode(), ffi.string(v.drv_version).decode()

    @property
    def custom_string(self) -> str:
        """The custom string embedded in the model at conversion time."""
        c = self._query("RKNN_QUERY_CUSTOM_STRING", "rknn_custom_string")
        return ffi.string(c.string).decode("utf-8", "replace")

    @property
    def mem_size(self) -> dict[str, int]:
        """Runtime memory use: weight, internal and DMA bytes, SRAM total and free."""
        m = self._query("RKNN_QUERY_MEM_SIZE", "rknn_mem_size")
        return {
            "total_weight_size": int(m.total_weight_size),
            "total_internal_size": int(m.total_internal_size),
            "total_dma_allocated_size": int(m.total_dma_allocated_size),
            "total_sram_size": int(m.total_sram_size),
            "free_sram_size": int(m.free_sram_size),
        }

    def _need_perf(self) -> None:
        if not self._flags & _FLAG_PERF:
            raise RuntimeError(
                "performance data is collected only when asked for: open the model with "
                "rkrt.Session(..., collect_perf=True)"
            )

    @property
    def perf_run(self) -> int:
        """Duration of the last run in microseconds (needs ``collect_perf=True``)."""
        self._need_perf()
        return int(self._query("RKNN_QUERY_PERF_RUN", "rknn_perf_run").run_duration)

    @property
    def perf_detail(self) -> str:
        """The runtime's per-layer timing table of the last run (needs ``collect_perf=True``)."""
        self._need_perf()
        d = self._query("RKNN_QUERY_PERF_DETAIL", "rknn_perf_detail")
        if d.perf_data == _NULL:
            return ""
        return ffi.string(d.perf_data, d.data_len).decode("utf-8", "replace")

    @property
    def core_mask(self) -> CoreMask:
        """The NPU cores this context runs on."""
        return self._core_mask

    @property
    def closed(self) -> bool:
        """True once close() was called (or the model failed to open)."""
        return self._context.handle is None

    # ---- control ----

    def set_core_mask(self, mask: MaskLike) -> None:
        """Restrict this context to some NPU cores; ValueError before C if the SoC lacks them."""
        mask = validate_mask(mask, self._soc)
        with self._lock:
            fn = self._runtime.symbol("rknn_set_core_mask")
            check(fn(self._handle, int(mask)), "rknn_set_core_mask")
            self._core_mask = mask

    def dup(self, core_mask: Optional[MaskLike] = None) -> Session:
        """A new Session on a duplicated context sharing this one's weights.

        Its core mask is ``core_mask``, or this session's mask, set again on the copy.
        """
        mask = validate_mask(self._core_mask if core_mask is None else core_mask, self._soc)
        dup = self._runtime.symbol("rknn_dup_context")
        with self._lock:
            src = ffi.new("rknn_context*", self._handle)
            out = ffi.new("rknn_context*")
            check(dup(src, out), "rknn_dup_context")
        other = Session.__new__(Session)
        other._attach(self._runtime, int(out[0]), self._flags, self._cast, self._soc, mask)
        return other

    def bind(
        self,
        input_dtype: Any = np.float32,
        output_dtype: Any = np.float32,
        *,
        inputs: Optional[dict[Key, ExternalMemory]] = None,
        outputs: Optional[dict[Key, ExternalMemory]] = None,
    ) -> IOBinding:
        """Zero-copy IO: runtime-allocated buffers exposed as numpy arrays (see IOBinding).

        Each dtype is float32 (the runtime converts) or None for the tensors' native types.
        ``inputs``/``outputs`` bind tensors (by index or name) to memory rkrt does not own
        instead: a DMA-BUF fd, a physical address or any buffer (see :mod:`rkrt.external`).

        After bind() this context runs only through the binding; use ``dup().bind()`` to keep
        a general-API session alongside.
        """
        from .binding import IOBinding

        with self._lock:
            if self._state == _CLOSED or self.closed:
                raise ClosedError("this rkrt.Session is closed; open a new one")
            if self._state == _GENERAL:
                raise RuntimeError(
                    "this session already ran through run(); the runtime forbids mixing that "
                    "with zero-copy IO on one context. Bind a duplicate: session.dup().bind()"
                )
            if self._binding is not None and not self._binding.closed:
                raise RuntimeError("this session is already bound; close that IOBinding first")
            try:
                self._binding = IOBinding(self, _dtype_or_none(input_dtype),
                                          _dtype_or_none(output_dtype),
                                          inputs, outputs)  # fmt: skip
            finally:
                # Even a failed bind may have bound memory: run() must not mix APIs now.
                self._state = _ZERO_COPY
            return self._binding

    def close(self) -> None:
        """Free the binding's memory and the context. Calling it again does nothing."""
        if self._state == _CLOSED:
            return
        with self._lock:
            self._state = _CLOSED
            # Drop the references to the caller's last arrays along with the context.
            self._in_slots = self._out_slots = ()
            if self._binding is not None:
                self._binding._forget()
            self._finalizer()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return "<rkrt.Session (closed)>"
        ins = ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in self._inputs)
        outs = ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in self._outputs)
        return f"<rkrt.Session ({ins}) -> ({outs}) core_mask={self._core_mask.name}>"

    # ---- running ----

    def run(self, *arrays: Any, out: Optional[Sequence[np.ndarray]] = None) -> list[np.ndarray]:
        """Run the model; returns one float32 array per output.

        Inputs are positional (in model order), one list/tuple, or one dict by input name.
        ``out`` (one float32 C-contiguous array per output) receives the results instead of
        new arrays. Wrong dtypes raise DTypeError, wrong shapes ShapeError, before any C call.
        """
        lock = self._lock
        lock.acquire()
        try:
            if self._state != _GENERAL:
                self._enter_general()
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

    def _enter_general(self) -> None:
        if self._state == _CLOSED:
            raise ClosedError("this rkrt.Session is closed; open a new one")
        if self._state == _ZERO_COPY:
            raise RuntimeError(
                "this session is bound for zero-copy IO; run it with its IOBinding's run(), or "
                "use session.dup() for run(): the runtime forbids mixing both on one context"
            )
        self._state = _GENERAL

    def _unpack(self, arrays: tuple[Any, ...]) -> list[Any]:
        names = [s.name for s in self._inputs]
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

    def _prepare(self, arrays: tuple[Any, ...]) -> list[np.ndarray]:
        """The slow path: validate everything, copy where needed, switch shapes if allowed."""
        items = [np.asarray(a) for a in self._unpack(arrays)]
        dtypes = [self._check_dtype(spec, a) for spec, a in zip(self._inputs, items)]
        # Shapes are checked before any copy: a huge (e.g. broadcast) array of a wrong shape
        # must be refused, not converted first.
        shapes = tuple(a.shape for a in items)
        if shapes != tuple(slot.shape for slot in self._in_slots):
            if shapes not in self._shape_sets:
                given = "; ".join(
                    f"{s.name!r} (#{s.index}) {a.shape}" for s, a in zip(self._inputs, items)
                )
                raise ShapeError(
                    f"input shapes do not match the model: given {given}; the model accepts "
                    f"{_fmt_shapes(self._shape_sets)} (one shape per input). Fix: reshape the "
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
            raise TypeError(
                f"out= needs {self._n_out} array(s), one per output; got {len(result)}"
            )
        for spec, y in zip(self._outputs, result):
            if not isinstance(y, np.ndarray) or y.dtype != _F32:
                raise DTypeError(
                    f"out array for output {spec.name!r} must be a float32 ndarray, got "
                    f"{getattr(y, 'dtype', type(y).__name__)}; allocate it with "
                    f"np.empty({spec.shape}, np.float32)"
                )
            if y.shape != spec.shape:
                raise ShapeError(
                    f"out array for output {spec.name!r} has shape {y.shape}, expected "
                    f"{spec.shape}"
                )
            if not (y.flags.c_contiguous and y.flags.aligned and y.flags.writeable):
                raise ValueError(
                    f"out array for output {spec.name!r} must be C-contiguous, aligned and "
                    "writeable (the runtime writes into it directly); use np.empty(...)"
                )
        for o, y in zip(self._out_slots, result):
            o.c.buf = ffi.from_buffer(y, require_writable=True)
            o.last = y
