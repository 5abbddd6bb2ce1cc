"""The test-double librknnrt itself, through a raw cffi binding of native_headers/rknn_api.h."""

from __future__ import annotations

import ctypes
import mmap
import os
import re
import threading
import time
from pathlib import Path

import cffi
import numpy as np
import pytest
from fake_rknnrt import Dense, FakeModel, build_library
from rkrt_support import rss_bytes

REPO = Path(__file__).resolve().parents[2]
HEADER = REPO / "native_headers" / "rknn_api.h"
HEADER_FUNCTIONS = re.findall(r"^\S.*?\b(rknn_\w+)\(", HEADER.read_text(), re.M)
ALL_FUNCTIONS = [
    name
    for header in sorted(HEADER.parent.glob("*.h"))
    for name in re.findall(r"^\S.*?\b(rknn_\w+)\(", header.read_text(), re.M)
]

FLOAT32, FLOAT16, INT8, UINT8, INT32, INT64 = 0, 1, 2, 3, 6, 8
NUMPY_TYPE = {
    np.float32: FLOAT32,
    np.float16: FLOAT16,
    np.int8: INT8,
    np.uint8: UINT8,
    np.int32: INT32,
    np.int64: INT64,
    np.float64: 11,
}
SUCC, FAIL, PARAM, MODEL, CTX, INPUT, OUTPUT = 0, -1, -5, -6, -7, -8, -9
Q = {
    "in_out": 0,
    "input": 1,
    "output": 2,
    "perf_detail": 3,
    "perf_run": 4,
    "sdk": 5,
    "mem": 6,
    "custom": 7,
    "native_input": 8,
    "native_output": 9,
    "range": 13,
    "cur_input": 14,
    "cur_output": 15,
    "cur_native_input": 16,
    "cur_native_output": 17,
}
PERF_FLAG = 0x8
PR_GET_TIMERSLACK = 30  # <linux/prctl.h>


class Raw:
    """The naive raw caller: C structs by hand, no checks beyond what C returns."""

    def __init__(self, so_path: Path) -> None:
        self.ffi = cffi.FFI()
        self.ffi.cdef(HEADER.read_text())
        self.lib = self.ffi.dlopen(str(so_path))

    def init(self, model: FakeModel | bytes, flags: int = 0) -> int:
        blob = model if isinstance(model, bytes) else model.to_bytes()
        ctx = self.ffi.new("rknn_context*")
        code = self.lib.rknn_init(ctx, self.ffi.from_buffer(blob), len(blob), flags, self.ffi.NULL)
        assert code == SUCC, code
        return ctx[0]

    def attr(self, ctx: int, cmd: str, index: int = 0):
        a = self.ffi.new("rknn_tensor_attr*")
        a.index = index
        assert self.lib.rknn_query(ctx, Q[cmd], a, self.ffi.sizeof(a[0])) == SUCC
        return a

    def set_inputs(self, ctx: int, *xs: np.ndarray, sizes=None) -> int:
        ins = self.ffi.new("rknn_input[]", len(xs))
        for i, x in enumerate(xs):
            ins[i].index = i
            ins[i].buf = self.ffi.from_buffer(x)
            ins[i].size = x.nbytes if sizes is None else sizes[i]
            ins[i].type = NUMPY_TYPE[x.dtype.type]
        return self.lib.rknn_inputs_set(ctx, len(xs), ins)

    def get_outputs(self, ctx: int, model: FakeModel, want_float: int = 1) -> list[np.ndarray]:
        n = len(model.outputs)
        outs = self.ffi.new("rknn_output[]", n)
        for i in range(n):
            outs[i].index = i
            outs[i].want_float = want_float
        assert self.lib.rknn_outputs_get(ctx, n, outs, self.ffi.NULL) == SUCC
        native = {"float32": np.float32, "float16": np.float16, "int8": np.int8}[model.dtype]
        result = [
            np.frombuffer(self.ffi.buffer(o.buf, o.size), np.float32 if want_float else native)
            .copy()
            .reshape(-1, w)
            for o, (_, w) in zip(outs, model.outputs)
        ]
        assert self.lib.rknn_outputs_release(ctx, n, outs) == SUCC
        return result

    def infer(self, model: FakeModel, *xs: np.ndarray, flags: int = 0) -> list[np.ndarray]:
        ctx = self.init(model, flags)
        try:
            assert self.set_inputs(ctx, *xs) == SUCC
            assert self.lib.rknn_run(ctx, self.ffi.NULL) == SUCC
            return self.get_outputs(ctx, model)
        finally:
            assert self.lib.rknn_destroy(ctx) == SUCC


@pytest.fixture(scope="module")
def raw(fake_so) -> Raw:
    return Raw(fake_so)


# Every test leaves nothing live in the shared double and counts no misuse (the `rt` fixture).
pytestmark = pytest.mark.usefixtures("rt")


def mlp(rng, sizes, activations, dtype="float32", **kw) -> FakeModel:
    layers = [
        Dense(
            rng.standard_normal((a, b)).astype(np.float32) * 0.5,
            rng.standard_normal(b).astype(np.float32) * 0.1,
            act,
        )
        for a, b, act in zip(sizes, sizes[1:], activations)
    ]
    return FakeModel(layers, dtype=dtype, **kw)


def ulps16(a: np.ndarray, b: np.ndarray) -> int:
    ia = a.astype(np.float16).view(np.int16).astype(np.int32)
    ib = b.astype(np.float16).view(np.int16).astype(np.int32)
    return int(np.abs(ia - ib).max())


# ---------------------------------------------------------------- build and exports


def test_build_is_cached_warning_free_and_keyed_by_flags(tmp_path, fake_so):
    strict = build_library(cflags=("-Werror",), cache_dir=tmp_path)
    assert strict.exists() and strict.parent.parent == tmp_path
    t0 = time.perf_counter()
    assert build_library(cflags=("-Werror",), cache_dir=tmp_path) == strict
    assert time.perf_counter() - t0 < 0.5
    assert build_library() == fake_so
    assert fake_so != strict
    assert os.environ["RKRT_LIBRARY"] == str(fake_so)
    assert not list(tmp_path.rglob(".librknnrt-*")), "temporary build files left behind"


def test_build_reports_a_missing_compiler(tmp_path):
    with pytest.raises(RuntimeError, match="not found"):
        build_library(cc="no-such-cc-xyz", cache_dir=tmp_path)


def test_exports_every_abi_function_and_counts_each(raw, rt):
    assert len(HEADER_FUNCTIONS) == 23
    # Every function of every native header is exported and has a call count.
    assert sorted(rt.functions) == sorted(set(ALL_FUNCTIONS))
    exported = ctypes.CDLL(str(rt.path))
    for name in ALL_FUNCTIONS:
        assert hasattr(exported, name), name
    ffi, lib = raw.ffi, raw.lib
    null = ffi.NULL
    bad = 0xDEAD
    calls = {
        "rknn_init": lambda: lib.rknn_init(null, null, 0, 0, null),
        "rknn_dup_context": lambda: lib.rknn_dup_context(null, null),
        "rknn_destroy": lambda: lib.rknn_destroy(bad),
        "rknn_query": lambda: lib.rknn_query(bad, 0, null, 0),
        "rknn_inputs_set": lambda: lib.rknn_inputs_set(bad, 0, null),
        "rknn_set_batch_core_num": lambda: lib.rknn_set_batch_core_num(bad, 1),
        "rknn_set_core_mask": lambda: lib.rknn_set_core_mask(bad, 0),
        "rknn_run": lambda: lib.rknn_run(bad, null),
        "rknn_wait": lambda: lib.rknn_wait(bad, null),
        "rknn_outputs_get": lambda: lib.rknn_outputs_get(bad, 0, null, null),
        "rknn_outputs_release": lambda: lib.rknn_outputs_release(bad, 0, null),
        "rknn_create_mem_from_phys": lambda: lib.rknn_create_mem_from_phys(bad, 0, null, 0),
        "rknn_create_mem_from_fd": lambda: lib.rknn_create_mem_from_fd(bad, -1, null, 0, 0),
        "rknn_create_mem_from_mb_blk": lambda: lib.rknn_create_mem_from_mb_blk(bad, null, 0),
        "rknn_create_mem": lambda: lib.rknn_create_mem(bad, 16),
        "rknn_create_mem2": lambda: lib.rknn_create_mem2(bad, 16, 0),
        "rknn_destroy_mem": lambda: lib.rknn_destroy_mem(bad, null),
        "rknn_set_weight_mem": lambda: lib.rknn_set_weight_mem(bad, null),
        "rknn_set_internal_mem": lambda: lib.rknn_set_internal_mem(bad, null),
        "rknn_set_io_mem": lambda: lib.rknn_set_io_mem(bad, null, null),
        "rknn_set_input_shape": lambda: lib.rknn_set_input_shape(bad, null),
        "rknn_set_input_shapes": lambda: lib.rknn_set_input_shapes(bad, 0, null),
        "rknn_mem_sync": lambda: lib.rknn_mem_sync(bad, null, 1),
    }
    assert set(calls) == set(HEADER_FUNCTIONS)
    for name, call in calls.items():
        result = call()
        assert result == null if isinstance(result, ffi.CData) else result < 0, name
        assert rt.calls(name) == 1, name
    assert rt.total_calls() == 23
    assert raw.lib is not None and rt.counter("bad_pointer") >= 20
    with pytest.raises(ValueError, match="not an rknn"):
        rt.calls("rknn_typo")
    rt.reset()  # the misuse above was on purpose (the `rt` fixture fails on any)


# ---------------------------------------------------------------- numerics


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
@pytest.mark.parametrize("acts", [("relu", "softmax"), ("tanh", "sigmoid"), ("identity", "relu")])
def test_dense_layers_match_reference(raw, dtype, acts):
    rng = np.random.default_rng(1)
    model = mlp(rng, [4, 100, 3], acts, dtype)
    x = rng.standard_normal((1, 4)).astype(np.float32)
    (got,) = raw.infer(model, x)
    (want,) = model.reference(x)
    assert got.shape == want.shape == (1, 3)
    if dtype == "float32":
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    elif dtype == "float16":
        assert ulps16(got, want) <= 1
    else:
        assert np.abs(got - want).max() <= model.output_quant[0][0] * 1.001
    # The native type really shapes the result: float16/int8 differ from a float32 model.
    exact = FakeModel(model.layers, dtype="float32").reference(x)[0]
    if dtype != "float32":
        assert not np.array_equal(got, exact)
    np.testing.assert_allclose(got, exact, atol=0.05 if dtype == "int8" else 5e-3)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
def test_several_inputs_outputs_and_native_outputs(raw, dtype):
    rng = np.random.default_rng(2)
    model = mlp(
        rng,
        [5, 16, 6],
        ("relu", "identity"),
        dtype,
        inputs=[("a", 2), ("b", 3)],
        outputs=[("p", 4), ("q", 2)],
        **(
            {"input_quant": [(0.05, 3), (0.1, -2)], "output_quant": [(0.08, 1), (0.02, 0)]}
            if dtype == "int8"
            else {}
        ),
    )
    a = rng.standard_normal((1, 2)).astype(np.float32)
    b = rng.standard_normal((1, 3)).astype(np.float32)
    want = model.reference(a, b)
    ctx = raw.init(model)
    assert raw.set_inputs(ctx, a, b) == SUCC
    assert raw.lib.rknn_run(ctx, raw.ffi.NULL) == SUCC
    got = raw.get_outputs(ctx, model)
    native = raw.get_outputs(ctx, model, want_float=0)
    assert raw.lib.rknn_destroy(ctx) == SUCC
    for g, n, w, (scale, zp) in zip(got, native, want, model.output_quant):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-6 if dtype != "int8" else scale)
        if dtype == "int8":
            np.testing.assert_allclose((n.astype(np.float32) - zp) * np.float32(scale), g)
        else:
            np.testing.assert_array_equal(n.astype(np.float32), g)


@pytest.mark.parametrize("dtype", ["float16", "int8"])
@pytest.mark.parametrize("src", [np.float16, np.uint8, np.int8])
def test_input_types_are_converted_as_values(raw, dtype, src):
    rng = np.random.default_rng(3)
    model = mlp(rng, [4, 8, 2], ("relu", "identity"), dtype)
    x = rng.integers(0, 6, (1, 4)).astype(src)
    # The user guide's input table (1.5.2, Table 4-1): int8 only into int8 models, float16
    # only into float16 ones.
    if (src is np.int8) != (dtype == "int8") and src is not np.uint8:
        ctx = raw.init(model)
        assert raw.set_inputs(ctx, x) == PARAM
        assert raw.lib.rknn_destroy(ctx) == SUCC
        return
    (got,) = raw.infer(model, x)
    (want,) = model.reference(x.astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-6)


def test_float16_rounding_is_round_to_nearest_even(raw):
    # Identity model of width 1: the output is the input rounded to float16 twice.
    model = FakeModel(
        [Dense(np.eye(1, dtype=np.float32), np.zeros(1, np.float32))], dtype="float16"
    )
    special = [
        1 + 2**-11,
        1 + 3 * 2**-11,
        2**-25,
        3 * 2**-26,
        65520.0,
        65519.0,
        -(2**-24),
        6e-8,
        1e-40,
        np.inf,
        -np.inf,
        0.1,
    ]
    for v in special + list(np.random.default_rng(4).standard_normal(200) * 1000):
        x = np.array([[v]], np.float32)
        (got,) = raw.infer(model, x)
        with np.errstate(over="ignore"):
            want = x.astype(np.float16).astype(np.float32)
        assert got.tobytes() == want.tobytes() == model.reference(x)[0].tobytes(), v


def test_int8_quantize_clips_and_rounds_half_even(raw):
    model = FakeModel(
        [Dense(np.eye(3, dtype=np.float32), np.zeros(3, np.float32))],
        dtype="int8",
        input_quant=[(0.5, 0)],
        output_quant=[(0.5, 0)],
    )
    x = np.array([[0.25, 0.75, 1000.0]], np.float32)  # 0.5 -> 0, 1.5 -> 2, clip to 127
    (got,) = raw.infer(model, x)
    np.testing.assert_array_equal(got, [[0.0, 1.0, 63.5]])
    np.testing.assert_array_equal(got, model.reference(x)[0])


def test_model_from_path_with_size_zero(raw, tmp_path):
    rng = np.random.default_rng(5)
    model = mlp(rng, [3, 4], ("sigmoid",), "float32")
    path = str(model.save(tmp_path / "m.fake")).encode()
    ctx = raw.ffi.new("rknn_context*")
    assert raw.lib.rknn_init(ctx, raw.ffi.new("char[]", path), 0, 0, raw.ffi.NULL) == SUCC
    assert raw.lib.rknn_destroy(ctx[0]) == SUCC
    missing = raw.ffi.new("char[]", str(tmp_path / "none").encode())
    assert raw.lib.rknn_init(ctx, missing, 0, 0, raw.ffi.NULL) == MODEL


SHARE_WEIGHTS = 0x20  # RKNN_FLAG_SHARE_WEIGHT_MEM


def test_weight_sharing_allocates_no_second_copy(raw, rt):
    rng = np.random.default_rng(9)
    model = mlp(rng, [4, 16, 3], ("relu", "softmax"), "float16", batch_sizes=(1,))
    # the same layers for 8 rows, and (a stand-in for a weightless model) zeros for weights
    other = FakeModel([Dense(np.zeros_like(d.weight), np.zeros_like(d.bias), d.activation)
                       for d in model.layers], dtype="float16", batch_sizes=(8,))  # fmt: skip
    ffi, lib = raw.ffi, raw.lib
    weight_bytes = (4 * 16 + 16 + 16 * 3 + 3) * 4
    src = raw.init(model)
    assert rt.weight_bytes() == {"allocated": weight_bytes, "in_use": weight_bytes}
    extend = ffi.new("rknn_init_extend*")
    extend.ctx = src
    blob = other.to_bytes()
    ctx = ffi.new("rknn_context*")
    assert lib.rknn_init(ctx, ffi.from_buffer(blob), len(blob), SHARE_WEIGHTS, extend) == SUCC
    assert rt.weight_bytes() == {"allocated": weight_bytes, "in_use": weight_bytes}
    x = rng.standard_normal((8, 4)).astype(np.float32)
    assert raw.set_inputs(ctx[0], x) == SUCC and lib.rknn_run(ctx[0], ffi.NULL) == SUCC
    (y,) = raw.get_outputs(ctx[0], other)
    np.testing.assert_allclose(y, model.reference(x)[0], rtol=2e-2, atol=2e-3)  # src's weights
    assert lib.rknn_destroy(src) == SUCC  # the weights stay while a context uses them
    assert rt.weight_bytes()["in_use"] == weight_bytes
    assert raw.set_inputs(ctx[0], x) == SUCC and lib.rknn_run(ctx[0], ffi.NULL) == SUCC
    assert lib.rknn_destroy(ctx[0]) == SUCC
    assert rt.weight_bytes() == {"allocated": weight_bytes, "in_use": 0}
    # without the flag: a second copy
    a, b = raw.init(model), raw.init(other)
    assert rt.weight_bytes() == {"allocated": 3 * weight_bytes, "in_use": 2 * weight_bytes}
    assert lib.rknn_destroy(a) == SUCC and lib.rknn_destroy(b) == SUCC


def test_weight_sharing_refuses_what_cannot_share(raw, rt):
    rng = np.random.default_rng(10)
    model = mlp(rng, [4, 16, 3], ("relu", "softmax"), "float16")
    ffi, lib = raw.ffi, raw.lib
    src = raw.init(model)
    ctx = ffi.new("rknn_context*")
    extend = ffi.new("rknn_init_extend*")
    for other, code in (
        (mlp(rng, [4, 8, 3], ("relu", "softmax"), "float16"), MODEL),  # other layer shapes
        (mlp(rng, [4, 16, 3], ("relu", "softmax"), "float32"), MODEL),  # other dtype
    ):
        blob = other.to_bytes()
        extend.ctx = src
        assert lib.rknn_init(ctx, ffi.from_buffer(blob), len(blob), SHARE_WEIGHTS, extend) == code
    blob = model.to_bytes()
    assert lib.rknn_init(ctx, ffi.from_buffer(blob), len(blob), SHARE_WEIGHTS, ffi.NULL) == PARAM
    assert "rknn_init_extend.ctx" in rt.last_error()
    extend.ctx = src + 12345
    assert lib.rknn_init(ctx, ffi.from_buffer(blob), len(blob), SHARE_WEIGHTS, extend) == CTX
    assert lib.rknn_destroy(src) == SUCC
    assert rt.weight_bytes()["in_use"] == 0
    rt.reset()  # the NULL extend and the made-up handle were counted as misuse


def test_fake_model_is_deterministic_and_validated():
    rng = np.random.default_rng(6)
    w, b = rng.standard_normal((3, 2)).astype(np.float32), np.zeros(2, np.float32)
    assert FakeModel([Dense(w, b)]).to_bytes() == FakeModel([Dense(w.copy(), b)]).to_bytes()
    assert FakeModel([Dense(w, b)]).to_bytes().startswith(b"RKFAKE\x00\x01")
    with pytest.raises(ValueError, match="activation"):
        Dense(w, b, "gelu")
    with pytest.raises(ValueError, match="bias"):
        Dense(w, np.zeros(3))
    with pytest.raises(ValueError, match="layer 0 gives 2"):
        FakeModel([Dense(w, b), Dense(w, b)])
    with pytest.raises(ValueError, match="sum to 2, expected 3"):
        FakeModel([Dense(w, b)], inputs=[("x", 2)])
    with pytest.raises(ValueError, match="distinct"):
        FakeModel([Dense(w, b)], inputs=[("t", 3)], outputs=[("t", 2)])
    with pytest.raises(ValueError, match="int8 models only"):
        FakeModel([Dense(w, b)], input_quant=[(0.1, 0)])
    with pytest.raises(ValueError, match="batch_sizes"):
        FakeModel([Dense(w, b)], batch_sizes=(2, 2))


# ---------------------------------------------------------------- inputs_set semantics


def test_naive_caller_is_truncated_silently_and_counted(raw, rt):
    rng = np.random.default_rng(7)
    model = mlp(rng, [4, 8, 3], ("relu", "identity"), "float16")
    wrong = rng.standard_normal((2, 4)).astype(np.float32)  # two rows for a (1, 4) tensor
    ctx = raw.init(model)
    assert raw.set_inputs(ctx, wrong) == SUCC  # the real runtime accepts it too
    assert rt.counter("size_mismatch") == 1
    assert raw.lib.rknn_run(ctx, raw.ffi.NULL) == SUCC
    (got,) = raw.get_outputs(ctx, model)
    np.testing.assert_allclose(got, model.reference(wrong[:1])[0], rtol=1e-3)
    assert raw.set_inputs(ctx, wrong, sizes=[8]) == PARAM  # too short: refused
    assert rt.counter("size_mismatch") == 2
    assert rt.counter("unsafe") == 2
    assert raw.lib.rknn_destroy(ctx) == SUCC
    rt.reset()  # the misuse above was on purpose (the `rt` fixture fails on any)


@pytest.mark.parametrize(
    ("dtype", "code", "message"),
    [
        (np.int64, FAIL, "Normalize does not support for this data type"),
        (np.int32, FAIL, "Normalize does not support for this data type"),
        (np.float64, PARAM, "not supported"),
    ],
)
def test_unsupported_input_types(raw, rt, dtype, code, message):
    model = mlp(np.random.default_rng(8), [4, 2], ("identity",), "float16")
    ctx = raw.init(model)
    x = np.ones((1, 4), dtype)
    ins = raw.ffi.new("rknn_input[1]")
    ins[0].buf = raw.ffi.from_buffer(x)
    ins[0].size = 4 * np.dtype(dtype).itemsize
    ins[0].type = NUMPY_TYPE[dtype]
    assert raw.lib.rknn_inputs_set(ctx, 1, ins) == code
    assert message in rt.last_error()
    assert rt.counter("unsafe") == 0
    assert raw.lib.rknn_destroy(ctx) == SUCC


def test_pass_through_takes_native_bytes(raw):
    model = mlp(np.random.default_rng(9), [4, 3], ("identity",), "int8")
    x = np.array([[3, -5, 20, 7]], np.int8)  # already quantized
    ctx = raw.init(model)
    ins = raw.ffi.new("rknn_input[1]")
    ins[0].buf, ins[0].size, ins[0].pass_through = raw.ffi.from_buffer(x), 4, 1
    assert raw.lib.rknn_inputs_set(ctx, 1, ins) == SUCC
    assert raw.lib.rknn_run(ctx, raw.ffi.NULL) == SUCC
    (got,) = raw.get_outputs(ctx, model)
    scale, zp = model.input_quant[0]
    np.testing.assert_allclose(got, model.reference((x - zp) * np.float32(scale))[0])
    assert raw.lib.rknn_destroy(ctx) == SUCC


# ---------------------------------------------------------------- queries


def test_queries_describe_the_model(raw, rt):
    model = mlp(
        np.random.default_rng(10),
        [5, 7, 6],
        ("relu", "softmax"),
        "int8",
        inputs=[("a", 2), ("b", 3)],
        outputs=[("p", 4), ("q", 2)],
        input_quant=[(0.05, 3), (0.1, -2)],
        custom_string='{"classes": [0, 1]}',
    )
    ctx = raw.init(model, flags=0x2000)
    assert rt.last_init_flags() == 0x2000
    ffi, lib = raw.ffi, raw.lib
    n = ffi.new("rknn_input_output_num*")
    assert lib.rknn_query(ctx, Q["in_out"], n, ffi.sizeof(n[0])) == SUCC
    assert (n.n_input, n.n_output) == (2, 2)
    b = raw.attr(ctx, "input", 1)
    assert ffi.string(b.name) == b"b" and b.n_dims == 2 and list(b.dims[0:2]) == [1, 3]
    assert (b.n_elems, b.size, b.size_with_stride, b.type, b.fmt) == (3, 3, 3, INT8, 3)
    assert b.qnt_type == 2 and b.zp == -2 and b.scale == pytest.approx(0.1)
    nb = raw.attr(ctx, "native_input", 1)
    assert (nb.size, nb.size_with_stride) == (3, 64)
    q = raw.attr(ctx, "output", 1)
    assert ffi.string(q.name) == b"q" and list(q.dims[0:2]) == [1, 2]
    assert (q.zp, q.scale) == (-128, pytest.approx(1 / 255))
    assert raw.attr(ctx, "native_output", 0).size_with_stride == 64
    a = ffi.new("rknn_tensor_attr*")
    a.index = 2
    assert lib.rknn_query(ctx, Q["input"], a, ffi.sizeof(a[0])) == PARAM
    assert lib.rknn_query(ctx, Q["input"], a, ffi.sizeof(a[0]) - 1) == PARAM
    assert lib.rknn_query(ctx, 99, a, ffi.sizeof(a[0])) == PARAM
    v = ffi.new("rknn_sdk_version*")
    assert lib.rknn_query(ctx, Q["sdk"], v, ffi.sizeof(v[0])) == SUCC
    assert ffi.string(v.api_version) == b"2.5.0 (fake)"
    assert ffi.string(v.drv_version) == b"0.9.8 (fake)"
    cs = ffi.new("rknn_custom_string*")
    assert lib.rknn_query(ctx, Q["custom"], cs, ffi.sizeof(cs[0])) == SUCC
    assert ffi.string(cs.string).decode() == model.custom_string
    ms = ffi.new("rknn_mem_size*")
    assert lib.rknn_query(ctx, Q["mem"], ms, ffi.sizeof(ms[0])) == SUCC
    assert ms.total_weight_size == 5 * 7 + 7 + 7 * 6 + 6  # int8: one byte per weight
    r = ffi.new("rknn_input_range*")
    assert lib.rknn_query(ctx, Q["range"], r, ffi.sizeof(r[0])) == MODEL  # static model
    # PERF_RUN is answered without the perf flag (the API reference's sample inits with 0),
    # PERF_DETAIL is not.
    p = ffi.new("rknn_perf_run*")
    assert lib.rknn_query(ctx, Q["perf_run"], p, ffi.sizeof(p[0])) == SUCC
    d = ffi.new("rknn_perf_detail*")
    assert lib.rknn_query(ctx, Q["perf_detail"], d, ffi.sizeof(d[0])) == PARAM
    assert "COLLECT_PERF" in rt.last_error()
    assert lib.rknn_destroy(ctx) == SUCC


def test_perf_queries_with_collect_perf(raw, rt):
    model = mlp(np.random.default_rng(11), [4, 3], ("identity",), "float16")
    ctx = raw.init(model, flags=PERF_FLAG)
    rt.set_run_delay(2000)
    assert raw.set_inputs(ctx, np.ones((1, 4), np.float32)) == SUCC
    assert raw.lib.rknn_run(ctx, raw.ffi.NULL) == SUCC
    p = raw.ffi.new("rknn_perf_run*")
    assert raw.lib.rknn_query(ctx, Q["perf_run"], p, raw.ffi.sizeof(p[0])) == SUCC
    assert p.run_duration >= 2000
    d = raw.ffi.new("rknn_perf_detail*")
    assert raw.lib.rknn_query(ctx, Q["perf_detail"], d, raw.ffi.sizeof(d[0])) == SUCC
    text = raw.ffi.string(d.perf_data, d.data_len).decode()
    assert "1 dense layers" in text and len(text) == d.data_len
    assert raw.lib.rknn_destroy(ctx) == SUCC


# ---------------------------------------------------------------- dynamic shapes


def test_dynamic_shapes(raw, rt):
    rng = np.random.default_rng(12)
    model = mlp(rng, [4, 9, 3], ("tanh", "softmax"), "float16", batch_sizes=(1, 4, 8))
    ffi, lib = raw.ffi, raw.lib
    ctx = raw.init(model)
    r = ffi.new("rknn_input_range*")
    assert lib.rknn_query(ctx, Q["range"], r, ffi.sizeof(r[0])) == SUCC
    assert r.shape_number == 3 and r.n_dims == 2 and ffi.string(r.name) == b"input"
    assert [list(r.dyn_range[i][0:2]) for i in range(3)] == [[1, 4], [4, 4], [8, 4]]
    shape = raw.attr(ctx, "input")
    shape.dims[0] = 4
    assert lib.rknn_set_input_shapes(ctx, 1, shape) == SUCC
    assert list(raw.attr(ctx, "cur_input").dims[0:2]) == [4, 4]
    assert raw.attr(ctx, "cur_output").size == 4 * 3 * 2
    assert raw.attr(ctx, "cur_native_output").size_with_stride == 64
    assert list(raw.attr(ctx, "input").dims[0:2]) == [1, 4]  # the model's first shape
    x = rng.standard_normal((4, 4)).astype(np.float32)
    assert raw.set_inputs(ctx, x) == SUCC
    assert lib.rknn_run(ctx, ffi.NULL) == SUCC
    (got,) = raw.get_outputs(ctx, model)
    assert got.shape == (4, 3)
    assert ulps16(got, model.reference(x)[0]) <= 1
    for dims in ([3, 4], [4, 5]):
        shape.dims[0], shape.dims[1] = dims
        assert lib.rknn_set_input_shapes(ctx, 1, shape) == PARAM
    assert lib.rknn_set_input_shapes(ctx, 2, shape) == PARAM
    assert list(raw.attr(ctx, "cur_input").dims[0:2]) == [4, 4]  # unchanged by refusals
    assert lib.rknn_destroy(ctx) == SUCC


# ---------------------------------------------------------------- zero-copy


def bind(raw, ctx, cmd, index, size, type_=None):
    attr = raw.attr(ctx, cmd, index)
    if type_ is not None:
        attr.type = type_
    mem = raw.lib.rknn_create_mem(ctx, size)
    assert mem != raw.ffi.NULL
    return mem, attr, raw.lib.rknn_set_io_mem(ctx, mem, attr)


def view(raw, mem, dtype, count):
    return np.frombuffer(raw.ffi.buffer(mem.virt_addr, mem.size), dtype, count)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int8"])
@pytest.mark.parametrize("io_type", ["float32", "native"])
def test_zero_copy_matches_reference(raw, rt, dtype, io_type):
    rng = np.random.default_rng(13)
    model = mlp(rng, [4, 100, 3], ("relu", "softmax"), dtype)
    native = {"float32": np.float32, "float16": np.float16, "int8": np.int8}[dtype]
    np_type = np.float32 if io_type == "float32" else native
    ctx = raw.init(model)
    ia, oa = raw.attr(ctx, "native_input"), raw.attr(ctx, "native_output")
    want_type = FLOAT32 if io_type == "float32" else None
    imem, _, code_in = bind(raw, ctx, "native_input", 0, max(ia.size_with_stride, 16), want_type)
    omem, _, code_out = bind(raw, ctx, "native_output", 0, max(oa.size_with_stride, 12), want_type)
    assert (code_in, code_out) == (SUCC, SUCC)
    live = rt.live()["mems"]
    x = rng.standard_normal((1, 4)).astype(np.float32)
    scale, zp = model.input_quant[0]
    for _ in range(3):
        if np_type is np.int8:
            view(raw, imem, np.int8, 4)[:] = np.clip(
                np.round(x / np.float32(scale)) + zp, -128, 127
            ).astype(np.int8)[0]
        else:
            view(raw, imem, np_type, 4)[:] = x[0]
        assert raw.lib.rknn_mem_sync(ctx, imem, 1) == SUCC
        assert raw.lib.rknn_run(ctx, raw.ffi.NULL) == SUCC
        assert raw.lib.rknn_mem_sync(ctx, omem, 2) == SUCC
        out = view(raw, omem, np_type, 3).astype(np.float32)
        if np_type is np.int8:
            oscale, ozp = model.output_quant[0]
            out = (out - ozp) * np.float32(oscale)
        np.testing.assert_allclose(out, model.reference(x)[0][0], rtol=1e-6, atol=1e-7)
        x = x + 0.5
    assert rt.live()["mems"] == live and rt.counter("unsafe") == 0
    assert raw.lib.rknn_destroy_mem(ctx, imem) == SUCC
    assert raw.lib.rknn_destroy_mem(ctx, omem) == SUCC
    assert raw.lib.rknn_destroy(ctx) == SUCC


def test_zero_copy_errors(raw, rt):
    model = mlp(
        np.random.default_rng(14), [4, 8, 3], ("relu", "identity"), "float16", batch_sizes=(1, 16)
    )
    ffi, lib = raw.ffi, raw.lib
    ctx = raw.init(model)
    # Too small for float32 (16 bytes needed): refused and counted.
    small, _, code = bind(raw, ctx, "native_input", 0, 12, FLOAT32)
    assert code == PARAM and rt.counter("size_mismatch") == 1
    # Input bound, output not: the run refuses.
    imem, iattr, code = bind(raw, ctx, "native_input", 0, 64)
    assert code == SUCC
    assert lib.rknn_run(ctx, ffi.NULL) == OUTPUT
    omem, oattr, code = bind(raw, ctx, "native_output", 0, 64)
    assert code == SUCC and lib.rknn_run(ctx, ffi.NULL) == SUCC
    # General API on a zero-copy context: refused and counted.
    assert raw.set_inputs(ctx, np.ones((1, 4), np.float32)) == FAIL
    assert rt.counter("mixed_api") == 1
    # An output attr must be FLOAT32 or native; an attr must name a tensor.
    oattr.type = INT8
    assert lib.rknn_set_io_mem(ctx, omem, oattr) == PARAM
    oattr.type = FLOAT16
    oattr.name = b"nope"
    assert lib.rknn_set_io_mem(ctx, omem, oattr) == PARAM
    assert lib.rknn_set_io_mem(ctx, omem, ffi.NULL) == PARAM
    # Batch 16 needs 128 bytes per input: the 64-byte buffers must be bound again.
    shape = raw.attr(ctx, "input")
    shape.dims[0] = 16
    assert lib.rknn_set_input_shapes(ctx, 1, shape) == SUCC
    assert lib.rknn_run(ctx, ffi.NULL) == PARAM
    assert "CURRENT" in rt.last_error()
    shape.dims[0] = 1
    assert lib.rknn_set_input_shapes(ctx, 1, shape) == SUCC
    # A destroyed mem that is still bound is detected, not read.
    assert lib.rknn_destroy_mem(ctx, imem) == SUCC
    before = rt.counter("bad_pointer")
    assert lib.rknn_run(ctx, ffi.NULL) == PARAM
    assert lib.rknn_destroy_mem(ctx, imem) == PARAM  # double destroy
    assert lib.rknn_mem_sync(ctx, imem, 1) == PARAM
    assert rt.counter("bad_pointer") == before + 3
    assert lib.rknn_mem_sync(ctx, omem, 9) == PARAM
    for mem in (small, omem):
        assert lib.rknn_destroy_mem(ctx, mem) == SUCC
    assert lib.rknn_destroy(ctx) == SUCC
    rt.reset()  # the misuse above was on purpose (the `rt` fixture fails on any)


def test_zero_copy_refuses_general_first(raw, rt):
    model = mlp(np.random.default_rng(15), [4, 3], ("identity",), "float32")
    ctx = raw.init(model)
    assert raw.set_inputs(ctx, np.ones((1, 4), np.float32)) == SUCC
    mem, _, code = bind(raw, ctx, "native_input", 0, 64)
    assert code == FAIL and rt.counter("mixed_api") == 1
    assert raw.lib.rknn_destroy_mem(ctx, mem) == SUCC
    assert raw.lib.rknn_destroy(ctx) == SUCC
    rt.reset()  # the misuse above was on purpose (the `rt` fixture fails on any)


def test_mem_from_fd_and_phys(raw, rt):
    rt.allow_non_dmabuf()  # a memfd stands in for a DMA-BUF
    rng = np.random.default_rng(16)
    model = mlp(rng, [4, 6, 2], ("sigmoid", "identity"), "float16")
    ffi, lib = raw.ffi, raw.lib
    x = rng.standard_normal((1, 4)).astype(np.float32)
    ctx = raw.init(model)
    fd = os.memfd_create("frame")
    try:
        offset = 4096 + 128  # not page aligned: the runtime must handle it
        os.ftruncate(fd, offset + 64)
        with mmap.mmap(fd, offset + 64) as shared:
            shared[offset : offset + 16] = x.tobytes()
            imem = lib.rknn_create_mem_from_fd(ctx, fd, ffi.NULL, 64, offset)
            assert imem != ffi.NULL and imem.fd == fd and imem.offset == offset
            assert rt.live()["mems"] >= 1
            iattr = raw.attr(ctx, "native_input")
            iattr.type = FLOAT32
            assert lib.rknn_set_io_mem(ctx, imem, iattr) == SUCC
            out = np.zeros(16, np.float32)  # caller-owned memory behind a "physical" address
            omem = lib.rknn_create_mem_from_phys(ctx, 0x1000, ffi.from_buffer(out), out.nbytes)
            assert omem != ffi.NULL and omem.phys_addr == 0x1000
            oattr = raw.attr(ctx, "native_output")
            oattr.type = FLOAT32
            assert lib.rknn_set_io_mem(ctx, omem, oattr) == SUCC
            assert lib.rknn_run(ctx, ffi.NULL) == SUCC
            np.testing.assert_allclose(out[:2], model.reference(x)[0][0])
            x2 = x * 2
            shared[offset : offset + 16] = x2.tobytes()  # the producer writes the next frame
            assert lib.rknn_run(ctx, ffi.NULL) == SUCC
            np.testing.assert_allclose(out[:2], model.reference(x2)[0][0])
            assert lib.rknn_destroy_mem(ctx, imem) == SUCC
            assert lib.rknn_destroy_mem(ctx, omem) == SUCC
        os.fstat(fd)  # destroy_mem never closes the caller's fd
        assert lib.rknn_create_mem_from_fd(ctx, -1, ffi.NULL, 64, 0) == ffi.NULL
        assert lib.rknn_create_mem_from_fd(ctx, fd, ffi.NULL, 64, -4) == ffi.NULL
        assert lib.rknn_create_mem_from_phys(ctx, 0x1000, ffi.NULL, 64) == ffi.NULL
        assert lib.rknn_create_mem_from_mb_blk(ctx, ffi.NULL, 0) == ffi.NULL
        assert lib.rknn_create_mem2(ctx, 1 << 33, 0) == ffi.NULL
        assert lib.rknn_create_mem(ctx, 0) == ffi.NULL
        big = lib.rknn_create_mem2(ctx, 100, 1)
        assert big != ffi.NULL and big.size == 100 and big.flags == 1
        assert lib.rknn_destroy_mem(ctx, big) == SUCC
    finally:
        os.close(fd)
        assert lib.rknn_destroy(ctx) == SUCC
    rt.reset()  # the misuse above was on purpose (the `rt` fixture fails on any)


def test_mem_of_another_context_is_refused(raw, rt):
    model = mlp(np.random.default_rng(17), [4, 3], ("identity",), "float32")
    a, b = raw.init(model), raw.init(model)
    mem = raw.lib.rknn_create_mem(a, 64)
    assert raw.lib.rknn_destroy_mem(b, mem) == PARAM
    assert "another context" in rt.last_error()
    assert raw.lib.rknn_set_weight_mem(a, mem) == SUCC
    assert raw.lib.rknn_set_internal_mem(a, mem) == SUCC
    assert raw.lib.rknn_destroy_mem(a, mem) == SUCC
    junk = raw.ffi.new("rknn_tensor_mem*")
    assert raw.lib.rknn_destroy_mem(a, junk) == PARAM
    assert "not created by this runtime" in rt.last_error()
    for ctx in (a, b):
        assert raw.lib.rknn_destroy(ctx) == SUCC
    rt.reset()  # the misuse above was on purpose (the `rt` fixture fails on any)


# ---------------------------------------------------------------- contexts and errors


def test_invalid_and_destroyed_contexts(raw, rt):
    model = mlp(np.random.default_rng(18), [4, 3], ("identity",), "float32")
    ffi, lib = raw.ffi, raw.lib
    ctx = raw.init(model)
    assert lib.rknn_destroy(ctx) == SUCC
    stale = ctx
    fresh = raw.init(model)  # may reuse the slot: the stale handle must still be refused
    for handle in (stale, 0, 12345, (1 << 32) | 4097):
        assert lib.rknn_run(handle, ffi.NULL) == CTX
        assert lib.rknn_destroy(handle) == CTX
    assert rt.counter("bad_pointer") == 8
    assert lib.rknn_run(fresh, ffi.NULL) == INPUT  # nothing set yet
    outs = ffi.new("rknn_output[1]")
    assert lib.rknn_outputs_get(fresh, 1, outs, ffi.NULL) == OUTPUT  # nothing run yet
    assert lib.rknn_inputs_set(fresh, 1, ffi.NULL) == PARAM
    ins = ffi.new("rknn_input[1]")
    ins[0].size, ins[0].type = 16, FLOAT32
    assert lib.rknn_inputs_set(fresh, 1, ins) == PARAM  # NULL buf
    x = np.ones((1, 4), np.float32)
    assert raw.set_inputs(fresh, x, x) == PARAM  # two inputs for a one-input model
    ins[0].buf, ins[0].index = ffi.from_buffer(x), 1
    assert lib.rknn_inputs_set(fresh, 1, ins) == PARAM  # index out of range
    assert rt.counter("bad_pointer") == 10
    assert lib.rknn_destroy(fresh) == SUCC
    ptr = ffi.new("rknn_context*")
    assert lib.rknn_init(ptr, ffi.NULL, 10, 0, ffi.NULL) == PARAM
    assert lib.rknn_dup_context(ptr, ffi.NULL) == PARAM
    rt.reset()  # the misuse above was on purpose (the `rt` fixture fails on any)


def test_outputs_get_and_release_errors(raw, rt):
    model = mlp(
        np.random.default_rng(19), [4, 3], ("identity",), "float32", outputs=[("a", 1), ("b", 2)]
    )
    ffi, lib = raw.ffi, raw.lib
    ctx = raw.init(model)
    assert raw.set_inputs(ctx, np.ones((1, 4), np.float32)) == SUCC
    assert lib.rknn_run(ctx, ffi.NULL) == SUCC
    outs = ffi.new("rknn_output[2]")
    outs[0].index, outs[1].index = 0, 1
    outs[1].is_prealloc, outs[1].want_float = 1, 1
    small = ffi.new("char[4]")
    outs[1].buf, outs[1].size = small, 4
    assert lib.rknn_outputs_get(ctx, 2, outs, ffi.NULL) == PARAM  # prealloc too small
    assert outs[0].buf == ffi.NULL and rt.live()["outputs"] == 0  # all or nothing
    assert rt.counter("size_mismatch") == 1
    big = ffi.new("char[8]")
    outs[1].buf, outs[1].size = big, 8
    assert lib.rknn_outputs_get(ctx, 2, outs, ffi.NULL) == SUCC
    assert rt.live()["outputs"] == 1  # the preallocated one is the caller's
    want = model.reference(np.ones((1, 4), np.float32))
    np.testing.assert_allclose(np.frombuffer(ffi.buffer(big, 8), np.float32), want[1][0])
    assert outs[0].size == 4
    stolen = outs[0].buf
    outs[0].buf = ffi.cast("void*", 0x1234)  # not handed out by the runtime
    assert lib.rknn_outputs_release(ctx, 2, outs) == PARAM
    assert rt.counter("bad_pointer") == 1
    outs[0].buf = stolen
    assert lib.rknn_outputs_release(ctx, 2, outs) == SUCC
    assert outs[0].buf == ffi.NULL and rt.live()["outputs"] == 0
    assert lib.rknn_outputs_release(ctx, 2, outs) == SUCC  # released bufs are NULL: no-op
    assert lib.rknn_outputs_get(ctx, 3, outs, ffi.NULL) == PARAM
    outs[0].index = 5
    assert lib.rknn_outputs_get(ctx, 1, outs, ffi.NULL) == PARAM
    assert lib.rknn_wait(ctx, ffi.NULL) == FAIL
    assert lib.rknn_destroy(ctx) == SUCC
    rt.reset()  # the misuse above was on purpose (the `rt` fixture fails on any)


def test_corrupt_models_are_refused_without_crashing(raw, rt):
    model = mlp(
        np.random.default_rng(20),
        [3, 4, 2],
        ("relu", "softmax"),
        "int8",
        inputs=[("a", 1), ("b", 2)],
        batch_sizes=(1, 2),
        custom_string="hi",
    )
    blob = model.to_bytes()
    ffi, lib = raw.ffi, raw.lib
    ctx = ffi.new("rknn_context*")

    def init(data: bytes) -> int:
        buf = ffi.new("char[]", data or b"\0")  # size 0 would mean "a path"
        code = lib.rknn_init(ctx, buf, len(data) or 1, 0, ffi.NULL)
        if code == SUCC:
            assert lib.rknn_destroy(ctx[0]) == SUCC
        return code

    assert init(blob) == SUCC
    for cut in range(len(blob)):
        assert init(blob[:cut]) == MODEL, cut
    assert init(blob + b"\0") == MODEL
    assert init(b"RKNN\x00\x00\x00\x00" + bytes(200)) == MODEL  # a real .rknn starts "RKNN"
    # "RKNN" in front of a fake model (for bindings that check it) is skipped, once
    assert model.to_bytes(rknn_prefix=True) == b"RKNN" + blob
    assert init(b"RKNN" + blob) == SUCC
    assert init(b"RKNNRKNN" + blob) == MODEL
    for cut in range(4, len(blob) + 4, 7):
        assert init((b"RKNN" + blob)[:cut]) == MODEL, cut
    rng = np.random.default_rng(21)
    accepted = 0
    for _ in range(400):
        data = bytearray(blob)
        for pos in rng.integers(8, len(data), rng.integers(1, 4)):
            data[pos] = rng.integers(0, 256)
        code = init(bytes(data))
        assert code in (SUCC, MODEL)
        accepted += code == SUCC  # weights flipped: still a model
    assert 0 < accepted < 400
    assert rt.live()["contexts"] == 0


def test_core_masks_per_soc_and_dup(raw, rt, monkeypatch):
    rng = np.random.default_rng(22)
    model = mlp(rng, [4, 5, 3], ("relu", "identity"), "float16")
    ffi, lib = raw.ffi, raw.lib
    ctx = raw.init(model)
    supported = {
        "rk3588": {0, 1, 2, 4, 3, 7, 0xFFFF},
        "rk3576": {0, 1, 2, 3, 0xFFFF},
        # Single-core NPUs refuse the call itself, AUTO too (API reference 2.3.2).
        "rk3568": set(),
        "rk3562": set(),
    }
    for soc, masks in supported.items():
        monkeypatch.setenv("RKRT_FAKE_SOC", soc)
        for mask in (0, 1, 2, 4, 3, 7, 0xFFFF, 5, 6):
            before = rt.core_mask(ctx)
            code = lib.rknn_set_core_mask(ctx, mask)
            assert code == (SUCC if mask in masks else PARAM), (soc, mask)
            assert rt.core_mask(ctx) == (mask if mask in masks else before)
    monkeypatch.delenv("RKRT_FAKE_SOC")
    assert lib.rknn_set_core_mask(ctx, 4) == SUCC
    assert lib.rknn_set_batch_core_num(ctx, 3) == SUCC
    assert lib.rknn_set_batch_core_num(ctx, 4) == PARAM
    out = ffi.new("rknn_context*")
    assert lib.rknn_dup_context(ffi.new("rknn_context*", ctx), out) == SUCC
    dup = out[0]
    assert dup != ctx and rt.core_mask(dup) == 0 and rt.core_mask(ctx) == 4
    x = rng.standard_normal((1, 4)).astype(np.float32)
    results = []
    for handle in (ctx, dup):
        assert raw.set_inputs(handle, x) == SUCC
        assert lib.rknn_run(handle, ffi.NULL) == SUCC
        results.append(raw.get_outputs(handle, model)[0])
    np.testing.assert_array_equal(results[0], results[1])
    assert lib.rknn_destroy(ctx) == SUCC
    # The weights are shared and refcounted: the duplicate outlives the original.
    assert lib.rknn_run(dup, ffi.NULL) == SUCC
    assert lib.rknn_destroy(dup) == SUCC
    with pytest.raises(ValueError, match="not a live context"):
        rt.core_mask(dup)


# ---------------------------------------------------------------- faults, counters, threads


def test_fault_injection_hits_exactly_the_nth_call(raw, rt):
    model = mlp(np.random.default_rng(23), [4, 3], ("identity",), "float32")
    ffi, lib = raw.ffi, raw.lib
    ctx = raw.init(model)
    assert raw.set_inputs(ctx, np.ones((1, 4), np.float32)) == SUCC
    rt.inject("rknn_run", nth=2, code=-3)
    assert [lib.rknn_run(ctx, ffi.NULL) for _ in range(4)] == [SUCC, -3, SUCC, SUCC]
    assert rt.calls("rknn_run") == 4
    assert "injected" in rt.last_error()
    rt.inject("rknn_create_mem", code=-4)
    assert lib.rknn_create_mem(ctx, 64) == ffi.NULL
    rt.inject("rknn_init")
    with pytest.raises(AssertionError):
        raw.init(model)
    rt.inject("rknn_run", nth=1, code=-2)
    rt.reset()  # clears pending faults
    assert lib.rknn_run(ctx, ffi.NULL) == SUCC
    with pytest.raises(ValueError):
        rt.inject("rknn_rnu")
    with pytest.raises(ValueError):
        rt.inject("rknn_run", nth=0)
    with pytest.raises(ValueError):
        rt.counter("unsafety")
    assert rt.live()["mems"] == 0
    assert lib.rknn_destroy(ctx) == SUCC


def test_counters_are_exact_under_threads(raw, rt):
    model = mlp(np.random.default_rng(24), [4, 3], ("identity",), "float32")
    threads, per_thread = 4, 2000
    handles = [raw.init(model) for _ in range(threads)]
    rt.reset()
    n = raw.ffi.new("rknn_input_output_num*")

    def work(ctx):
        info = raw.ffi.new("rknn_input_output_num*")
        for _ in range(per_thread):
            raw.lib.rknn_query(ctx, Q["in_out"], info, 8)
            raw.lib.rknn_run(12345, raw.ffi.NULL)

    pool = [threading.Thread(target=work, args=(h,)) for h in handles]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert raw.lib.rknn_query(handles[0], Q["in_out"], n, 8) == SUCC
    assert rt.calls("rknn_query") == threads * per_thread + 1
    assert rt.counter("bad_pointer") == threads * per_thread
    assert rt.counter("concurrent") == 0
    assert rt.total_calls() == 2 * threads * per_thread + 1
    for h in handles:
        assert raw.lib.rknn_destroy(h) == SUCC
    rt.reset()  # the misuse above was on purpose (the `rt` fixture fails on any)


def _ready_to_run(raw, n: int, seed: int) -> list[int]:
    """n contexts of a 4-3 float32 model, each with its input set."""
    model = mlp(np.random.default_rng(seed), [4, 3], ("identity",), "float32")
    x = np.ones((1, 4), np.float32)
    handles = [raw.init(model) for _ in range(n)]
    for h in handles:
        assert raw.set_inputs(h, x) == SUCC
    return handles


def test_runs_proceed_in_parallel_and_sharing_a_context_is_detected(raw, rt):
    handles = _ready_to_run(raw, 3, seed=25)
    rt.set_run_delay(30000, jitter_us=1000)

    def run_all(targets, codes):
        pool = [
            threading.Thread(target=lambda h=h: codes.append(raw.lib.rknn_run(h, raw.ffi.NULL)))
            for h in targets
        ]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    codes: list[int] = []
    run_all(handles, codes)  # cffi releases the GIL: the delays overlap
    assert codes == [SUCC] * 3
    assert rt.max_parallel_runs() >= 2
    assert rt.counter("concurrent") == 0
    codes = []
    run_all([handles[0]] * 3, codes)  # one context, three threads
    assert sorted(codes).count(FAIL) >= 1 and SUCC in codes
    assert rt.counter("concurrent") == codes.count(FAIL)
    rt.set_run_delay(0)
    for h in handles:
        assert raw.lib.rknn_destroy(h) == SUCC
    rt.reset()  # the misuse above was on purpose (the `rt` fixture fails on any)


def test_run_gaps_measure_the_time_a_context_sits_between_its_runs(raw, rt):
    a, b = _ready_to_run(raw, 2, seed=27)
    assert raw.lib.rknn_run(a, raw.ffi.NULL) == SUCC  # before the reset: not counted
    time.sleep(0.05)
    rt.reset_run_gaps()
    assert rt.run_gaps() == (0.0, 0) and rt.run_ends() == []
    for _ in range(4):
        assert raw.lib.rknn_run(a, raw.ffi.NULL) == SUCC
        assert raw.lib.rknn_run(b, raw.ffi.NULL) == SUCC  # another context: not a's gap
        time.sleep(0.01)
    mean, count = rt.run_gaps()
    # a: 3 gaps, b: 3 gaps (the first run of each after the reset opens none)
    assert count == 6
    assert 0.01 <= mean < 0.05
    assert rt.run_times()[1] == 8 and rt.run_times()[0] < 0.020  # no delay: under the one below
    ends = rt.run_ends()
    assert [c for _, c, _ in ends] == [a, b] * 4
    assert all(0 <= cpu < os.cpu_count() for _, _, cpu in ends)
    rt.set_run_delay(20_000)
    rt.reset_run_gaps()
    assert rt.run_times() == (0.0, 0) and rt.run_ends() == []
    # The double sleeps with no timer slack (as an interrupt would end the run), then gives
    # the calling thread its own slack back.
    libc = ctypes.CDLL(None, use_errno=True)
    slack = libc.prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)
    started = time.monotonic()  # the double's clock too (CLOCK_MONOTONIC)
    for h in (a, b):
        assert raw.lib.rknn_run(h, raw.ffi.NULL) == SUCC
    returned = time.monotonic()
    assert libc.prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0) == slack > 1
    mean, count = rt.run_times()
    assert count == 2 and 0.020 <= mean < 0.060  # the delay, plus what the sleep overshoots
    (end_a, ctx_a, _), (end_b, ctx_b, _) = rt.run_ends()
    assert (ctx_a, ctx_b) == (a, b)
    assert started + 0.020 <= end_a <= end_b - 0.020 and end_b <= returned  # ends, not starts
    rt.reset()
    assert rt.run_gaps() == (0.0, 0) and rt.run_times() == (0.0, 0) and rt.run_ends() == []
    for h in (a, b):
        assert raw.lib.rknn_destroy(h) == SUCC


def test_run_ends_are_kept_in_memory_resident_from_load(private_rt):
    raw = Raw(private_rt.path)  # loaded afresh: nothing has run on it yet
    (ctx,) = _ready_to_run(raw, 1, seed=28)
    private_rt.reset_run_gaps()
    before = rss_bytes()
    for _ in range(16_384):  # as many as the double keeps
        raw.lib.rknn_run(ctx, raw.ffi.NULL)
    # 384 KiB of run ends, were they not resident from the start, would grow RSS here and in
    # a benchmark's memory test of the runtime under test
    assert rss_bytes() - before < 128 << 10
    assert len(private_rt.run_ends()) == 16_384
    raw.lib.rknn_run(ctx, raw.ffi.NULL)
    with pytest.raises(RuntimeError, match="more runs returned than the double keeps"):
        private_rt.run_ends()
    assert raw.lib.rknn_destroy(ctx) == SUCC


def test_leaks_stay_visible_after_destroy(private_rt):
    raw = Raw(private_rt.path)  # its own counters: the leaks below stay in it
    model = mlp(np.random.default_rng(26), [4, 3], ("identity",), "float32")
    ffi, lib = raw.ffi, raw.lib
    ctx = raw.init(model)
    assert raw.set_inputs(ctx, np.ones((1, 4), np.float32)) == SUCC
    assert lib.rknn_run(ctx, ffi.NULL) == SUCC
    outs = ffi.new("rknn_output[1]")
    assert lib.rknn_outputs_get(ctx, 1, outs, ffi.NULL) == SUCC
    assert lib.rknn_create_mem(ctx, 64) != ffi.NULL
    assert private_rt.live() == {"contexts": 1, "mems": 1, "outputs": 1}
    private_rt.inject("rknn_outputs_release", code=-1)
    assert lib.rknn_outputs_release(ctx, 1, outs) == -1  # failed: nothing released
    assert private_rt.live()["outputs"] == 1
    assert lib.rknn_destroy(ctx) == SUCC
    private_rt.reset()
    assert private_rt.live() == {"contexts": 0, "mems": 1, "outputs": 1}


def test_no_leak_over_many_calls(raw, rt):
    model = mlp(np.random.default_rng(27), [4, 100, 3], ("relu", "softmax"), "float16")
    x = np.ones((1, 4), np.float32)
    ctx = raw.init(model)
    ffi, lib = raw.ffi, raw.lib
    ins = ffi.new("rknn_input[1]")
    ins[0].buf, ins[0].size, ins[0].type = ffi.from_buffer(x), 16, FLOAT32
    outs = ffi.new("rknn_output[1]")
    outs[0].want_float = 1
    for _ in range(10_000):
        lib.rknn_inputs_set(ctx, 1, ins)
        lib.rknn_run(ctx, ffi.NULL)
        lib.rknn_outputs_get(ctx, 1, outs, ffi.NULL)
        lib.rknn_outputs_release(ctx, 1, outs)
    assert rt.calls("rknn_outputs_release") == 10_000
    assert rt.live() == {"contexts": 1, "mems": 0, "outputs": 0}
    assert rt.counter("unsafe") == 0
    assert lib.rknn_destroy(ctx) == SUCC
