"""Session: an opened .rknn model on one NPU context; opening, describing and control.

The context itself (lock, queries, shapes, API mode) is rkrt.context's; run() is the
general-API path of rkrt.general; zero-copy IO is rkrt.binding's.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

from ._ffi import DEFINES, ffi
from .arguments import PathLike
from .binding import IOBinding
from .context import CLOSED, ZERO_COPY, Context
from .cores import CoreMask, MaskLike, detect_soc, is_single_core, validate_mask
from .dispatch import Dispatcher
from .errors import RKNNError, UnsupportedRuntimeError, check
from .general import CAST_MODES, GeneralRunner
from .library import Runtime, load
from .model_file import ONNX_HINT, Model, is_onnx, read_model
from .shared_weights import FLAG_SHARE_WEIGHTS, init_sharing, refuse_dynamic
from .tensor import TensorSpec

if TYPE_CHECKING:
    from .external import ExternalMemory, Key

_NULL = ffi.NULL
_FLAG_NO_RENICE = DEFINES["RKNN_FLAG_DISABLE_PROC_HIGH_PRIORITY"]
_FLAG_PERF = DEFINES["RKNN_FLAG_COLLECT_PERF_MASK"]
# Calls of run_async queued or running at once on one Session; more await their turn.
_ASYNC_PENDING = 2


def _dtype_or_none(dtype: Any) -> Optional[np.dtype]:
    return None if dtype is None else np.dtype(dtype)


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
        share_weights: Optional[Session] = None,
    ) -> None:
        if cast not in CAST_MODES:
            raise ValueError(f"cast must be one of {CAST_MODES}, not {cast!r}")
        if share_weights is not None and not isinstance(share_weights, Session):
            raise TypeError(
                f"share_weights must be an open rkrt.Session, not {type(share_weights).__name__}"
            )
        if share_weights is not None:
            refuse_dynamic(share_weights._context)
        soc = detect_soc(soc)
        mask = validate_mask(core_mask, soc)
        data = read_model(model)
        runtime = load(library)
        flags = (0 if high_priority else _FLAG_NO_RENICE) | (_FLAG_PERF if collect_perf else 0)
        ctx_out = ffi.new("rknn_context*")
        buf = ffi.from_buffer(data)
        try:
            if share_weights is None:
                check(runtime.lib.rknn_init(ctx_out, buf, len(buf), flags, _NULL), "rknn_init")
            else:
                flags |= FLAG_SHARE_WEIGHTS
                init_sharing(share_weights._context, runtime, ctx_out, buf, flags)
        except RKNNError as exc:
            if exc.symbol == "RKNN_ERR_MODEL_INVALID" and is_onnx(data):
                exc = RKNNError(exc.code, exc.function, ONNX_HINT)
            if isinstance(model, (str, os.PathLike)):  # say which file was refused
                exc.args = (f"{os.fspath(model)}: {exc.args[0]}",)
            raise exc from None
        self._attach(runtime, int(ctx_out[0]), flags, cast, soc, mask)
        if share_weights is not None:
            try:
                refuse_dynamic(self._context)
            except UnsupportedRuntimeError:
                self.close()
                raise
            # Kept open while this one lives: the runtime computes with its weight memory.
            self._weights_of = share_weights
            share_weights._sharers.add(self)

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
        mask or init flags: ``core_mask`` says AUTO until :meth:`set_core_mask`, and
        :attr:`perf_detail` is unavailable.
        """
        if isinstance(handle, bool) or not isinstance(handle, int):
            raise TypeError(f"handle must be an rknn_context as an int, not {type(handle).__name__}"
                            "; from cffi pass ctx[0] of an rknn_context*")  # fmt: skip
        if not 0 < handle < 2**64:
            raise ValueError(f"handle {handle} is not an rknn_context (expected 1..2**64-1)")
        if cast not in CAST_MODES:
            raise ValueError(f"cast must be one of {CAST_MODES}, not {cast!r}")
        soc = detect_soc(soc)
        runtime = load(library)
        session = cls.__new__(cls)
        session._attach(runtime, handle, 0, cast, soc, CoreMask.AUTO, owned=False)
        session._context.owned = owned
        return session

    @property
    def handle(self) -> int:
        """The raw ``rknn_context`` as an int, for C code (see :meth:`adopt` for ownership).

        It stays this Session's: do not destroy it, and do not call the runtime on it from C
        while this Session may run (a context serves one caller at a time).
        """
        return self._context.live_handle()

    # Until a context exists, so close() of a Session that failed to open does nothing.
    _context: Optional[Context] = None
    _async: Optional[Dispatcher] = None
    _weights_of: Optional[Session] = None

    def _attach(
        self, runtime: Runtime, handle: int, flags: int, cast: Optional[str], soc: Optional[str],
        mask: CoreMask, owned: bool = True,
    ) -> None:  # fmt: skip
        ctx = self._context = Context(runtime, handle, owned)
        self._finalizer = weakref.finalize(self, ctx.release)
        self._flags = flags
        self._cast = cast
        self._soc = soc
        self._binding: Optional[IOBinding] = None
        self._general: Optional[GeneralRunner] = None
        self._async_lock = threading.Lock()
        self._sharers: weakref.WeakSet[Session] = weakref.WeakSet()
        self._core_mask = CoreMask.AUTO
        try:
            runtime.learn_version(handle)
            ctx.describe()
            self._general = GeneralRunner(ctx, cast)
            if mask != CoreMask.AUTO:
                self.set_core_mask(mask)
        except BaseException:
            self.close()
            raise

    # ---- description ----

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """The model's inputs (for a dynamic model: at the current shape)."""
        return self._context.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """The model's outputs (for a dynamic model: at the current shape)."""
        return self._context.outputs

    @property
    def input_shapes(self) -> tuple[tuple[tuple[int, ...], ...], ...]:
        """Every accepted combination of input shapes, one shape per input in each entry."""
        return self._context.shape_sets

    @property
    def output_shapes(self) -> tuple[tuple[tuple[int, ...], ...], ...]:
        """The output shapes each entry of :attr:`input_shapes` gives, in the same order."""
        return self._context.output_shape_sets

    @property
    def is_dynamic(self) -> bool:
        """True when the model accepts more than one input shape."""
        return self._context.is_dynamic

    @property
    def sdk_version(self) -> tuple[str, str]:
        """(API version, driver version) reported by the runtime."""
        v = self._context.query("RKNN_QUERY_SDK_VERSION", "rknn_sdk_version")
        return ffi.string(v.api_version).decode(), ffi.string(v.drv_version).decode()

    @property
    def custom_string(self) -> str:
        """The custom string embedded in the model at conversion time."""
        c = self._context.query("RKNN_QUERY_CUSTOM_STRING", "rknn_custom_string")
        return ffi.string(c.string).decode("utf-8", "replace")

    @property
    def mem_size(self) -> dict[str, int]:
        """Runtime memory use: weight, internal and DMA bytes, SRAM total and free."""
        m = self._context.query("RKNN_QUERY_MEM_SIZE", "rknn_mem_size")
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
        """Duration of the last run in microseconds.

        Answered without ``collect_perf`` (the API reference's RKNN_QUERY_PERF_RUN sample
        opens the model with flags 0); :attr:`perf_detail` needs it.
        """
        return int(self._context.query("RKNN_QUERY_PERF_RUN", "rknn_perf_run").run_duration)

    @property
    def perf_detail(self) -> str:
        """The runtime's per-layer timing table of the last run (needs ``collect_perf=True``)."""
        self._need_perf()
        d = self._context.query("RKNN_QUERY_PERF_DETAIL", "rknn_perf_detail")
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
        """Restrict this context to some NPU cores; ValueError before C if the SoC lacks them.

        On a single-core NPU (RK3566/RK3568/RK3562...) AUTO is the only mask and nothing is
        called: the runtime refuses rknn_set_core_mask there, AUTO included.
        """
        mask = validate_mask(mask, self._soc)
        ctx = self._context
        if is_single_core(self._soc):
            ctx.live_handle()  # still refuse a closed session
            self._core_mask = mask
            return
        with ctx.lock:
            fn = ctx.runtime.symbol("rknn_set_core_mask")
            check(fn(ctx.live_handle(), int(mask)), "rknn_set_core_mask")
            self._core_mask = mask

    def dup(self, core_mask: Optional[MaskLike] = None) -> Session:
        """A new Session on a duplicated context sharing this one's weights.

        Its core mask is ``core_mask``, or this session's mask, set again on the copy.
        Dynamic-shape models cannot be duplicated (see README "Runtime versions").
        """
        mask = validate_mask(self._core_mask if core_mask is None else core_mask, self._soc)
        ctx = self._context
        if ctx.is_dynamic:
            raise UnsupportedRuntimeError(
                "a dynamic-shape model's context cannot be duplicated: the RKNN API user guide "
                "(1.5.2, 'Dynamic shape input') says rknn_dup_context does not support it, and "
                "no later release says otherwise. Open another rkrt.Session from the model "
                "instead (it loads the weights again)"
            )
        dup = ctx.runtime.symbol("rknn_dup_context")
        with ctx.lock:
            src = ffi.new("rknn_context*", ctx.live_handle())
            out = ffi.new("rknn_context*")
            check(dup(src, out), "rknn_dup_context")
        other = Session.__new__(Session)
        other._attach(ctx.runtime, int(out[0]), self._flags, self._cast, self._soc, mask)
        return other

    def bind(
        self,
        input_dtype: Any = None,
        output_dtype: Any = np.float32,
        *,
        inputs: Optional[dict[Key, ExternalMemory]] = None,
        outputs: Optional[dict[Key, ExternalMemory]] = None,
    ) -> IOBinding:
        """Zero-copy IO: runtime-allocated buffers exposed as numpy arrays (see IOBinding).

        Inputs default to the tensors' native type and layout: ``b.inputs[i][...] = x``
        converts in numpy (float16 rounding; for int8 tensors write quantized values, see
        TensorSpec.scale/zero_point). Outputs default to float32, converted by the runtime as
        Rockchip's zero-copy demo binds them; ``output_dtype=None`` keeps them native.
        ``input_dtype=np.float32`` asks the runtime to convert float32 inputs itself: an
        opt-in, as no official demo binds float32 inputs and runtimes may refuse it.
        ``inputs``/``outputs`` bind tensors (by index or name) to memory rkrt does not own
        instead: a DMA-BUF fd or a physical address (see :mod:`rkrt.external`).

        After bind() this context runs only through the binding; use ``dup().bind()`` to keep
        a general-API session alongside.
        """
        ctx = self._context
        with ctx.lock:
            ctx.check_zero_copy()
            if self._binding is not None and not self._binding.closed:
                raise RuntimeError("this session is already bound; close that IOBinding first")
            try:
                self._binding = IOBinding(ctx, _dtype_or_none(input_dtype),
                                          _dtype_or_none(output_dtype),
                                          inputs, outputs)  # fmt: skip
            finally:
                # Even a failed bind may have bound memory: run() must not mix APIs now.
                ctx.mode = ZERO_COPY
            return self._binding

    def close(self) -> None:
        """Free the binding's memory and the context. Calling it again does nothing.

        run_async calls not started are cancelled; one running finishes first. A Session
        whose weights others share (``share_weights=``) closes only after them.
        """
        ctx = self._context
        if ctx is None or ctx.mode == CLOSED:
            return
        sharers = [s for s in self._sharers if not s.closed]
        if sharers:
            raise RuntimeError(
                f"{len(sharers)} open Session(s) use this one's weights (share_weights=): "
                "close them first"
            )
        if self._async is not None:
            self._async.close(cancel=True)
        with ctx.lock:
            ctx.mode = CLOSED
            # Drop the references to the caller's last arrays along with the context.
            if self._general is not None:
                self._general.forget()
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
        ins = ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in self.inputs)
        outs = ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in self.outputs)
        return f"<rkrt.Session ({ins}) -> ({outs}) core_mask={self._core_mask.name}>"

    # ---- running ----

    def run(self, *arrays: Any, out: Optional[Sequence[np.ndarray]] = None) -> list[np.ndarray]:
        """Run the model; returns one float32 array per output.

        Inputs are positional (in model order), one list/tuple, or one dict by input name.
        ``out`` (one float32 C-contiguous array per output) receives the results instead of
        new arrays. Wrong dtypes raise DTypeError, wrong shapes ShapeError, before any C call.
        """
        return self._general.run(arrays, out)  # type: ignore[union-attr]

    async def run_async(self, *arrays: Any) -> list[np.ndarray]:
        """``await session.run_async(x)``: run() on a thread of this Session's own, so the
        event loop never blocks.

        Calls beyond two in flight await their turn (the context runs one at a time).
        Cancelling the await skips the run if it has not started; a run already started
        finishes (the context is never left mid-run) and its result, a fresh array, is
        dropped. For several contexts use :meth:`rkrt.Pool.run_async`.
        """
        dispatcher = self._async
        if dispatcher is None:
            with self._async_lock:
                if self._async is None:
                    self._context.live_handle()  # ClosedError before starting anything
                    self._async = Dispatcher(self, 1, _ASYNC_PENDING, "rkrt.Session")
                dispatcher = self._async
        return await dispatcher.run_async(self.run, *arrays)
