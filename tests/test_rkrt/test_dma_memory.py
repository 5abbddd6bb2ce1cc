"""External memory the NPU can reach: DMA-BUF fds only (finding 5), DMA-heap allocation."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from rkrt_support import mlp

import rkrt
from rkrt import dma_heap, external


@pytest.fixture
def memfd():
    fd = os.memfd_create("frame")
    os.ftruncate(fd, 4096)
    yield fd
    os.close(fd)


def test_from_fd_refuses_what_is_not_a_dmabuf(memfd, tmp_path) -> None:
    """Finding 5: from_fd took any mappable fd, which a board's NPU driver cannot import."""
    assert not external.is_dmabuf(memfd)
    with pytest.raises(ValueError, match=r"memfd:frame.*is not a DMA-BUF.*dma_alloc"):
        external.from_fd(memfd, 16)
    with open(tmp_path / "frame.bin", "wb+") as f:
        f.truncate(64)
        with pytest.raises(ValueError, match="frame.bin.*not a DMA-BUF"):
            external.from_fd(f.fileno(), 16)
    ext = external.from_fd(memfd, 16, require_dmabuf=False)  # the caller opts in
    assert ext.nbytes == 16


@pytest.mark.parametrize("link", ["/dmabuf:", "/dmabuf:camera0", "anon_inode:dmabuf"])
def test_dmabuf_links_are_recognised(monkeypatch, memfd, link: str) -> None:
    # What the kernel shows for a DMA-BUF in /proc/self/fd (5.x+ names it, older ones not).
    monkeypatch.setattr(os, "readlink", lambda path: link)
    assert external.is_dmabuf(memfd)
    assert external.from_fd(memfd, 16).nbytes == 16


def test_the_double_refuses_non_dmabuf_fds_unless_allowed(rt, memfd) -> None:
    ext = external.from_fd(memfd, 16, require_dmabuf=False)
    with rkrt.Session(mlp((4, 8, 3)).to_bytes()) as s:
        with pytest.raises(rkrt.RKNNError, match="rknn_create_mem_from_fd"):
            s.bind(inputs={0: ext})
        assert "not a DMA-BUF" in rt.last_error()
    rt.allow_non_dmabuf()
    with rkrt.Session(mlp((4, 8, 3)).to_bytes()) as s, s.bind(inputs={0: ext}) as b:
        b.run()


# ---- DMA heaps ----


def test_dma_alloc_without_heaps_says_why(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(dma_heap, "HEAP_DIR", str(tmp_path / "dma_heap"))
    with pytest.raises(OSError, match="no DMA heaps.*CONFIG_DMABUF_HEAPS.*from_fd") as info:
        external.dma_alloc(4096)
    assert info.value.errno == 2
    (tmp_path / "dma_heap").mkdir()
    (tmp_path / "dma_heap" / "cma").touch()
    with pytest.raises(OSError, match="the heaps here are cma"):
        external.dma_alloc(4096, heap="system")
    # A file that is no heap device refuses the ioctl; the error names the ioctl.
    with pytest.raises(OSError, match="DMA_HEAP_IOCTL_ALLOC of 4096 bytes.*not a DMA heap"):
        external.dma_alloc(4096, heap="cma")
    for bad in ("", "../cma", "."):
        with pytest.raises(ValueError, match="heap's name"):
            external.dma_alloc(4096, heap=bad)
    for bad in (0, 2**32, 1.5, True):
        with pytest.raises(ValueError, match="nbytes"):
            external.dma_alloc(bad)


def test_this_machine_has_no_heap_or_dma_alloc_works() -> None:
    if not dma_heap.heaps():
        with pytest.raises(OSError, match="DMA heap"):
            external.dma_alloc(4096)
        return
    with external.dma_alloc(4096) as buf:  # on a board: a real DMA-BUF
        assert external.is_dmabuf(buf.fd)
        buf.array[:4] = (1, 2, 3, 4)
        assert buf.memory(np.uint8).nbytes == 4096


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc (the double needs it too)")
def test_ioctl_argument_matches_the_kernel_header(tmp_path) -> None:
    """The struct and request code, as the C compiler reads <linux/dma-heap.h>."""
    header = Path("/usr/include/linux/dma-heap.h")
    if not header.is_file():
        pytest.skip("no Linux UAPI headers (linux-libc-dev) installed")
    src = tmp_path / "heap.c"
    src.write_text(
        "#include <stdio.h>\n#include <stddef.h>\n#include <linux/dma-heap.h>\n"
        "int main(void) { struct dma_heap_allocation_data d;\n"
        ' printf("%zu %zu %zu %zu %zu %lu\\n", sizeof d,'
        " offsetof(struct dma_heap_allocation_data, len),"
        " offsetof(struct dma_heap_allocation_data, fd),"
        " offsetof(struct dma_heap_allocation_data, fd_flags),"
        " offsetof(struct dma_heap_allocation_data, heap_flags),"
        " (unsigned long)DMA_HEAP_IOCTL_ALLOC); return 0; }\n"
    )
    subprocess.run(["gcc", str(src), "-o", str(tmp_path / "heap")], check=True)
    out = subprocess.run([str(tmp_path / "heap")], capture_output=True, text=True, check=True)
    size, *offsets, request = (int(v) for v in out.stdout.split())
    packed = dma_heap.ALLOCATION
    assert packed.size == size
    fields = packed.format.lstrip("=")
    assert [struct.calcsize("=" + fields[:k]) for k in range(4)] == offsets
    assert request == dma_heap.DMA_HEAP_IOCTL_ALLOC


def test_dma_alloc_drives_the_ioctl_and_maps_the_buffer(monkeypatch, tmp_path) -> None:
    """The kernel's side emulated: the ioctl gets the documented argument and returns an fd
    (a memfd here, the closest this machine has to a DMA-BUF)."""
    monkeypatch.setattr(dma_heap, "HEAP_DIR", str(tmp_path))
    (tmp_path / "system").touch()
    seen = []

    def ioctl(dev, request, arg, mutate):
        length, fd, flags, heap_flags = dma_heap.ALLOCATION.unpack(arg)
        seen.append((request, length, fd, flags, heap_flags, mutate))
        new = os.memfd_create("heap")
        os.ftruncate(new, length)
        arg[:] = dma_heap.ALLOCATION.pack(length, new, flags, heap_flags)
        return 0

    monkeypatch.setattr(dma_heap.fcntl, "ioctl", ioctl)
    with external.dma_alloc(8192) as buf:
        assert seen == [(dma_heap.DMA_HEAP_IOCTL_ALLOC, 8192, 0, os.O_RDWR | os.O_CLOEXEC, 0,
                         True)]  # fmt: skip
        fd = buf.fd
        buf.array[:3] = (7, 8, 9)
        assert os.pread(fd, 3, 0) == bytes((7, 8, 9))  # the view is the buffer's memory
        assert buf.array.flags.writeable and buf.array.nbytes == 8192
        assert "8192 bytes from 'system'" in repr(buf)
    with pytest.raises(OSError):
        os.fstat(fd)  # closed at exit
    assert buf.array[1] == 8  # the mapping outlives the fd while a view holds it
    with pytest.raises(ValueError, match="closed"):
        buf.memory()
