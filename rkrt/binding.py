"""IOBinding: zero-copy inference through runtime-allocated memory bound to a context."""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from . import external
from ._ffi import enum, ffi
from .context import Context
from .errors import ClosedError, DTypeError, ShapeError, check
from .io_layout import Layout, plan
from .library import MEM_SYNC_MINIMUM
from .tensor import TYPE_OF_NUMPY, TensorSpec

_SYNC = enum("rknn_mem_sync_mode")
_TO_DEVICE = _SYNC["RKNN_MEMORY_SYNC_TO_DEVICE"]
_FROM_DEVICE = _SYNC["RKNN_MEMORY_SYNC_FROM_DEVICE"]
_NULL = ffi.NULL
_F32 = np.dtype(np.float32)


class IOBinding:
    """Zero-copy IO for one Session's context, made by :meth:`Session.bind`.

    ``inputs`` and ``outputs`` are numpy arrays over memory the runtime allocated and reads or
    writes directly: fill ``inputs[i][...]``, call :meth:`run`, read ``outputs[i]``. Nothing is
    allocated or copied per call. The arrays are views valid until :meth:`close` (or the
    session's close): copy what you keep. After :meth:`set_input_shapes` re-read both tuples.
    Tensors bound to external memory (see :mod:`rkrt.external`) are views of that memory.

    Inputs are bound in their native type and layout by default (rkrt.io_layout): rows the
    runtime pads (``w_stride``) stay padded and the view skips them. On a runtime without
    ``rknn_mem_sync`` (before 1.6.0) runtime memory is used without syncing, as Rockchip's
    zero-copy demos do (``rknn_run`` flushes and invalidates its own buffers); external
    memory is refused there.
    """

    def __init__(self, context: Context, input_dtype: Optional[np.dtype],
                 output_dtype: Optional[np.dtype],
                 inputs: Optional[Mapping[external.Key, external.ExternalMemory]] = None,
                 outputs: Optional[Mapping[external.Key, external.ExternalMemory]] = None,
                 ) -> None:  # fmt: skip
        self._context = ctx = context
        self._lock = ctx.lock
        runtime = ctx.runtime
        has_sync = runtime.has("rknn_mem_sync")
        self._sync = runtime.symbol("rknn_mem_sync") if has_sync else None
        self._set_io_mem = runtime.symbol("rknn_set_io_mem")
        self._run = runtime.lib.rknn_run
        self._ext_in = external.resolve("input", inputs, ctx.inputs)
        self._ext_out = external.resolve("output", outputs, ctx.outputs)
        if self._ext_in or self._ext_out:
            # rkrt's views of external memory need syncing: without rknn_mem_sync the CPU
            # could read stale cache lines of what the NPU wrote, or the NPU miss its writes.
            runtime.require(MEM_SYNC_MINIMUM, "rknn_mem_sync", "external memory (rkrt.external)")
        self._imports: dict[Any, external.Imported] = {}  # by mem: what rkrt made for it
        self._in_dtypes = self._resolve("input", input_dtype, ctx.inputs, self._ext_in)
        self._out_dtypes = self._resolve("output", output_dtype, ctx.outputs, self._ext_out)
        self._in_mems: tuple[Any, ...] = ()
        self._out_mems: tuple[Any, ...] = ()
        self.inputs: tuple[np.ndarray, ...] = ()
        self.outputs: tuple[np.ndarray, ...] = ()
        self._closed = False
        try:
            self._allocate()
            self._bind_current()
        except BaseException:
            self._release()
            raise

    @staticmethod
    def _resolve(kind: str, dtype: Optional[np.dtype], specs: tuple[TensorSpec, ...],
                 ext: dict[int, external.ExternalMemory]) -> tuple[np.dtype, ...]:  # fmt: skip
        """The buffer dtype of each tensor: float32 (the runtime converts) or the native one;
        external memory has its own (already checked against the tensor)."""
        resolved = []
        for spec in specs:
            if spec.index in ext:
                resolved.append(ext[spec.index].dtype)
                continue
            dt = spec.dtype if dtype is None else dtype
            if dt != _F32 and dt != spec.dtype:
                raise DTypeError(
                    f"{kind} {spec.name!r} can be bound as float32 or as its native "
                    f"{spec.dtype}, not {dt}; pass {kind}_dtype=np.float32 or None for native"
                )
            if dt not in TYPE_OF_NUMPY:
                raise DTypeError(f"{kind} {spec.name!r} has native type {spec.dtype}, which rkrt "
                                 f"cannot bind; pass {kind}_dtype=np.float32")  # fmt: skip
            resolved.append(dt)
        return tuple(resolved)

    # ---- setup: everything below runs once per bind or shape switch, never per run ----

    def _native_attrs(self) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        """(plain in, plain out, native in, native out) attrs at the current shape."""
        ctx = self._context
        prefix = "RKNN_QUERY_CURRENT_" if ctx.is_dynamic else "RKNN_QUERY_"
        return (
            ctx.query_attrs(prefix + "INPUT_ATTR", ctx.n_in),
            ctx.query_attrs(prefix + "OUTPUT_ATTR", ctx.n_out),
            ctx.query_attrs(prefix + "NATIVE_INPUT_ATTR", ctx.n_in),
            ctx.query_attrs(prefix + "NATIVE_OUTPUT_ATTR", ctx.n_out),
        )

    def _layouts(self) -> tuple[list[Layout], list[Layout]]:
        """How each input and output buffer is bound at the current shape."""
        pin, pout, nin, nout = self._native_attrs()
        return (
            [plan(n, p, dt, i in self._ext_in)
             for i, (n, p, dt) in enumerate(zip(nin, pin, self._in_dtypes))],
            [plan(n, p, dt, i in self._ext_out)
             for i, (n, p, dt) in enumerate(zip(nout, pout, self._out_dtypes))],
        )  # fmt: skip

    def _allocate(self) -> None:
        s = self._context
        start = tuple(spec.shape for spec in s.inputs)
        in_sizes = [0] * s.n_in
        out_sizes = [0] * s.n_out
        # Buffers must hold the largest shape: visit every shape set once, then go back.
        for shapes in s.shape_sets if s.is_dynamic else (start,):
            if s.is_dynamic:
                s.switch_shapes(shapes)
            ins, outs = self._layouts()
            in_sizes = [max(size, lay.nbytes) for size, lay in zip(in_sizes, ins)]
            out_sizes = [max(size, lay.nbytes) for size, lay in zip(out_sizes, outs)]
        if s.is_dynamic:
            s.switch_shapes(start)
        # Every external region is checked before any memory is created.
        for kind, ext, specs, sizes in (
            ("input", self._ext_in, s.inputs, in_sizes),
            ("output", self._ext_out, s.outputs, out_sizes),
        ):
            for i, e in ext.items():
                external.check_size(kind, specs[i], e, sizes[i])
        self._in_mems = tuple(self._create(n, self._ext_in.get(i)) for i, n in enumerate(in_sizes))
        self._out_mems = tuple(
            self._create(n, self._ext_out.get(i)) for i, n in enumerate(out_sizes)
        )

    def _create(self, size: int, ext: Optional[external.ExternalMemory] = None) -> Any:
        ctx = self._context
        if ext is None:
            return ctx.create_mem(size)
        imported = ext._import(ctx.runtime, ctx.live_handle())
        self._imports[imported.mem] = imported
        ctx.mems.append(imported.mem)
        return imported.mem

    def _bind_one(self, mem: Any, layout: Layout) -> np.ndarray:
        check(self._set_io_mem(self._context.handle, mem, layout.attr), "rknn_set_io_mem")
        imported = self._imports.get(mem)
        address = mem.virt_addr if imported is None else imported.address
        view = layout.view(address, int(mem.size))
        if imported is not None and not imported.writable:
            view.flags.writeable = False  # a read-only mapping: a write would crash
        return view

    def _bind_current(self) -> None:
        ins, outs = self._layouts()
        self.inputs = tuple(self._bind_one(m, lay) for m, lay in zip(self._in_mems, ins))
        self.outputs = tuple(self._bind_one(m, lay) for m, lay in zip(self._out_mems, outs))

    # ---- use ----

    def run(self) -> None:
        """Sync the input buffers to the NPU, run, sync the outputs back (syncs only where
        the runtime has rknn_mem_sync)."""
        with self._lock:
            if self._closed or not self.outputs:
                if self._closed:
                    raise ClosedError("this IOBinding is closed; bind the session again")
                raise RuntimeError(
                    "a failed set_input_shapes() left this IOBinding without buffers of the "
                    "runtime's current shape; call set_input_shapes() again before run()"
                )
            handle = self._context.handle
            sync = self._sync
            if sync is None:
                ret = self._run(handle, _NULL)
                if ret < 0:
                    check(ret, "rknn_run")
                return
            for mem in self._in_mems:
                ret = sync(handle, mem, _TO_DEVICE)
                if ret < 0:
                    check(ret, "rknn_mem_sync")
            ret = self._run(handle, _NULL)
            if ret < 0:
                check(ret, "rknn_run")
            for mem in self._out_mems:
                ret = sync(handle, mem, _FROM_DEVICE)
                if ret < 0:
                    check(ret, "rknn_mem_sync")

    def set_input_shapes(self, *shapes: tuple[int, ...]) -> None:
        """Switch a dynamic-shape model to another accepted shape set (one shape per input).

        The buffers stay; they are bound again with the runtime's current attrs, and
        ``inputs``/``outputs`` become new views of the new shapes.
        """
        s = self._context
        wanted = tuple(tuple(int(d) for d in shape) for shape in shapes)
        if wanted not in s.shape_sets:
            raise ShapeError(
                f"input shapes {wanted} are not accepted; the model accepts "
                + ", ".join(str(x) for x in s.shape_sets)
            )
        with self._lock:
            if self._closed:
                raise ClosedError("this IOBinding is closed; bind the session again")
            try:
                s.switch_shapes(wanted)
                self._bind_current()
            except BaseException:
                # Half switched: views of the old shape would not match what the runtime
                # reads and writes, so none are offered until a switch succeeds.
                self.inputs = self.outputs = ()
                raise

    @property
    def closed(self) -> bool:
        """True once close() was called or the session closed."""
        return self._closed

    def _forget(self) -> None:
        """The session is closing: its context frees the memory; only drop the views and
        undo rkrt's own imports of external memory (never the caller's memory itself)."""
        self._closed = True
        self.inputs = self.outputs = ()
        self._ext_in, self._ext_out = {}, {}  # let the caller's objects go
        imports, self._imports = self._imports, {}
        for imported in imports.values():
            imported.release()

    def _release(self) -> None:
        mems = self._in_mems + self._out_mems
        self._in_mems = self._out_mems = ()
        try:
            if self._context.handle is not None:
                self._context.destroy_mems(mems)
        finally:
            self._forget()

    def close(self) -> None:
        """Free the runtime memory. The arrays handed out before must not be used after this."""
        if self._closed:
            return
        with self._lock:
            self._release()

    def __enter__(self) -> IOBinding:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.inputs)} in, {len(self.outputs)} out"
        return f"<rkrt.IOBinding ({state})>"
