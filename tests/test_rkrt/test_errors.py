"""Every C return code through rkrt, library discovery failures and missing symbols."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from rkrt_support import NO_LEAKS, inputs_for, library, mlp

import rkrt
from rkrt import library as rkrt_library
from rkrt._ffi import DEFINES, ffi
from rkrt.errors import ERROR_NAMES, check

CODES = sorted(ERROR_NAMES, reverse=True)


def test_error_names_cover_the_header() -> None:
    assert [ERROR_NAMES[c] for c in CODES][:2] == ["RKNN_ERR_FAIL", "RKNN_ERR_TIMEOUT"]
    assert list(range(-1, -14, -1)) == CODES


@pytest.mark.parametrize("code", [*CODES, -14, -99])
def test_every_code_raises_rknn_error_with_code_symbol_function_hint(rt, code: int) -> None:
    model = mlp()
    with rkrt.Session(model.to_bytes()) as s:
        rt.inject("rknn_run", code=code)
        with pytest.raises(rkrt.RKNNError) as info:
            s.run(inputs_for(model)[0])
    err = info.value
    assert isinstance(err, RuntimeError)
    assert err.code == code and err.function == "rknn_run"
    assert err.symbol == ERROR_NAMES.get(code, "unknown")
    assert err.hint and err.hint in str(err) and f"({code})" in str(err)
    assert str(err).startswith(f"rknn_run() failed with {err.symbol}")


def test_check_passes_zero_and_positive_through() -> None:
    assert check(0, "f") == 0 and check(3, "f") == 3
    with pytest.raises(rkrt.RKNNError):
        check(-1, "f")


@pytest.mark.parametrize("function", ["rknn_inputs_set", "rknn_run", "rknn_outputs_get",
                                      "rknn_outputs_release"])  # fmt: skip
def test_run_failures_at_each_call_leave_nothing_live(rt, function: str) -> None:
    model = mlp()
    x = inputs_for(model)[0]
    with rkrt.Session(model.to_bytes()) as s:
        rt.inject(function, code=-1)
        with pytest.raises(rkrt.RKNNError, match=function):
            s.run(x)
        assert rt.live()["outputs"] == 0
        if function == "rknn_outputs_get":  # paired with a release even when it fails
            assert rt.calls("rknn_outputs_release") == rt.calls("rknn_outputs_get")
        np.testing.assert_allclose(s.run(x)[0], model.reference(x)[0], rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("nth", [1, 2, 3, 4])
def test_failing_queries_at_open_free_the_context(rt, nth: int) -> None:
    rt.inject("rknn_query", nth=nth, code=-7)
    with pytest.raises(rkrt.RKNNError) as info:
        rkrt.Session(mlp().to_bytes())
    assert info.value.function == "rknn_query" and info.value.symbol == "RKNN_ERR_CTX_INVALID"
    assert rt.live() == NO_LEAKS


def test_failing_init_and_dup(rt) -> None:
    rt.inject("rknn_init", code=-3)
    with pytest.raises(rkrt.RKNNError, match="DEVICE_UNAVAILABLE"):
        rkrt.Session(mlp().to_bytes())
    with rkrt.Session(mlp().to_bytes()) as s:
        rt.inject("rknn_dup_context", code=-4)
        with pytest.raises(rkrt.RKNNError, match="rknn_dup_context"):
            s.dup()
        assert rt.live()["contexts"] == 1


def test_failing_destroy_is_reported_once_never_retried(rt) -> None:
    s = rkrt.Session(mlp().to_bytes())
    handle = s._context.handle
    rt.inject("rknn_destroy", code=-7)
    with pytest.raises(rkrt.RKNNError, match="rknn_destroy"):
        s.close()
    s.close()
    assert s.closed and rt.calls("rknn_destroy") == 1
    lib = ffi.dlopen(str(library()))
    assert lib.rknn_destroy(handle) == 0  # the fake kept it; free it for the leak check


def test_failing_destroy_mem_frees_the_others_and_never_retries(rt) -> None:
    with rkrt.Session(mlp().to_bytes()) as s:
        b = s.bind()
        refused = s._context.mems[0]
        rt.inject("rknn_destroy_mem", code=-1)
        with pytest.raises(rkrt.RKNNError, match="rknn_destroy_mem"):
            b.close()
        b.close()
        assert b.closed and rt.calls("rknn_destroy_mem") == 2 and rt.live()["mems"] == 1
        # rkrt never retries (that could double free); free the refused block for the leak check.
        lib = ffi.dlopen(str(library()))
        assert lib.rknn_destroy_mem(s._context.handle, refused) == 0


def test_explicit_library_that_does_not_exist(tmp_path) -> None:
    missing = tmp_path / "librknnrt.so"
    with pytest.raises(rkrt.RuntimeNotFoundError) as info:
        rkrt.Session(b"x", library=missing)
    msg = str(info.value)
    assert isinstance(info.value, OSError)
    assert str(missing) in msg and "library= argument" in msg and "check that path" in msg


def test_env_var_that_does_not_exist(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RKRT_LIBRARY", str(tmp_path / "nope.so"))
    with pytest.raises(rkrt.RuntimeNotFoundError, match=r"nope\.so \(\$RKRT_LIBRARY\)"):
        rkrt.Session(b"x")


def test_search_lists_every_place_and_how_to_point_at_one(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("RKRT_LIBRARY", raising=False)
    monkeypatch.setattr(rkrt_library, "SYSTEM_DIRS", (str(tmp_path / "a"), str(tmp_path / "b")))
    with pytest.raises(rkrt.RuntimeNotFoundError) as info:
        rkrt.Session(b"x")
    msg = str(info.value)
    for place in ("librknnrt.so (dynamic linker", str(tmp_path / "a" / "librknnrt.so"),
                  str(tmp_path / "b" / "librknnrt.so"), "RKRT_LIBRARY=", "library="):  # fmt: skip
        assert place in msg


def test_a_library_that_is_not_librknnrt(monkeypatch) -> None:
    import ctypes.util

    libm = ctypes.util.find_library("m")
    with pytest.raises(rkrt.RuntimeNotFoundError, match="not a librknnrt: lacks rknn_init"):
        rkrt.Session(b"x", library=libm)


def test_opened_libraries_are_cached_per_path(rt) -> None:
    first = rkrt_library.load(library())
    assert rkrt_library.load(str(library())) is first
    assert rkrt_library.load() is first  # via RKRT_LIBRARY, same path


def test_missing_optional_symbol_names_it(rt) -> None:
    runtime = rkrt_library.load()
    with pytest.raises(rkrt.MissingSymbolError) as info:
        runtime.symbol("rknn_create_mem_from_nowhere")
    assert info.value.symbol == "rknn_create_mem_from_nowhere"
    assert "no function rknn_create_mem_from_nowhere()" in str(info.value)
    assert runtime.symbol("rknn_create_mem2") is not None


def test_import_rkrt_loads_no_library() -> None:
    code = (
        "import rkrt, rkrt.library as l; "
        "maps = open('/proc/self/maps').read(); "
        "assert 'librknnrt' not in maps, 'loaded'; assert not l._cache; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_flags_are_the_headers() -> None:
    assert DEFINES["RKNN_FLAG_DISABLE_PROC_HIGH_PRIORITY"] == 0x2000


def test_every_rkrt_exception_is_an_rkrt_error_and_keeps_its_builtin_base() -> None:
    from rkrt.metadata import MetadataError

    builtin = {
        rkrt.RKNNError: RuntimeError,
        rkrt.MissingSymbolError: RuntimeError,
        rkrt.DTypeError: TypeError,
        rkrt.ShapeError: ValueError,
        rkrt.ClosedError: ValueError,
        rkrt.BusyError: RuntimeError,
        rkrt.RuntimeNotFoundError: OSError,
        rkrt.UnsupportedRuntimeError: RuntimeError,
        MetadataError: ValueError,
    }
    for cls, base in builtin.items():
        assert issubclass(cls, rkrt.Error) and issubclass(cls, base), cls
    defined = {
        obj
        for module in (rkrt.errors, rkrt.metadata)
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, Exception)
        and obj.__module__ == module.__name__
    }
    assert defined == set(builtin) | {rkrt.Error}
    with pytest.raises(rkrt.Error, match="RKNN_ERR_MALLOC_FAIL"):
        rkrt.errors.created(ffi.NULL, "rknn_create_mem", "RKNN_ERR_MALLOC_FAIL")
    pointer = ffi.new("int*")
    assert rkrt.errors.created(pointer, "rknn_create_mem") is pointer
