"""MatMul: C = A x B on the NPU through librknnrt's matrix-multiply API, made safe.

The C API checks almost nothing: unaligned K or N, K > 10240, a buffer smaller than what
``rknn_matmul_create`` reported or a run before every tensor is bound make the runtime
crash. MatMul checks all of it in Python before any C call, and hides the alignment rules:

- K is zero-padded to a multiple of 32 and N to a multiple of 16 (float16) or 32 (int8),
  the strictest alignment of every SoC the header lists (RK3588/RK3576/RK3566/RK3568/RK3562),
  so callers pass natural shapes and get results cropped back to (M, N);
- K > 10240 is split into near-equal slices (each padded, each ≤ 10240) run as separate NPU
  matmuls whose partial results are summed in float32 (float16) or int32 (int8): the same
  accumulation types the NPU uses, so int8 results stay exact;
- several batch sizes M use one context made with ``rknn_matmul_create_dynamic_shape``;
- B is converted once to the NPU's native layout by the runtime's own converter
  (``rknn_B_normal_layout_to_native_layout``) and bound once; A and C use the normal layout;
- the CPU's caches are synced (``rknn_mem_sync``) for A and B before the NPU reads them and
  for C before the CPU reads it, as IOBinding does for models;
- runtimes older than 2.1.0 are refused before any matmul call: their ``rknn_matmul_info``
  (24 bytes in 1.5.2/1.6.0, 64 from 2.0) and ``rknn_B_normal_layout_to_native_layout`` (7
  arguments in 2.0.0b0, 5 from 2.1.0) differ from the header rkrt is built on;
- int8 -> int8 (``out_dtype="int8"``, RKNN_INT8_MM_INT8_TO_INT8) requantizes on the NPU with the
  per-layer or per-channel scales and zero points of a :class:`QuantParams`; padded columns of
  B get scale 1 (their results are cropped) and padded columns of A hold A's zero point, so
  padding adds nothing to the product even with zero points.
"""

from __future__ import annotations

import math
import numbers
import operator
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np

from ._ffi import DEFINES as CORE_DEFINES
from ._matmul_ffi import DEFINES, MatmulRuntime, enum, ffi, matmul_runtime
from .arguments import PathLike, positive_int
from .cores import CoreMask, MaskLike, detect_soc, validate_mask
from .errors import ClosedError, DTypeError, ShapeError, check, created
from .library import MATMUL_MINIMUM, Runtime, load
from .tensor import TYPES

MAX_K = DEFINES["RKNN_MATMUL_MAX_K"]
#: Alignment of K (elements) that satisfies every SoC's rule.
K_ALIGN = 32
_MAX_SHAPES = CORE_DEFINES["RKNN_MAX_DYNAMIC_SHAPE_NUM"]
_MM = enum("rknn_matmul_type")
_LAYOUT = enum("rknn_matmul_layout")
_SYNC = enum("rknn_mem_sync_mode")
_TO_DEVICE = _SYNC["RKNN_MEMORY_SYNC_TO_DEVICE"]
_FROM_DEVICE = _SYNC["RKNN_MEMORY_SYNC_FROM_DEVICE"]
_NULL = ffi.NULL


@dataclass(frozen=True)
class _Kind:
    """One supported matmul type: A/B element type, C type, N alignment, run() input dtypes."""

    mm_type: int
    ab: np.dtype
    c: np.dtype
    ab_type: int
    c_type: int
    n_align: int
    accepted: tuple[np.dtype, ...]


_F16, _F32, _I8, _I32 = (np.dtype(t) for t in ("float16", "float32", "int8", "int32"))
#: The supported (dtype, out_dtype) pairs; ("int8", "int8") needs QuantParams.
KINDS: dict[tuple[str, str], _Kind] = {
    ("float16", "float32"): _Kind(_MM["RKNN_FLOAT16_MM_FLOAT16_TO_FLOAT32"], _F16, _F32,
                                  TYPES["RKNN_TENSOR_FLOAT16"], TYPES["RKNN_TENSOR_FLOAT32"], 16,
                                  (_F16, _F32)),
    ("int8", "int32"): _Kind(_MM["RKNN_INT8_MM_INT8_TO_INT32"], _I8, _I32,
                             TYPES["RKNN_TENSOR_INT8"], TYPES["RKNN_TENSOR_INT32"], 32, (_I8,)),
    ("int8", "int8"): _Kind(_MM["RKNN_INT8_MM_INT8_TO_INT8"], _I8, _I8,
                            TYPES["RKNN_TENSOR_INT8"], TYPES["RKNN_TENSOR_INT8"], 32, (_I8,)),
}  # fmt: skip
_DEFAULT_OUT = {"float16": "float32", "int8": "int32"}
_QUANT = enum("rknn_matmul_quant_type")
_SUPPORTED = "dtype='float16' (out float32), dtype='int8' (out int32, or out int8 with quant=)"


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def split_k(k: int) -> list[tuple[int, int]]:
    """The [start, stop) slices of K that MatMul runs separately: each ≤ MAX_K once padded."""
    parts = -(-k // MAX_K)
    step = _round_up(-(-k // parts), K_ALIGN)
    return [(start, min(k, start + step)) for start in range(0, k, step)]


def _batch_sizes(m: Union[int, Sequence[int]]) -> tuple[int, ...]:
    values = [m] if not isinstance(m, (list, tuple, range)) else list(m)
    sizes = tuple(sorted({positive_int("M", v) for v in values}))
    if not sizes:
        raise ValueError("M must be a positive int or a non-empty sequence of them")
    if len(sizes) > _MAX_SHAPES:
        raise ValueError(f"at most {_MAX_SHAPES} batch sizes per MatMul, got {len(sizes)}")
    return sizes


def _attr_dims(attr: Any) -> tuple[int, ...]:
    return tuple(int(attr.dims[i]) for i in range(attr.n_dims))


def _scale(name: str, value: Any) -> float:
    """A scale as the float32 the runtime reads: finite and > 0 once rounded to float32."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"QuantParams.{name} must be a real number, not {value!r}")
    v = float(value)
    f32 = float(np.float32(v)) if math.isfinite(v) and abs(v) < 3.4e38 else math.inf
    if not (math.isfinite(f32) and f32 > 0):
        raise ValueError(
            f"QuantParams.{name} must be finite and > 0 in float32 (the runtime's type), got "
            f"{value!r}; a scale is the real value of one integer step"
        )
    return f32


def _zero_point(name: str, value: Any) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"QuantParams.{name} must be an int, not {value!r}")
    try:
        z = operator.index(value)
    except TypeError:
        raise TypeError(f"QuantParams.{name} must be an int, not {value!r}") from None
    if not -128 <= z <= 127:
        raise ValueError(f"QuantParams.{name} must be in the int8 range [-128, 127], got {z}")
    return z


def _per_column(name: str, value: Any, one: Any) -> Union[Any, tuple[Any, ...]]:
    """One value, or a tuple of them from a 1-D sequence (checked one by one)."""
    values = np.asarray(value, dtype=object)
    if values.ndim == 0:
        return one(name, value)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(
            f"QuantParams.{name} must be one value (per-layer) or a non-empty 1-D sequence of "
            f"N values (per-channel), got shape {values.shape}"
        )
    return tuple(one(f"{name}[{i}]", v) for i, v in enumerate(values))


@dataclass(frozen=True)
class QuantParams:
    """Scales and zero points of an int8 -> int8 MatMul: a real value is scale * (q - zero_point).

    ``a`` and ``c`` are per-layer (the API takes one scale for A and one for C). ``b`` is one
    scale (per-layer) or N of them, one per output column of B (per-channel); ``b_zero_point``
    likewise. The NPU computes, with int32 accumulation,
    ``C = clip(round((A - a_zp) @ (B - b_zp) * a * b / c) + c_zp, -128, 127)`` (b, b_zp per
    column), rounding the requantization to within one step of the exact value.
    Values are checked when the QuantParams is made; the lengths against N by MatMul.
    """

    a: float
    b: Union[float, Sequence[float]]
    c: float
    a_zero_point: int = 0
    b_zero_point: Union[int, Sequence[int]] = 0
    c_zero_point: int = 0

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "a", _scale("a", self.a))
        set_(self, "c", _scale("c", self.c))
        set_(self, "b", _per_column("b", self.b, _scale))
        set_(self, "a_zero_point", _zero_point("a_zero_point", self.a_zero_point))
        set_(self, "c_zero_point", _zero_point("c_zero_point", self.c_zero_point))
        set_(self, "b_zero_point", _per_column("b_zero_point", self.b_zero_point, _zero_point))

    @property
    def per_channel(self) -> bool:
        """True when B has one scale or zero point per output column."""
        return isinstance(self.b, tuple) or isinstance(self.b_zero_point, tuple)

    def _b_arrays(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """B's scales and zero points as N-long arrays; ValueError for a wrong length."""
        for name, value in (("b", self.b), ("b_zero_point", self.b_zero_point)):
            if isinstance(value, tuple) and len(value) != n:
                raise ValueError(
                    f"QuantParams.{name} has {len(value)} values; a per-channel B needs one per "
                    f"output column, N = {n} (or pass one value for per-layer)"
                )
        return (np.broadcast_to(np.asarray(self.b, _F32), (n,)),
                np.broadcast_to(np.asarray(self.b_zero_point, _I32), (n,)))  # fmt: skip


class _QuantSetting:
    """The quant params of one context: B_quant_type and the three rknn_quant_params."""

    def __init__(self, q: QuantParams, n: int, n_padded: int) -> None:
        b_scale, b_zp = q._b_arrays(n)
        asym = bool(b_zp.any())
        if q.per_channel:
            # The runtime wants one value per column of the N it was created with: padded
            # columns too. Their results are cropped, so any valid scale (1) and zp (0) do.
            b_params = np.ones(n_padded, _F32), np.zeros(n_padded, _I32)
            b_params[0][:n], b_params[1][:n] = b_scale, b_zp
            kind = "PER_CHANNEL"
        else:
            b_params = b_scale[:1].copy(), b_zp[:1].copy()
            kind = "PER_LAYER"
        # A nonzero zero point of B needs the ASYM type; a SYM one may ignore it.
        self.b_quant_type = _QUANT[f"RKNN_QUANT_TYPE_{kind}_{'ASYM' if asym else 'SYM'}"]
        self.a_zp = q.a_zero_point
        self.params = {
            "A": (np.array([q.a], _F32), np.array([q.a_zero_point], _I32)),
            "B": b_params,
            "C": (np.array([q.c], _F32), np.array([q.c_zero_point], _I32)),
        }

    def apply(self, mm: MatmulRuntime, handle: int, attrs: Any) -> None:
        """rknn_matmul_set_quant_params for A, B and C, named as create reported them."""
        set_quant = mm.symbol("rknn_matmul_set_quant_params")
        for tensor, (scale, zp) in self.params.items():
            # The struct only points at the arrays: keep their cdata alive across the call.
            c_scale, c_zp = ffi.from_buffer("float[]", scale), ffi.from_buffer("int32_t[]", zp)
            p = ffi.new("rknn_quant_params*")
            p.name = ffi.string(getattr(attrs, tensor).name)
            p.scale, p.scale_len, p.zp, p.zp_len = c_scale, len(scale), c_zp, len(zp)
            check(set_quant(handle, p), "rknn_matmul_set_quant_params")


def _kind_of(dtype: Any, out_dtype: Any, quant: Optional[QuantParams], k: int) -> tuple[str, _Kind]:
    """The matmul type for (dtype, out_dtype, quant), or the error naming what is supported."""
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in _DEFAULT_OUT:
        raise DTypeError(
            f"MatMul dtype must be one of {sorted(_DEFAULT_OUT)}, not {dtype!r} (float16 gives "
            "float32 results, int8 exact int32 ones or, with quant=, int8 ones)"
        )
    out = _DEFAULT_OUT[name] if out_dtype is None else np.dtype(out_dtype).name
    if (name, out) == ("int8", "float32"):
        raise DTypeError(
            "int8 -> float32 (RKNN_INT8_MM_INT8_TO_FLOAT32) is not supported: the SDK documents "
            "rknn_matmul_set_quant_params for int8 -> int8 and int8 -> int32 only. Use "
            "out_dtype='int32' (exact) and multiply by a_scale * b_scale in numpy"
        )
    if (name, out) not in KINDS:
        raise DTypeError(f"MatMul dtype={name!r} with out_dtype={out!r} is not supported; "
                         f"supported: {_SUPPORTED}")  # fmt: skip
    if out == "int8" and not isinstance(quant, QuantParams):
        raise ValueError(
            "out_dtype='int8' requantizes on the NPU and needs its scales: pass "
            f"quant=QuantParams(a=..., b=..., c=...), not {quant!r}"
        )
    if out != "int8" and quant is not None:
        raise ValueError(
            f"quant= applies to dtype='int8', out_dtype='int8' only; {name} -> {out} results are "
            "not requantized (int32 is the exact accumulator: scale it in numpy)"
        )
    if out == "int8" and k > MAX_K:
        raise ValueError(
            f"K={k} > {MAX_K} needs several NPU matmuls whose partial sums are added, but int8 "
            "results are rounded and saturated per matmul, so they cannot be added. Use "
            "out_dtype='int32' and requantize in numpy, or K <= 10240"
        )
    return name, KINDS[(name, out)]


class _Resources:
    """Owns the matmul contexts and their memory; frees each exactly once.

    Separate from MatMul so weakref.finalize can free it without keeping the MatMul alive.
    """

    def __init__(self, mm: MatmulRuntime) -> None:
        self.mm = mm
        self.handles: list[int] = []
        self.mems: list[tuple[int, Any]] = []

    def create_mem(self, handle: int, size: int) -> Any:
        create = self.mm.core.symbol("rknn_create_mem")
        mem = created(create(handle, size), "rknn_create_mem", "RKNN_ERR_MALLOC_FAIL")
        self.mems.append((handle, mem))
        return mem

    def release(self) -> None:
        """Free every memory block, then every context; a second call does nothing."""
        destroy_mem = self.mm.core.symbol("rknn_destroy_mem")
        destroy = self.mm.symbol("rknn_matmul_destroy")
        errors = []
        while self.mems:
            handle, mem = self.mems.pop()
            errors.append((destroy_mem(handle, mem), "rknn_destroy_mem"))
        while self.handles:
            errors.append((destroy(self.handles.pop()), "rknn_matmul_destroy"))
        for ret, function in errors:
            check(ret, function)


class _Tile:
    """One NPU matmul context: the columns [k0, k1) of A times the rows [k0, k1) of B."""

    def __init__(self, res: _Resources, kind: _Kind, sizes: tuple[int, ...], k0: int, k1: int,
                 n: int, mask: CoreMask, quant: Optional[QuantParams]) -> None:  # fmt: skip
        mm = res.mm
        self.k0, self.k1 = k0, k1
        self.kp, self.np_ = _round_up(k1 - k0, K_ALIGN), _round_up(n, kind.n_align)
        self._kind = kind
        setting = _QuantSetting(quant, n, self.np_) if quant is not None else None
        info = self.info = ffi.new("rknn_matmul_info*")
        info.M, info.K, info.N = sizes[-1], self.kp, self.np_
        info.type = kind.mm_type
        if setting is not None:
            info.B_quant_type = setting.b_quant_type
        info.B_layout = _LAYOUT["RKNN_MM_LAYOUT_NATIVE"]
        info.AC_layout = _LAYOUT["RKNN_MM_LAYOUT_NORM"]
        out = ffi.new("rknn_matmul_ctx*")
        self.attrs = ffi.new("rknn_matmul_io_attr[]", len(sizes))
        if len(sizes) == 1:
            check(mm.symbol("rknn_matmul_create")(out, info, self.attrs), "rknn_matmul_create")
        else:
            self.shapes = ffi.new("rknn_matmul_shape[]", [(m, self.kp, self.np_) for m in sizes])
            create = mm.symbol("rknn_matmul_create_dynamic_shape")
            check(create(out, info, len(sizes), self.shapes, self.attrs),
                  "rknn_matmul_create_dynamic_shape")  # fmt: skip
        self.handle = int(out[0])
        res.handles.append(self.handle)
        self.index = {m: i for i, m in enumerate(sizes)}
        self._check_attrs(sizes)
        if mask != CoreMask.AUTO:
            check(mm.symbol("rknn_matmul_set_core_mask")(self.handle, int(mask)),
                  "rknn_matmul_set_core_mask")  # fmt: skip
        if setting is not None:
            setting.apply(mm, self.handle, self.attrs[0])
        a_size = max(int(self.attrs[i].A.size) for i in range(len(sizes)))
        c_size = max(int(self.attrs[i].C.size) for i in range(len(sizes)))
        self.a_mem = res.create_mem(self.handle, a_size)
        self.b_mem = res.create_mem(self.handle, int(self.attrs[0].B.size))
        self.c_mem = res.create_mem(self.handle, c_size)
        rows = sizes[-1]
        a_all = np.frombuffer(ffi.buffer(self.a_mem.virt_addr, a_size), kind.ab,
                              count=rows * self.kp).reshape(rows, self.kp)  # fmt: skip
        c_all = np.frombuffer(ffi.buffer(self.c_mem.virt_addr, c_size), kind.c,
                              count=rows * self.np_).reshape(rows, self.np_)  # fmt: skip
        # The padding columns of A must add nothing: they hold A's zero point (0 unless
        # quantized), so (A - a_zp) is 0 there whatever B's zero points. Runtime memory is not
        # promised to start zeroed, and nothing writes those columns later.
        a_all[...] = setting.a_zp if setting is not None else 0
        # Normal layout: the first m rows of the buffers are exactly the (m, K) / (m, N) tensors.
        self.views = {m: (a_all[:m, : k1 - k0], c_all[:m, :n]) for m in sizes}
        self._set_io_mem = mm.symbol("rknn_matmul_set_io_mem")
        self._set_shape = mm.symbol("rknn_matmul_set_dynamic_shape")
        self._run = mm.symbol("rknn_matmul_run")
        self._sync = mm.core.symbol("rknn_mem_sync")
        self.current = -1
        self.select(sizes[0])

    def _check_attrs(self, sizes: tuple[int, ...]) -> None:
        """The attrs create reported must describe the buffers rkrt is about to use."""
        kind = self._kind
        for m, i in self.index.items():
            a, b, c = self.attrs[i].A, self.attrs[i].B, self.attrs[i].C
            expected = [
                ("A", a, (m, self.kp), kind.ab_type, m * self.kp * kind.ab.itemsize),
                ("C", c, (m, self.np_), kind.c_type, m * self.np_ * kind.c.itemsize),
            ]
            for name, attr, dims, rtype, nbytes in expected:
                if _attr_dims(attr) != dims or attr.type != rtype or attr.size < nbytes:
                    raise RuntimeError(
                        f"rknn_matmul_create reported {name} as dims {_attr_dims(attr)}, type "
                        f"{attr.type}, {attr.size} bytes; rkrt expects dims {dims}, type {rtype}"
                        f", at least {nbytes} bytes. This runtime's matmul API differs from the "
                        "one rkrt supports (SDK 2.x); please report it with its version"
                    )
            if b.type != kind.ab_type or b.size < self.kp * self.np_ * kind.ab.itemsize:
                raise RuntimeError(
                    f"rknn_matmul_create reported B as type {b.type}, {b.size} bytes; the native "
                    f"B of ({self.kp}, {self.np_}) needs type {kind.ab_type} and "
                    f"{self.kp * self.np_ * kind.ab.itemsize} bytes"
                )

    def _bind(self, mem: Any, i: int, tensor: str) -> None:
        attr = ffi.addressof(self.attrs[i], tensor)
        check(self._set_io_mem(self.handle, mem, attr), "rknn_matmul_set_io_mem")

    def select(self, m: int) -> None:
        """Make batch size m current: switch the shape and bind A and C for it."""
        if m == self.current:
            return
        i = self.index[m]
        if len(self.index) > 1:
            check(self._set_shape(self.handle, ffi.addressof(self.shapes, i)),
                  "rknn_matmul_set_dynamic_shape")  # fmt: skip
        self._bind(self.a_mem, i, "A")
        self._bind(self.c_mem, i, "C")
        self.current = m

    def set_b(self, b: np.ndarray, convert: Any) -> None:
        """Write rows [k0, k1) of b (already of the A/B dtype) into native B and bind it."""
        padded = np.zeros((self.kp, self.np_), self._kind.ab)
        padded[: self.k1 - self.k0, : b.shape[1]] = b[self.k0 : self.k1]
        ret = convert(ffi.from_buffer(padded), self.b_mem.virt_addr, self.kp, self.np_, self.info)
        check(ret, "rknn_B_normal_layout_to_native_layout")
        check(self._sync(self.handle, self.b_mem, _TO_DEVICE), "rknn_mem_sync")
        self._bind(self.b_mem, self.index[self.current], "B")

    def run(self) -> None:
        """One NPU matmul on what A holds: A's caches written back first, C's dropped after."""
        handle = self.handle
        ret = self._sync(handle, self.a_mem, _TO_DEVICE)
        if ret < 0:
            check(ret, "rknn_mem_sync")
        ret = self._run(handle)
        if ret < 0:
            check(ret, "rknn_matmul_run")
        ret = self._sync(handle, self.c_mem, _FROM_DEVICE)
        if ret < 0:
            check(ret, "rknn_mem_sync")


class MatMul:
    """C = A @ B on the NPU for A of shape (M, K) and a fixed B of shape (K, N).

    ``dtype="float16"``: A and B are float16 (float32 inputs are rounded to it), C is float32,
    accumulated in float32. ``dtype="int8"``: A and B are int8, C is the exact int32 product;
    with ``out_dtype="int8", quant=QuantParams(a=..., b=..., c=...)`` C is int8, requantized on
    the NPU with per-layer or per-channel (per column of B) scales and zero points.
    ``M`` is one batch size or a sequence of them (one context serves them all).
    Call :meth:`set_b` once, then :meth:`run` per batch; or :meth:`bind` for zero-copy views.
    Thread-safe (calls are serialised); a context manager; ``close()`` is idempotent and
    resources are also freed at garbage collection.
    """

    def __init__(
        self,
        M: Union[int, Sequence[int]],
        K: int,
        N: int,
        *,
        dtype: Any = "float16",
        out_dtype: Any = None,
        quant: Optional[QuantParams] = None,
        core_mask: MaskLike = CoreMask.AUTO,
        library: Optional[PathLike] = None,
        soc: Optional[str] = None,
    ) -> None:
        self._closed = True  # until everything exists, so close()/__del__ are no-ops
        self._sizes = _batch_sizes(M)
        self._k = positive_int("K", K)
        self._n = positive_int("N", N)
        self._dtype, self._kind = _kind_of(dtype, out_dtype, quant, self._k)
        self._quant = quant
        self._core_mask = validate_mask(core_mask, detect_soc(soc))
        runtime: Runtime = load(library)
        # Before any matmul call: an older runtime would take rkrt's structs with another
        # layout and crash, or write a corrupt B.
        runtime.require(MATMUL_MINIMUM, "rknn_matmul_create_dynamic_shape", "rkrt.MatMul")
        mm = matmul_runtime(runtime)
        self._convert = mm.symbol("rknn_B_normal_layout_to_native_layout")
        self._res = _Resources(mm)
        self._finalizer = weakref.finalize(self, self._res.release)
        self._lock = threading.Lock()
        self._has_b = False
        try:
            self._tiles = [
                _Tile(self._res, self._kind, self._sizes, k0, k1, self._n, self._core_mask, quant)
                for k0, k1 in split_k(self._k)
            ]
        except BaseException:
            self._finalizer()
            raise
        self._closed = False

    # ---- description ----

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """The accepted numbers of rows of A (sorted)."""
        return self._sizes

    @property
    def K(self) -> int:  # noqa: N802 (the API's own name)
        return self._k

    @property
    def N(self) -> int:  # noqa: N802
        return self._n

    @property
    def dtype(self) -> str:
        """The type of A and B on the NPU: "float16" or "int8"."""
        return self._dtype

    @property
    def result_dtype(self) -> np.dtype:
        """float32 for float16 matmuls, int32 for int8 ones, int8 with ``out_dtype="int8"``."""
        return self._kind.c

    @property
    def quant(self) -> Optional[QuantParams]:
        """The scales and zero points of an int8 -> int8 MatMul, else None."""
        return self._quant

    @property
    def splits(self) -> int:
        """NPU matmuls per run: 1, or more when K > MAX_K is split."""
        return len(self._tiles)

    @property
    def core_mask(self) -> CoreMask:
        return self._core_mask

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        if self._closed:
            return "<rkrt.MatMul (closed)>"
        return (f"<rkrt.MatMul M={list(self._sizes)} K={self._k} N={self._n} "
                f"{self._dtype}->{self._kind.c.name} splits={self.splits} "
                f"core_mask={self._core_mask.name}>")  # fmt: skip

    # ---- use ----

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("this rkrt.MatMul is closed; create a new one")

    def _need_b(self) -> None:
        if not self._has_b:
            raise RuntimeError("B is not set: call set_b(weights) once before running")

    def set_b(self, b: Any) -> None:
        """Set B, shape (K, N): converted to the NPU's native layout once and bound.

        float16 MatMuls take any float dtype (rounded to float16; values that overflow it
        raise ValueError); int8 ones take int8.
        """
        b = np.asarray(b)
        if b.shape != (self._k, self._n):
            raise ShapeError(f"B must have shape (K, N) = {(self._k, self._n)}, got {b.shape}")
        kind = self._kind
        if kind.ab == _F16:
            if b.dtype.kind != "f":
                raise DTypeError(f"B of a float16 MatMul must be a float array, not {b.dtype}")
            with np.errstate(over="ignore"):
                cast = b.astype(_F16)
            if not np.isfinite(cast).all():
                raise ValueError(
                    "B has values that are not finite in float16 (|x| > 65504, inf or nan); "
                    "scale the weights into float16 range"
                )
        elif b.dtype != kind.ab:
            raise DTypeError(
                f"B of an int8 MatMul must be int8, not {b.dtype}; quantize it first "
                "(e.g. np.clip(np.rint(w / scale), -128, 127).astype(np.int8))"
            )
        else:
            cast = b
        with self._lock:
            self._check_open()
            for tile in self._tiles:
                tile.set_b(cast, self._convert)
            self._has_b = True

    def _check_a(self, a: Any) -> np.ndarray:
        a = np.asarray(a)
        if a.ndim != 2 or a.shape[1] != self._k or a.shape[0] not in self._tiles[0].index:
            raise ShapeError(
                f"A must have shape (M, {self._k}) with M in {list(self._sizes)}, got {a.shape}"
            )
        if a.dtype not in self._kind.accepted:
            names = ", ".join(d.name for d in self._kind.accepted)
            raise DTypeError(
                f"A of a {self._dtype} MatMul must be {names}, not {a.dtype}; convert it "
                f"explicitly (e.g. a.astype(np.{self._kind.accepted[-1].name}))"
            )
        return a

    def _check_out(self, out: Any, m: int) -> np.ndarray:
        shape = (m, self._n)
        if not isinstance(out, np.ndarray) or out.dtype != self._kind.c or out.shape != shape:
            raise ShapeError(
                f"out must be a {self._kind.c} array of shape {shape}, got "
                f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
            )
        if not out.flags.writeable:
            raise ValueError("out must be writeable")
        return out

    def run(self, a: Any, out: Optional[np.ndarray] = None) -> np.ndarray:
        """A @ B for A of shape (M, K): an (M, N) array of :attr:`result_dtype`."""
        a = self._check_a(a)
        m = a.shape[0]
        out = np.empty((m, self._n), self._kind.c) if out is None else self._check_out(out, m)
        with self._lock:
            self._check_open()
            self._need_b()
            for i, tile in enumerate(self._tiles):
                tile.select(m)
                a_view, c_view = tile.views[m]
                a_view[...] = a[:, tile.k0 : tile.k1]
                tile.run()
                if i == 0:
                    np.copyto(out, c_view)
                else:
                    np.add(out, c_view, out=out)
        return out

    def bind(self, m: Optional[int] = None) -> MatMulBinding:
        """Zero-copy views for batch size ``m`` (required when there are several)."""
        if m is None:
            if len(self._sizes) > 1:
                raise ValueError(f"pass the batch size: bind(m) with m in {list(self._sizes)}")
            m = self._sizes[0]
        if m not in self._sizes:
            raise ShapeError(f"batch size {m} is not one of {list(self._sizes)}")
        self._check_open()
        if len(self._tiles) > 1:
            raise ValueError(
                f"K={self._k} > {MAX_K} is split over {len(self._tiles)} NPU matmuls, so A and C "
                "are not single buffers; use run(a) instead of zero-copy views"
            )
        return MatMulBinding(self, m)

    def _run_bound(self, m: int) -> None:
        with self._lock:
            self._check_open()
            self._need_b()
            tile = self._tiles[0]
            tile.select(m)
            tile.run()

    def close(self) -> None:
        """Free the NPU contexts and memory. Views handed out before must not be used after."""
        if self._closed:
            return
        with self._lock:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> MatMul:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MatMulBinding:
    """Zero-copy IO of a MatMul for one batch size, made by :meth:`MatMul.bind`.

    ``a`` (m, K) and ``c`` (m, N) are numpy views over the runtime's own buffers: write
    ``a[...] = x``, call :meth:`run`, read ``c``. Nothing is allocated or copied per call.
    Bindings of one MatMul share its buffers; views are valid until the MatMul is closed.
    """

    def __init__(self, owner: MatMul, m: int) -> None:
        self._owner = owner
        self.m = m
        self.a, self.c = owner._tiles[0].views[m]

    def run(self) -> np.ndarray:
        """Run on the contents of ``a``; returns ``c`` (the same view every time)."""
        self._owner._run_bound(self.m)
        return self.c

    def __repr__(self) -> str:
        return f"<rkrt.MatMulBinding m={self.m} a{self.a.shape} c{self.c.shape}>"
