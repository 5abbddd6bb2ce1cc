"""Context: one rknn_context with its lock, runtime, queries, current shapes and API mode.

Everything that talks to a context about itself lives here, so Session (opening, describing,
control), the general-API run path (rkrt.general) and IOBinding (zero-copy) share one
implementation and none of them reaches into another's state.
"""

from __future__ import annotations

import threading
from typing import Any, Optional, Sequence

from ._ffi import enum, ffi
from .errors import ClosedError, RKNNError, check, created
from .library import Runtime
from .tensor import TensorSpec

_Q = enum("rknn_query_cmd")

# API modes. A context is either driven by inputs_set/outputs_get ("general") or by bound
# memory ("zero-copy"), never both: the runtime misbehaves when they are mixed.
FRESH, GENERAL, ZERO_COPY, CLOSED = 0, 1, 2, 3

Shapes = tuple[tuple[int, ...], ...]


class Context:
    """Owns one rknn_context and the runtime memory blocks made on it; frees each exactly once.

    It holds no reference to its Session, so weakref.finalize can free it without keeping
    the Session alive. ``lock`` serialises every call on the context; ``mode`` is FRESH,
    GENERAL, ZERO_COPY or CLOSED.
    """

    def __init__(self, runtime: Runtime, handle: int, owned: bool = True) -> None:
        self.runtime = runtime
        self.handle: Optional[int] = handle
        self.mems: list[Any] = []
        # False for an adopted context: its creator destroys it, rkrt only its own mems.
        self.owned = owned
        self.lock = threading.Lock()
        self.mode = FRESH
        self.n_in = self.n_out = 0
        self.shape_sets: tuple[Shapes, ...] = ((),)
        self.output_shape_sets: tuple[Shapes, ...] = ((),)  # the outputs' per input shape set
        self.inputs: tuple[TensorSpec, ...] = ()
        self.outputs: tuple[TensorSpec, ...] = ()
        # The inputs' attrs as the model declares them: the template of every shape switch.
        self.in_attrs: list[Any] = []

    # ---- queries ----

    def live_handle(self) -> int:
        """The handle, or ClosedError once the context was released."""
        handle = self.handle
        if handle is None:
            raise ClosedError("this rkrt.Session is closed; open a new one")
        return handle

    def query(self, cmd: str, ctype: str, index: Optional[int] = None) -> Any:
        """rknn_query(``cmd``) into a new ``ctype``; ``index`` selects a tensor."""
        info = ffi.new(ctype + "*")
        if index is not None:
            info.index = index
        ret = self.runtime.lib.rknn_query(self.live_handle(), _Q[cmd], info, ffi.sizeof(ctype))
        check(ret, "rknn_query")
        return info

    def query_attrs(self, cmd: str, count: int) -> list[Any]:
        """The ``rknn_tensor_attr`` of tensors 0..count-1 for ``cmd``."""
        return [self.query(cmd, "rknn_tensor_attr", i) for i in range(count)]

    def describe(self) -> None:
        """Read the tensor counts, specs and accepted shapes.

        A dynamic model is switched to its first shape set, as the runtime wants a shape
        chosen before the first run.
        """
        num = self.query("RKNN_QUERY_IN_OUT_NUM", "rknn_input_output_num")
        self.n_in, self.n_out = int(num.n_input), int(num.n_output)
        self.in_attrs = self.query_attrs("RKNN_QUERY_INPUT_ATTR", self.n_in)
        self.shape_sets = self._dynamic_shapes(self.in_attrs)
        if self.is_dynamic:
            # Each set's output shapes are only known once switched to: visit every set, the
            # first one last, before anything (a zero-copy binding) depends on the current one.
            outs = []
            for shapes in (*self.shape_sets[1:], self.shape_sets[0]):
                self.switch_shapes(shapes)
                outs.append(tuple(s.shape for s in self.outputs))
            self.output_shape_sets = (outs[-1], *outs[:-1])
        else:
            self._set_specs(self.in_attrs, self.query_attrs("RKNN_QUERY_OUTPUT_ATTR", self.n_out))
            self.output_shape_sets = (tuple(s.shape for s in self.outputs),)

    @property
    def is_dynamic(self) -> bool:
        """True when the model accepts more than one input shape."""
        return len(self.shape_sets) > 1

    def _dynamic_shapes(self, attrs: list[Any]) -> tuple[Shapes, ...]:
        ranges = []
        for i in range(len(attrs)):
            try:
                r = self.query("RKNN_QUERY_INPUT_DYNAMIC_RANGE", "rknn_input_range", i)
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

    def _set_specs(self, in_attrs: Sequence[Any], out_attrs: Sequence[Any]) -> None:
        self.inputs = tuple(TensorSpec.from_attr(a) for a in in_attrs)
        self.outputs = tuple(TensorSpec.from_attr(a) for a in out_attrs)

    def switch_shapes(self, shapes: Shapes) -> tuple[list[Any], list[Any]]:
        """Set a dynamic model's input shapes; returns the current (input, output) attrs.

        ``inputs``/``outputs`` describe the new shapes afterwards. The caller holds the lock.
        """
        attrs = ffi.new("rknn_tensor_attr[]", self.n_in)
        for i, (attr, shape) in enumerate(zip(self.in_attrs, shapes)):
            attrs[i] = attr[0]
            attrs[i].n_dims = len(shape)
            for k, d in enumerate(shape):
                attrs[i].dims[k] = d
        set_shapes = self.runtime.symbol("rknn_set_input_shapes")
        check(set_shapes(self.live_handle(), self.n_in, attrs), "rknn_set_input_shapes")
        in_attrs = self.query_attrs("RKNN_QUERY_CURRENT_INPUT_ATTR", self.n_in)
        out_attrs = self.query_attrs("RKNN_QUERY_CURRENT_OUTPUT_ATTR", self.n_out)
        self._set_specs(in_attrs, out_attrs)
        return in_attrs, out_attrs

    # ---- the API mode: the runtime's rule, one per context ----

    def enter_general(self) -> None:
        """Claim the context for run(); refused once closed or bound for zero-copy."""
        if self.mode == CLOSED:
            raise ClosedError("this rkrt.Session is closed; open a new one")
        if self.mode == ZERO_COPY:
            raise RuntimeError(
                "this session is bound for zero-copy IO; run it with its IOBinding's run(), or "
                "use session.dup() for run(): the runtime forbids mixing both on one context"
            )
        self.mode = GENERAL

    def check_zero_copy(self) -> None:
        """Refuse zero-copy IO on a closed context or one that already ran through run()."""
        if self.mode == CLOSED or self.handle is None:
            raise ClosedError("this rkrt.Session is closed; open a new one")
        if self.mode == GENERAL:
            raise RuntimeError(
                "this session already ran through run(); the runtime forbids mixing that "
                "with zero-copy IO on one context. Bind a duplicate: session.dup().bind()"
            )

    # ---- memory and lifetime ----

    def create_mem(self, size: int) -> Any:
        """A runtime-allocated block of ``size`` bytes, freed with the context."""
        create = self.runtime.symbol("rknn_create_mem")
        mem = created(create(self.live_handle(), size), "rknn_create_mem", "RKNN_ERR_MALLOC_FAIL")
        self.mems.append(mem)
        return mem

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
