"""DMA-BUFs from the Linux DMA heaps (``/dev/dma_heap/<heap>``): memory the NPU can reach.

The allocation is the kernel's ``DMA_HEAP_IOCTL_ALLOC`` on the heap's device, with the
argument ``struct dma_heap_allocation_data { __u64 len; __u32 fd; __u32 fd_flags;
__u64 heap_flags; }`` and the request ``_IOWR('H', 0, struct dma_heap_allocation_data)``, both
from the Linux UAPI header ``include/uapi/linux/dma-heap.h`` (Linux >= 5.6). The kernel returns
a DMA-BUF fd, which the runtime imports with ``rknn_create_mem_from_fd``: the same path a
camera or video decoder's buffers take.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

HEAP_DIR = "/dev/dma_heap"
# struct dma_heap_allocation_data: len, fd, fd_flags, heap_flags; 24 bytes, no padding.
ALLOCATION = struct.Struct("=QIIQ")


def _iowr(kind: str, number: int, size: int) -> int:
    """The _IOWR(kind, number, size) request code of <asm-generic/ioctl.h>."""
    return (3 << 30) | (size << 16) | (ord(kind) << 8) | number


DMA_HEAP_IOCTL_ALLOC = _iowr("H", 0, ALLOCATION.size)


def heaps() -> list[str]:
    """The DMA heaps this kernel offers (e.g. ["cma", "system"]); empty when none."""
    try:
        return sorted(os.listdir(HEAP_DIR))
    except OSError:
        return []


def allocate(nbytes: int, heap: str = "system") -> int:
    """A new DMA-BUF fd of ``nbytes`` from the DMA heap ``heap`` ("system", "cma", ... see
    :func:`heaps`); the caller closes it.

    OSError when the heap is missing (no DMA heaps: not a board, or a kernel older than 5.6
    or without CONFIG_DMABUF_HEAPS) or refuses the allocation.
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or not 0 < nbytes < 2**32:
        raise ValueError(f"nbytes must be an int in 1..{2**32 - 1} (the runtime's sizes are "
                         f"uint32), got {nbytes!r}")  # fmt: skip
    if not heap or "/" in heap or heap in (".", ".."):
        raise ValueError(f"heap must be a heap's name such as 'system' or 'cma', not {heap!r}")
    path = os.path.join(HEAP_DIR, heap)
    try:
        dev = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        found = heaps()
        offered = f"the heaps here are {', '.join(found)}" if found else (
            f"this system has no DMA heaps ({HEAP_DIR} is missing or empty: not a board, or a "
            "kernel older than 5.6 or built without CONFIG_DMABUF_HEAPS)")  # fmt: skip
        raise OSError(exc.errno, f"cannot open the DMA heap {path}: {exc.strerror}; {offered}. "
                      "Without a heap, take DMA-BUFs from their producer (camera, decoder, "
                      "RGA) and bind them with rkrt.external.from_fd") from None  # fmt: skip
    try:
        arg = bytearray(ALLOCATION.pack(nbytes, 0, os.O_RDWR | os.O_CLOEXEC, 0))
        try:
            fcntl.ioctl(dev, DMA_HEAP_IOCTL_ALLOC, arg, True)
        except OSError as exc:
            hint = "it is not a DMA heap" if exc.errno == errno.ENOTTY else "out of memory?"
            raise OSError(exc.errno, f"DMA_HEAP_IOCTL_ALLOC of {nbytes} bytes on {path} failed: "
                          f"{exc.strerror} ({hint})") from None  # fmt: skip
    finally:
        os.close(dev)
    return ALLOCATION.unpack(arg)[1]
