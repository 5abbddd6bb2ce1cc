"""rkrt against the test double built as each runtime release (1.5.2, 1.6.0, 2.0.0b0, 2.3+):
what rkrt learns of the runtime, and the gates that keep it from calling a wrong ABI."""

from __future__ import annotations

import gc
import os
from typing import Iterator

import numpy as np
import pytest
from fake_rknnrt import FakeRuntime, build_library
from fake_rknnrt.build import DEFAULT_VERSION, MISSING
from rkrt_support import NO_LEAKS, inputs_for, mlp

import rkrt
from rkrt import external, library
from rkrt.errors import UnsupportedRuntimeError

VERSIONS = ("1.5.2", "1.6.0", "2.0.0b0", None)  # None: the default build, 2.3 and later
FAMILY = {"1.5.2": "1.5.x or older", "1.6.0": "1.6.x", "2.0.0b0": "2.0.x",
          None: "2.1.0 or newer"}  # fmt: skip
MATMUL_FUNCTIONS = ("rknn_matmul_create", "rknn_matmul_create_dynamic_shape",
                    "rknn_B_normal_layout_to_native_layout", "rknn_matmul_set_io_mem",
                    "rknn_matmul_run", "rknn_create_mem")  # fmt: skip


def as_release(version: str | None, monkeypatch: pytest.MonkeyPatch) -> FakeRuntime:
    path = build_library(version=version)
    monkeypatch.setenv("RKRT_LIBRARY", str(path))
    monkeypatch.delenv("RKRT_SOC", raising=False)
    monkeypatch.delenv("RKRT_FAKE_SOC", raising=False)
    fake = FakeRuntime(path)
    fake.reset()
    return fake


@pytest.fixture(params=VERSIONS, ids=lambda v: v or "2.3+")
def release(request, monkeypatch) -> Iterator[tuple[str | None, FakeRuntime]]:
    fake = as_release(request.param, monkeypatch)
    yield request.param, fake
    gc.collect()
    assert fake.live() == NO_LEAKS and fake.counter("unsafe") == 0


def test_the_double_exports_what_each_release_had(release) -> None:
    version, fake = release
    info = rkrt.runtime_info()
    missing = set(MISSING.get(version, ()))
    assert info.functions == set(library.FUNCTIONS) - missing
    assert info.release == FAMILY[version]


def test_open_learns_the_version_and_runs(release) -> None:
    version, fake = release
    model = mlp((4, 16, 3))
    x = inputs_for(model)[0]
    with rkrt.Session(model.to_bytes()) as s:
        np.testing.assert_allclose(s.run(x)[0], model.reference(x)[0], rtol=2e-2, atol=2e-3)
    info = rkrt.runtime_info()
    expected = version or DEFAULT_VERSION
    assert info.api_version == f"{expected} (fake)" and info.driver_version == "0.9.8 (fake)"
    assert info.version == tuple(int(p) for p in expected.replace("b0", "").split("."))
    assert fake.calls("rknn_query") >= 1


def test_matmul_refuses_runtimes_before_2_1_without_any_matmul_call(release) -> None:
    """Finding 2: rkrt called the 5-argument B converter on runtimes whose matmul ABI
    differs (2.0.0b0 takes 7 arguments; 1.x has another rknn_matmul_info)."""
    version, fake = release
    if version is None:
        with rkrt.MatMul(4, 32, 16) as mm:
            b = np.eye(32, 16, dtype=np.float32)
            mm.set_b(b)
            a = np.arange(4 * 32, dtype=np.float32).reshape(4, 32) / 64
            np.testing.assert_allclose(mm.run(a), a.astype(np.float16) @ b, rtol=1e-3)
        return
    with pytest.raises(UnsupportedRuntimeError) as info:
        rkrt.MatMul(4, 32, 16)
    msg = str(info.value)
    assert "rkrt.MatMul needs librknnrt 2.1.0 or newer" in msg
    assert f"({FAMILY[version]} by its functions)" in msg
    assert "rknn_matmul_create_dynamic_shape" in msg
    assert all(fake.calls(f) == 0 for f in MATMUL_FUNCTIONS)
    # Once a model told the runtime's version, the message names it.
    with rkrt.Session(mlp().to_bytes()):
        pass
    with pytest.raises(UnsupportedRuntimeError, match=f"librknnrt {version} \\(fake\\)"):
        rkrt.MatMul(4, 32, 16)
    assert all(fake.calls(f) == 0 for f in MATMUL_FUNCTIONS)


def test_matmul_syncs_a_before_and_c_after_each_run(monkeypatch) -> None:
    fake = as_release(None, monkeypatch)
    with rkrt.MatMul(2, 32, 16) as mm:
        mm.set_b(np.ones((32, 16), np.float32))
        assert fake.calls("rknn_mem_sync") == 1  # B, after the CPU converted it
        for k in range(3):
            mm.run(np.full((2, 32), k, np.float32))
        binding = mm.bind()
        binding.a[...] = 1
        np.testing.assert_array_equal(binding.run(), np.full((2, 16), 32, np.float32))
    assert fake.calls("rknn_mem_sync") == 1 + 2 * 4


def test_matmul_on_a_single_core_soc_never_sets_a_core_mask(monkeypatch) -> None:
    fake = as_release(None, monkeypatch)
    monkeypatch.setenv("RKRT_FAKE_SOC", "rk3566")
    with rkrt.MatMul(2, 32, 16, soc="rk3566") as mm:
        mm.set_b(np.ones((32, 16), np.float32))
        np.testing.assert_array_equal(mm.run(np.ones((2, 32), np.float32)),
                                      np.full((2, 16), 32, np.float32))  # fmt: skip
    assert fake.calls("rknn_matmul_set_core_mask") == fake.calls("rknn_set_core_mask") == 0
    with pytest.raises(ValueError, match="not available on RK3566"):
        rkrt.MatMul(2, 32, 16, soc="rk3566", core_mask="CORE_0")


def test_32_bit_processes_are_refused_at_load(monkeypatch) -> None:
    """Finding 4: rknn_context is uint32_t on 32-bit ARM; rkrt's uint64_t would misread it."""
    library.check_word_size(8)
    with pytest.raises(UnsupportedRuntimeError, match="64-bit.*32-bit.*uint32_t"):
        library.check_word_size(4)
    as_release(None, monkeypatch)
    real = library.ffi.sizeof
    monkeypatch.setattr(library.ffi, "sizeof", lambda t: 4 if t == "void*" else real(t))
    with pytest.raises(UnsupportedRuntimeError, match="32-bit"):
        rkrt.Session(mlp().to_bytes())


def test_zero_copy_on_runtime_memory_needs_no_mem_sync(release) -> None:
    """Finding 3: IOBinding required rknn_mem_sync, so zero-copy failed on 1.5.x runtimes,
    although Rockchip's zero-copy demos never sync runtime-allocated memory."""
    version, fake = release
    model = mlp((4, 16, 3))
    with rkrt.Session(model.to_bytes()) as s, s.bind() as b:
        for seed in range(3):
            x = inputs_for(model, seed=seed)[0]
            b.inputs[0][...] = x
            b.run()
            np.testing.assert_allclose(b.outputs[0], model.reference(x)[0], rtol=2e-2, atol=2e-3)
    synced = "rknn_mem_sync" not in MISSING.get(version, ())
    assert fake.calls("rknn_mem_sync") == (3 * 2 if synced else 0)


def test_external_memory_needs_mem_sync(release) -> None:
    version, fake = release
    fake.allow_non_dmabuf()
    model = mlp((4, 16, 3), dtype="float32")
    x = inputs_for(model)[0]
    fd = os.memfd_create("frame")
    try:
        os.pwrite(fd, x.tobytes(), 0)
        frame = external.from_fd(fd, x.nbytes, require_dmabuf=False)
        with rkrt.Session(model.to_bytes()) as s:
            if version == "1.5.2":
                with pytest.raises(UnsupportedRuntimeError,
                                   match=r"external memory .* needs librknnrt 1\.6\.0 or newer; "
                                         r"this is librknnrt 1\.5\.2 \(fake\)"):  # fmt: skip
                    s.bind(inputs={0: frame})
                assert fake.calls("rknn_create_mem_from_fd") == fake.calls("rknn_create_mem") == 0
                return
            with s.bind(inputs={0: frame}) as b:
                b.run()
                np.testing.assert_array_equal(b.outputs[0], model.reference(x)[0])
    finally:
        os.close(fd)


def test_dynamic_models_are_not_duplicated(rt) -> None:
    """Finding 7: dup() and Pool duplicated dynamic-shape contexts, which the user guide
    (1.5.2, 'Dynamic shape input') says rknn_dup_context does not support. dup() refuses; a
    Pool opens each further context from the model on its own instead."""
    model = mlp((4, 8, 3), batch_sizes=(1, 4))
    with (
        rkrt.Session(model.to_bytes()) as s,
        pytest.raises(UnsupportedRuntimeError, match="dynamic-shape.*cannot be duplicated"),
    ):
        s.dup()
    x = inputs_for(model, batch=4)[0]
    inits = rt.calls("rknn_init")
    with rkrt.Pool(model.to_bytes(), cores=["CORE_0", "CORE_1"], soc="rk3588") as pool:
        assert rt.calls("rknn_init") == inits + 2 and rt.live()["contexts"] == 2
        assert [s.core_mask for s in pool.sessions] == [rkrt.CoreMask.CORE_0, rkrt.CoreMask.CORE_1]
        for y in pool.map([x] * 4):
            np.testing.assert_allclose(y[0], model.reference(x)[0], rtol=2e-2, atol=2e-3)
    assert rt.calls("rknn_dup_context") == 0


def test_single_core_soc_sets_no_core_mask(rt, monkeypatch) -> None:
    """Finding 8: set_core_mask(AUTO) reached rknn_set_core_mask on single-core NPUs, where
    the runtime refuses the call (API reference 2.3.2)."""
    monkeypatch.setenv("RKRT_FAKE_SOC", "rk3568")
    with rkrt.Session(mlp().to_bytes(), soc="rk3568", core_mask="AUTO") as s:
        s.set_core_mask("AUTO")
        with s.dup(core_mask="AUTO") as d:
            d.set_core_mask(rkrt.CoreMask.AUTO)
        assert s.core_mask is rkrt.CoreMask.AUTO
    assert rt.calls("rknn_set_core_mask") == 0
