"""External memory: bind a model's tensors to memory that rkrt did not allocate.

Camera, video and C pipelines hand frames around as DMA-BUF file descriptors; a few have a
physical (DMA) address. Describe such memory with :func:`from_fd` or :func:`from_phys`, or
allocate a DMA-BUF yourself with :func:`dma_alloc`, and bind it in place of runtime-allocated
buffers::

    frame = rkrt.external.from_fd(fd, size, offset=4096, dtype=np.uint8)
    with session.bind(inputs={0: frame}) as b:   # bound once
        b.run()            # the NPU reads the frame where the producer wrote it
        y = b.outputs[0]   # outputs not given stay runtime-allocated (float32 by default)

    with rkrt.external.dma_alloc(nbytes) as buf, session.bind(inputs={0: buf.memory()}) as b:
        b.inputs[0][...] = x   # the CPU writes the DMA-BUF; the NPU reads it

Keys are tensor indexes or names. The element type is the buffer's own (``dtype``): float32
or the tensor's native type, and for inputs also what the runtime converts itself (uint8
values, int8 for int8 models). The region is bound in the tensor's logical layout (never the
NPU's strided native one, which a producer cannot know) and must hold exactly the tensor in
that type: ``n_elems * itemsize`` bytes. Type and size are checked before any memory is
created, with the same errors as ``Session.run()`` (:class:`rkrt.DTypeError`,
:class:`rkrt.ShapeError`).

Ownership: rkrt never closes the caller's fd and never frees the caller's memory. While bound,
the binding keeps the caller's object alive. Closing the binding destroys only the runtime's
``rknn_tensor_mem`` wrapper and undoes what rkrt itself made (its own mapping of an fd).

How each kind reaches the runtime, and what it is for:

- :func:`from_fd`: a DMA-BUF from its producer (V4L2 camera, MPP decoder, RGA, a DMA heap).
  ``rknn_create_mem_from_fd(ctx, fd, base, size, offset)``: rkrt maps the fd itself
  (``mmap``, from 0 to ``offset + size``) and passes the mapping's start as ``virt_addr`` (the
  SDK's convention: "virt_addr without offset"); that mapping also backs the binding's numpy
  view. The NPU driver imports the fd as a DMA-BUF, so anything else (a regular file, a memfd)
  is refused unless ``require_dmabuf=False`` (for the test double, which maps any fd).
- :func:`dma_alloc`: a DMA-BUF of your own from ``/dev/dma_heap/<heap>`` (see rkrt.dma_heap),
  with a writable numpy view; bind ``buf.memory(dtype)``.
- :func:`from_phys`: ``rknn_create_mem_from_phys(ctx, phys_addr, virt_addr, size)`` for memory
  whose physical (DMA) address you really have, e.g. a CMA or carveout region from a vendor
  allocator (the SDK's own example uses the MMZ allocator). The address must be nonzero; rkrt
  never passes host memory as physical: the NPU reaches memory by DMA, not through the CPU's
  page tables (RKNN API user guide 1.5.2, zero-copy: memory with only a virtual address can
  be used with the general API only).

Dynamic-shape models refuse external memory (RKNN API user guide 1.5.2, "Dynamic shape input":
"It does not support the zero-copy process in which users use external interfaces to allocate
memory"). On a runtime without ``rknn_mem_sync`` (before 1.6.0) external memory is refused:
rkrt could not make the CPU's view of it coherent with the NPU's.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import stat
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

import numpy as np

from ._ffi import ffi
from .dma_heap import allocate, heaps
from .errors import DTypeError, ShapeError, created
from .tensor import TYPE_OF_NUMPY, TensorSpec, accepted_input_dtypes

if TYPE_CHECKING:
    from .library import Runtime

__all__ = ["DmaBuffer", "ExternalMemory", "dma_alloc", "from_fd", "from_phys", "heaps", "is_dmabuf"]

_F32 = np.dtype(np.float32)
_MAX_SIZE = 2**32 - 1  # the runtime takes uint32 sizes
_MAX_OFFSET = 2**31 - 1  # and int32 offsets

Key = Union[int, str]


def _bindable(dtype: Any) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in TYPE_OF_NUMPY:
        names = ", ".join(str(d) for d in TYPE_OF_NUMPY)
        raise DTypeError(f"external memory cannot hold {dt} elements; the runtime binds {names}")
    return dt


def _size(name: str, value: Any, limit: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not minimum <= value <= limit:
        raise ValueError(f"{name} must be in {minimum}..{limit}, got {value}")
    return value


class ExternalMemory:
    """A region of memory owned by someone else, to bind to one tensor with Session.bind().

    Made by :func:`from_fd` or :func:`from_phys`. It holds no resource
    until bound: each binding imports it for itself and undoes that at close.
    ``dtype`` is the buffer's element type, ``nbytes`` the region's size, ``writable`` whether
    it can receive an output.
    """

    __slots__ = ("kind", "dtype", "nbytes", "writable", "_source")

    def __init__(self, kind: str, dtype: np.dtype, nbytes: int, writable: bool,
                 source: tuple[Any, ...]) -> None:  # fmt: skip
        self.kind, self.dtype, self.nbytes, self.writable = kind, dtype, nbytes, writable
        self._source = source

    def __repr__(self) -> str:
        access = "" if self.writable else ", read-only"
        return f"<rkrt.external.{self.kind} {self.nbytes} bytes of {self.dtype}{access}>"

    def _import(self, runtime: Runtime, handle: int) -> Imported:
        if self.kind == "fd":
            return _import_fd(runtime, handle, self)
        phys, virt = self._source
        return Imported(_create_phys(runtime, handle, phys, ffi.cast("void*", virt), self),
                        virt, self.writable)  # fmt: skip


class Imported:
    """One bound import: the runtime's ``mem`` wrapper, where the data is for the CPU, and
    what rkrt made for it (released by :meth:`release` after the wrapper is destroyed)."""

    __slots__ = ("mem", "address", "writable", "_owned")

    def __init__(self, mem: Any, address: int, writable: bool, *owned: Any) -> None:
        self.mem, self.address, self.writable = mem, address, writable
        self._owned = owned

    def release(self) -> None:
        """Undo rkrt's own mapping or buffer export; the caller's fd and memory stay."""
        owned, self._owned = self._owned, ()
        for thing in owned:
            if isinstance(thing, mmap.mmap):
                thing.close()
            else:
                ffi.release(thing)


def _create_phys(runtime: Runtime, handle: int, phys: int, virt: Any, ext: ExternalMemory) -> Any:
    create = runtime.symbol("rknn_create_mem_from_phys")
    return created(create(handle, phys, virt, ext.nbytes), "rknn_create_mem_from_phys")


def _import_fd(runtime: Runtime, handle: int, ext: ExternalMemory) -> Imported:
    fd, offset = ext._source
    create = runtime.symbol("rknn_create_mem_from_fd")
    access = mmap.ACCESS_WRITE if ext.writable else mmap.ACCESS_READ
    # mmap keeps a duplicate of fd for itself and closes only that one.
    mapping = mmap.mmap(fd, offset + ext.nbytes, access=access)
    base = ffi.from_buffer(mapping)
    try:
        mem = created(create(handle, fd, base, ext.nbytes, offset), "rknn_create_mem_from_fd")
    except BaseException:
        ffi.release(base)
        mapping.close()
        raise
    address = int(ffi.cast("uintptr_t", base)) + offset
    return Imported(mem, address, ext.writable, base, mapping)


def is_dmabuf(fd: int) -> bool:
    """Whether ``fd`` is a DMA-BUF: its /proc/self/fd link reads "/dmabuf:<name>" (Linux >= 5.x)
    or "anon_inode:dmabuf" (older kernels)."""
    try:
        link = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return link.startswith(("/dmabuf:", "anon_inode:dmabuf"))


def from_fd(fd: int, size: int, *, offset: int = 0, dtype: Any = np.float32,
            require_dmabuf: bool = True) -> ExternalMemory:  # fmt: skip
    """``size`` bytes at ``offset`` of a DMA-BUF file descriptor.

    ``dtype`` is the element type stored there (e.g. np.uint8 for camera pixels). The fd
    stays the caller's: rkrt never closes it, and it may be closed once bound. An fd that is
    not a DMA-BUF is refused (the NPU driver imports DMA-BUFs only); ``require_dmabuf=False``
    lets any mappable fd through, for runtimes that map it themselves (the test double).
    """
    fd = _size("fd", fd, 2**31 - 1, 0)
    size = _size("size", size, _MAX_SIZE, 1)
    offset = _size("offset", offset, _MAX_OFFSET, 0)
    try:
        st = os.fstat(fd)
        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError as exc:
        raise ValueError(f"fd {fd} is not an open file descriptor ({exc.strerror})") from None
    if require_dmabuf and not is_dmabuf(fd):
        try:
            what = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            what = "unknown"
        raise ValueError(
            f"fd {fd} ({what}) is not a DMA-BUF: the NPU imports DMA-BUFs only. Pass the "
            "producer's DMA-BUF fd (camera, decoder, RGA) or allocate one with "
            "rkrt.external.dma_alloc(); require_dmabuf=False accepts it anyway"
        )
    # A DMA-BUF reports its buffer size; an empty regular file is too short for anything.
    if (st.st_size or stat.S_ISREG(st.st_mode)) and offset + size > st.st_size:
        raise ValueError(
            f"fd {fd} holds {st.st_size} bytes, too few for {size} bytes at offset {offset}; "
            "pass the frame's size and offset within the buffer"
        )
    return ExternalMemory("fd", _bindable(dtype), size, mode != os.O_RDONLY, (fd, offset))


def from_phys(phys_addr: int, virt_addr: Any, size: int, *, dtype: Any = np.float32
              ) -> ExternalMemory:  # fmt: skip
    """``size`` bytes at physical (DMA) address ``phys_addr``, mapped for the CPU at
    ``virt_addr`` (an int or a cffi pointer). The runtime trusts both: they must describe
    the same memory, alive and unmoved while bound. rkrt never unmaps or frees it."""
    phys_addr = _size("phys_addr", phys_addr, 2**64 - 1, 1)
    if isinstance(virt_addr, ffi.CData):
        virt_addr = int(ffi.cast("uintptr_t", virt_addr))
    virt_addr = _size("virt_addr", virt_addr, 2**64 - 1, 1)
    size = _size("size", size, _MAX_SIZE, 1)
    return ExternalMemory("phys", _bindable(dtype), size, True, (phys_addr, virt_addr))


class DmaBuffer:
    """One DMA-BUF from a DMA heap: ``fd`` (this object's: closed by :meth:`close`), ``nbytes``,
    and ``array``, a writable uint8 numpy view of the whole buffer for the CPU.

    Bind it with ``session.bind(inputs={0: buf.memory(np.uint8)})``; the binding imports the fd
    and syncs the CPU's caches around each run where the runtime has ``rknn_mem_sync``.
    ``array`` (and views of it) stay valid after close(): the mapping lives until the last
    view is gone.
    """

    def __init__(self, fd: int, nbytes: int, heap: str) -> None:
        self.fd: Optional[int] = fd
        self.nbytes = nbytes
        self.heap = heap
        self._map = mmap.mmap(fd, nbytes, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.array = np.frombuffer(self._map, np.uint8)

    def memory(self, dtype: Any = np.float32, *, size: Optional[int] = None,
               offset: int = 0) -> ExternalMemory:  # fmt: skip
        """The region ``[offset, offset + size)`` (default: to the end) as external memory."""
        if self.fd is None:
            raise ValueError("this DmaBuffer is closed; allocate a new one")
        size = self.nbytes - offset if size is None else size
        return from_fd(self.fd, size, offset=offset, dtype=dtype)

    def close(self) -> None:
        """Close the fd (a binding that imported it keeps its own reference)."""
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> DmaBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.fd is None else f"fd {self.fd}"
        return f"<rkrt.external.DmaBuffer {self.nbytes} bytes from {self.heap!r} ({state})>"


def dma_alloc(nbytes: int, heap: str = "system") -> DmaBuffer:
    """``nbytes`` of DMA-BUF from the DMA heap ``heap`` (see rkrt.dma_heap.allocate), with a
    writable numpy view; bind ``buf.memory(dtype)``. OSError where there is no such heap."""
    fd = allocate(nbytes, heap)
    try:
        return DmaBuffer(fd, nbytes, heap)
    except BaseException:
        os.close(fd)
        raise


# ---- used by IOBinding: which tensor gets which memory, checked against the tensors ----


def resolve(kind: str, given: Optional[Mapping[Key, ExternalMemory]],
            specs: tuple[TensorSpec, ...]) -> dict[int, ExternalMemory]:  # fmt: skip
    """Map ``given`` (keys: tensor index or name) onto tensor indexes; check each type."""
    if not given:
        return {}
    if not isinstance(given, Mapping):
        raise TypeError(f"{kind}s= must be a dict {{index or name: ExternalMemory}}, "
                        f"not {type(given).__name__}")  # fmt: skip
    names = {s.name: s.index for s in specs}
    resolved: dict[int, ExternalMemory] = {}
    for key, ext in given.items():
        if isinstance(key, str) and key in names:
            index = names[key]
        elif isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(specs):
            index = key
        else:
            raise ValueError(
                f"{kind}s= names no {kind}: {key!r}; the model's {kind}s are "
                + ", ".join(f"#{s.index} {s.name!r}" for s in specs)
            )
        if not isinstance(ext, ExternalMemory):
            raise TypeError(
                f"{kind} {key!r}: expected rkrt.external memory, got {type(ext).__name__}; "
                "wrap it with rkrt.external.from_fd(...), from_phys(...) or dma_alloc(...).memory()"
            )
        if index in resolved:
            raise ValueError(f"{kind} #{index} is given twice (by index and by name)")
        _check_type(kind, specs[index], ext)
        resolved[index] = ext
    return resolved


def _check_type(kind: str, spec: TensorSpec, ext: ExternalMemory) -> None:
    if kind == "input":
        accepted = tuple(d for d in accepted_input_dtypes(spec.dtype) if d in TYPE_OF_NUMPY)
    else:
        accepted = (_F32,) if spec.dtype == _F32 else (_F32, spec.dtype)
        if not ext.writable:
            raise ValueError(
                f"output {spec.name!r} (#{spec.index}) cannot be bound to read-only memory "
                f"({ext!r}); the runtime writes its results there"
            )
    if ext.dtype not in accepted:
        raise DTypeError(
            f"{kind} {spec.name!r} (#{spec.index}) is bound to {ext.dtype} memory, which the "
            f"runtime cannot take for a {spec.dtype} {kind}; accepted: "
            + ", ".join(str(d) for d in accepted)
            + ". Fix: describe the memory with the dtype it really holds, or convert upstream"
        )


def check_size(kind: str, spec: TensorSpec, ext: ExternalMemory, needed: int) -> None:
    """ShapeError unless the region holds exactly ``needed`` bytes (checked before C)."""
    if ext.nbytes != needed:
        raise ShapeError(
            f"{kind} {spec.name!r} (#{spec.index}) is bound to {ext.nbytes} bytes, but the "
            f"tensor {spec.shape} in {ext.dtype} takes exactly {needed} bytes (for a dynamic "
            f"model: at its largest shape). Fix: pass size={needed} (and the frame's offset)"
        )
