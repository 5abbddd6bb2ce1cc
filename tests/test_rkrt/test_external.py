"""External memory (rkrt.external): DMA-BUF fds and physical addresses bound in place.

The test double maps any fd when told to (rt.allow_non_dmabuf()), so a memfd stands in for a
DMA-BUF here, passed with require_dmabuf=False; host arrays stand in for CMA memory through
from_phys with a made-up nonzero physical address, which the double ignores (it reads
virt_addr, as a board's runtime reads the CPU mapping of a CMA region).
"""

from __future__ import annotations

import functools
import gc
import mmap
import os
from typing import Iterator

import numpy as np
import pytest
from rkrt_support import NO_LEAKS, inputs_for, mlp, python_allocations, rss_bytes

import rkrt
from rkrt import external, lowlevel
from rkrt._ffi import ffi

CREATE_FNS = ("rknn_create_mem", "rknn_create_mem_from_fd", "rknn_create_mem_from_phys")
FAKE_PHYS = 0x4000_0000  # any nonzero address: the double uses virt_addr

from_memfd = functools.partial(external.from_fd, require_dmabuf=False)


def host(arr: np.ndarray) -> external.ExternalMemory:
    """The array's memory described as a CMA region mapped at its address (keep arr alive)."""
    return external.from_phys(FAKE_PHYS, arr.ctypes.data, arr.nbytes, dtype=arr.dtype)


@pytest.fixture
def memfd(rt) -> Iterator[int]:
    rt.allow_non_dmabuf()
    fd = os.memfd_create("frame")
    yield fd
    os.close(fd)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def write_fd(fd: int, offset: int, data: bytes, total: int) -> None:
    os.ftruncate(fd, total)
    os.pwrite(fd, data, offset)


def reference_run(model_bytes: bytes, *xs: np.ndarray) -> list[np.ndarray]:
    with rkrt.Session(model_bytes) as s:
        return s.run(*xs)


# ---- fd-backed memory ----


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.uint8])
def test_memfd_input_equals_run(rt, memfd, dtype) -> None:
    model = mlp((6, 16, 3), dtype="float16")
    offset = 4096 + 64  # past a header page, not page-aligned within the mapping
    frames = [(inputs_for(model, seed=k)[0] * 40).astype(dtype) for k in range(3)]
    size = frames[0].nbytes
    write_fd(memfd, offset, frames[0].tobytes(), offset + size + 100)
    ext = from_memfd(memfd, size, offset=offset, dtype=dtype)
    with rkrt.Session(model.to_bytes()) as s, s.bind(inputs={0: ext}) as b:
        assert rt.calls("rknn_create_mem_from_fd") == 1 and rt.calls("rknn_create_mem") == 1
        assert b.inputs[0].dtype == dtype and b.inputs[0].shape == (1, 6)
        for x in frames:
            os.pwrite(memfd, x.tobytes(), offset)  # the producer writes; nothing is re-bound
            np.testing.assert_array_equal(b.inputs[0], x)  # rkrt's view is the same memory
            b.run()
            np.testing.assert_array_equal(b.outputs[0], reference_run(model.to_bytes(), x)[0])
        assert rt.calls("rknn_set_io_mem") == 2
    assert rt.live() == NO_LEAKS


def test_memfd_output_receives_results(rt, memfd) -> None:
    model = mlp((4, 8, 3), dtype="float32")
    x = inputs_for(model)[0]
    write_fd(memfd, 0, b"", 4096)
    out = from_memfd(memfd, 12, offset=256)
    with rkrt.Session(model.to_bytes()) as s, s.bind(outputs={"output": out}) as b:
        b.inputs[0][...] = x
        b.run()
        got = np.frombuffer(os.pread(memfd, 12, 256), np.float32).reshape(1, 3)
        np.testing.assert_array_equal(got, reference_run(model.to_bytes(), x)[0])
        np.testing.assert_array_equal(b.outputs[0], got)


def test_read_only_fd_cannot_receive_outputs(rt, memfd) -> None:
    model = mlp((4, 8, 3), dtype="float32")
    write_fd(memfd, 0, b"", 16)
    ro = os.open(f"/proc/self/fd/{memfd}", os.O_RDONLY)
    try:
        ext = from_memfd(ro, 12)
        assert not ext.writable and "read-only" in repr(ext)
        with rkrt.Session(model.to_bytes()) as s, pytest.raises(ValueError, match="read-only"):
            s.bind(outputs={0: ext})
        assert rt.calls("rknn_create_mem_from_fd") == 0
        os.fstat(ro)
    finally:
        os.close(ro)


def test_closing_never_closes_the_callers_fd(rt, memfd) -> None:
    model = mlp((4, 8, 3))
    write_fd(memfd, 0, b"", 64)
    before = open_fds()
    s = rkrt.Session(model.to_bytes())
    b = s.bind(inputs={0: from_memfd(memfd, 16)})
    b.run()
    b.close()
    b.close()
    assert open_fds() == before  # rkrt's own duplicate (for its mapping) is gone too
    os.fstat(memfd)
    # Bound again and closed by the session instead, then by garbage collection.
    s.bind(inputs={0: from_memfd(memfd, 16)})
    s.close()
    os.fstat(memfd)
    s = rkrt.Session(model.to_bytes())
    s.bind(inputs={0: from_memfd(memfd, 16)}).run()
    del s
    gc.collect()
    assert rt.live() == NO_LEAKS and open_fds() == before
    assert os.pread(memfd, 4, 0) == b"\0" * 4  # still open, still the caller's
    assert rt.calls("rknn_destroy_mem") == 3 * 2


def test_the_fd_may_be_closed_once_bound(rt) -> None:
    rt.allow_non_dmabuf()
    model = mlp((4, 8, 3), dtype="float32")
    x = inputs_for(model)[0]
    fd = os.memfd_create("frame")
    write_fd(fd, 0, x.tobytes(), 16)
    with rkrt.Session(model.to_bytes()) as s, s.bind(inputs={0: from_memfd(fd, 16)}) as b:
        os.close(fd)  # the runtime imported it and rkrt mapped it: both keep the buffer
        b.run()
        np.testing.assert_array_equal(b.outputs[0], reference_run(model.to_bytes(), x)[0])


# ---- physical addresses ----


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_phys_memory_is_read_and_written_in_place_on_every_run(rt, dtype) -> None:
    model = mlp((4, 8, 2), dtype="float16")
    x = np.zeros((1, 4), dtype)
    y = np.zeros((1, 2), dtype)
    session = rkrt.Session(model.to_bytes())
    with session as s, s.bind(inputs={0: host(x)}, outputs={0: host(y)}) as b:
        assert rt.calls("rknn_create_mem_from_phys") == 2
        for seed in range(3):
            x[...] = inputs_for(model, seed=seed)[0]
            b.run()
            want = reference_run(model.to_bytes(), x)[0]
            np.testing.assert_array_equal(y.astype(np.float32), want)
            assert b.outputs[0].ctypes.data == y.ctypes.data  # a view of the caller's memory


def test_from_phys_uses_the_callers_mapping(rt) -> None:
    model = mlp((4, 8, 3), dtype="float32")
    x = inputs_for(model)[0]
    y = np.full((1, 3), -1, np.float32)
    phys = external.from_phys(0x4000_0000, ffi.cast("void*", x.ctypes.data), x.nbytes)
    out = external.from_phys(0x4000_1000, y.ctypes.data, y.nbytes)
    with rkrt.Session(model.to_bytes()) as s, s.bind(inputs={0: phys}, outputs={0: out}) as b:
        b.run()
    np.testing.assert_array_equal(y, reference_run(model.to_bytes(), x)[0])
    np.testing.assert_array_equal(x, inputs_for(model)[0])  # neither freed nor changed


def test_host_memory_is_never_passed_as_physical(rt) -> None:
    """Finding 1: from_buffer handed process memory to rknn_create_mem_from_phys with
    phys_addr 0, which a board's NPU would DMA from."""
    assert not hasattr(external, "from_buffer")
    x = np.zeros((1, 4), np.float32)
    with pytest.raises(ValueError, match="phys_addr must be in 1"):
        external.from_phys(0, x.ctypes.data, x.nbytes)
    assert rt.calls("rknn_create_mem_from_phys") == 0


# ---- refused before any C call ----


@pytest.fixture
def fresh(rt) -> Iterator[tuple[rkrt.Session, object]]:
    """A float16 (1, 4) -> (1, 3) session; call counts reset after opening it."""
    model = mlp((4, 8, 3), dtype="float16")
    with rkrt.Session(model.to_bytes()) as s:
        rt.reset()
        yield s, model
        assert all(rt.calls(f) == 0 for f in CREATE_FNS) and rt.calls("rknn_set_io_mem") == 0
        assert rt.counters() == dict.fromkeys(rt.counters(), 0)


def test_wrong_size_is_refused_before_c(fresh, memfd) -> None:
    s, _ = fresh
    write_fd(memfd, 0, b"", 4096)
    for ext, given in [
        (host(np.zeros((1, 3), np.float32)), 12),
        (host(np.zeros((1, 5), np.float32)), 20),
        (host(np.zeros((1, 4), np.float16)), 8),  # fine as an input...
        (from_memfd(memfd, 15, offset=1, dtype=np.uint8), 15),
        (external.from_phys(0x1000, 0x2000, 17), 17),
    ]:
        kind = "output" if given == 8 else "input"
        with pytest.raises(rkrt.ShapeError, match=f"bound to {given} bytes") as info:
            s.bind(**{kind + "s": {0: ext}})
        assert "Fix: pass size=" in str(info.value)


def test_wrong_dtype_is_refused_before_c(fresh) -> None:
    s, _ = fresh
    with pytest.raises(rkrt.DTypeError, match="cannot hold float64"):
        host(np.zeros((1, 4)))
    with pytest.raises(rkrt.DTypeError, match="cannot hold int32"):
        external.from_phys(FAKE_PHYS, 0x1000, 16, dtype=np.int32)
    with pytest.raises(rkrt.DTypeError, match="accepted: float32, float16, uint8"):
        s.bind(inputs={0: host(np.zeros((1, 4), np.int8))})
    with pytest.raises(rkrt.DTypeError, match="accepted: float32, float16"):
        s.bind(outputs={0: host(np.zeros((1, 3), np.uint8))})


def test_bad_descriptions_are_refused_before_c(fresh, memfd) -> None:
    s, _ = fresh
    write_fd(memfd, 0, b"", 100)
    with pytest.raises(ValueError, match="holds 100 bytes, too few"):
        from_memfd(memfd, 16, offset=90)
    with pytest.raises(ValueError, match="not an open file descriptor"):
        external.from_fd(987654, 16)
    with pytest.raises(ValueError, match="virt_addr must be in 1"):
        external.from_phys(0x1000, 0, 16)
    with pytest.raises(TypeError, match="size must be an int"):
        from_memfd(memfd, 16.0)
    region = np.zeros((1, 4), np.float32)
    ext = host(region)
    with pytest.raises(ValueError, match=r"names no input: 'nope'.*#0 'input'"):
        s.bind(inputs={"nope": ext})
    with pytest.raises(ValueError, match="names no output: 1"):
        s.bind(outputs={1: ext})
    with pytest.raises(ValueError, match="given twice"):
        s.bind(inputs={0: ext, "input": ext})
    with pytest.raises(TypeError, match="from_fd"):
        s.bind(inputs={0: np.zeros((1, 4), np.float32)})


def test_failed_import_frees_what_rkrt_made(rt, memfd) -> None:
    model = mlp((4, 8, 3))
    write_fd(memfd, 0, b"", 64)
    before = open_fds()
    with rkrt.Session(model.to_bytes()) as s:
        rt.inject("rknn_create_mem_from_fd")
        with pytest.raises(rkrt.RKNNError, match="rknn_create_mem_from_fd"):
            s.bind(inputs={0: from_memfd(memfd, 16)})
        assert open_fds() == before
        with s.bind(inputs={0: from_memfd(memfd, 16)}) as b:  # and it can be retried
            b.run()
    assert rt.live() == NO_LEAKS


# ---- dynamic shapes ----


def test_dynamic_model_binds_external_memory_for_the_largest_shape(rt) -> None:
    model = mlp((4, 8, 3), dtype="float32", batch_sizes=(2, 5))
    x = np.zeros((5, 4), np.float32)
    with rkrt.Session(model.to_bytes()) as s:
        with pytest.raises(rkrt.ShapeError, match="largest shape"):
            s.bind(inputs={0: host(x[:2])})
        with s.bind(inputs={0: host(x)}) as b:
            for rows in (2, 5, 2):
                b.set_input_shapes((rows, 4))
                x[:rows] = inputs_for(model, batch=rows, seed=rows)[0]
                b.run()
                assert b.inputs[0].shape == (rows, 4)
                want = reference_run(model.to_bytes(), x[:rows].copy())[0]
                np.testing.assert_array_equal(b.outputs[0], want)


# ---- handles, adoption and the low-level binding ----


def test_handle_and_adopt_without_ownership(rt) -> None:
    model = mlp((4, 8, 3), dtype="float32")
    x = inputs_for(model)[0]
    lib, lffi = lowlevel.load(), lowlevel.ffi
    ctx = lffi.new("rknn_context*")
    data = lffi.from_buffer(model.to_bytes())
    lowlevel.check(lib.rknn_init(ctx, data, len(data), 0, lffi.NULL), "rknn_init")
    handle = int(ctx[0])
    s = rkrt.Session.adopt(handle)
    assert s.handle == handle and s.inputs[0].shape == (1, 4)
    with s.dup() as d:  # a context rkrt made itself is rkrt's, as always
        assert d.handle != handle
    region = x.copy()
    b = s.bind(inputs={0: host(region)})
    b.run()
    np.testing.assert_array_equal(b.outputs[0], reference_run(model.to_bytes(), x)[0])
    s.close()
    assert rt.live() == {"contexts": 1, "mems": 0, "outputs": 0}  # the creator's context stays
    rt.core_mask(handle)  # alive
    with pytest.raises(rkrt.ClosedError):
        s.handle  # noqa: B018
    assert lib.rknn_destroy(handle) == 0  # the creator destroys it
    assert rt.live() == NO_LEAKS


def test_adopt_with_ownership_destroys_at_close_and_gc(rt) -> None:
    model = mlp((4, 8, 3))
    lib, lffi = lowlevel.load(), lowlevel.ffi
    for close in (True, False):
        ctx = lffi.new("rknn_context*")
        data = lffi.from_buffer(model.to_bytes())
        assert lib.rknn_init(ctx, data, len(data), 0, lffi.NULL) == 0
        s = rkrt.Session.adopt(ctx[0], owned=True)
        assert rt.live()["contexts"] == 1
        if close:
            s.close()
        else:
            del s
            gc.collect()
        assert rt.live() == NO_LEAKS
        with pytest.raises(ValueError):
            rt.core_mask(ctx[0])  # destroyed by rkrt
    assert rt.calls("rknn_destroy") == 2


def test_failed_adopt_destroys_nothing(rt) -> None:
    with pytest.raises(TypeError, match="ctx\\[0\\]"):
        rkrt.Session.adopt("1")
    with pytest.raises(ValueError, match="not an rknn_context"):
        rkrt.Session.adopt(0)
    with pytest.raises(rkrt.RKNNError) as info:
        rkrt.Session.adopt(0x7777_0001, owned=True)  # made up: the runtime refuses it
    assert info.value.symbol == "RKNN_ERR_CTX_INVALID"
    assert rt.calls("rknn_destroy") == 0
    rt.reset()  # the made-up handle was counted as a bad pointer, on purpose


def test_lowlevel_is_the_sessions_library(rt) -> None:
    with rkrt.Session(mlp().to_bytes()) as s:
        assert lowlevel.load() is s._context.runtime.lib
        assert lowlevel.ffi is ffi
        assert lowlevel.DEFINES["RKNN_SUCC"] == 0


# ---- many frames ----


def test_ten_thousand_frames_flat_rss_and_nothing_left(rt, memfd) -> None:
    model = mlp((16, 32, 4), dtype="float16")
    frames = [inputs_for(model, seed=k)[0] for k in range(8)]
    want = [reference_run(model.to_bytes(), x)[0] for x in frames]
    offset = 64
    write_fd(memfd, 0, b"", offset + frames[0].nbytes)
    with mmap.mmap(memfd, offset + frames[0].nbytes) as producer:
        camera = np.frombuffer(producer, np.float32, 16, offset).reshape(1, 16)
        with (
            rkrt.Session(model.to_bytes()) as s,
            s.bind(inputs={0: from_memfd(memfd, frames[0].nbytes, offset=offset)}) as b,
        ):
            run, y = b.run, b.outputs[0]
            rss = []
            for k in range(10_000):
                camera[...] = frames[k % 8]
                run()
                if k % 1000 == 999:
                    np.testing.assert_array_equal(y, want[k % 8])
                    rss.append(rss_bytes())
        del camera
    assert rss[-1] - rss[0] < 256 * 1024, [r - rss[0] for r in rss]
    assert rt.calls("rknn_run") == 10_000 + len(frames) and rt.calls("rknn_create_mem_from_fd") == 1
    assert rt.live() == NO_LEAKS


def test_fd_frame_loop_allocates_nothing(rt, memfd) -> None:
    model = mlp((16, 32, 4), dtype="float16")
    write_fd(memfd, 0, b"", 4096)
    frame = from_memfd(memfd, 16, offset=64, dtype=np.uint8)
    with rkrt.Session(model.to_bytes()) as s, s.bind(inputs={0: frame}) as b:
        kept, peak = python_allocations(b.run)
    assert kept < 256 and peak < 1024
