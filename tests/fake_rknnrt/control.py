"""FakeRuntime: the test double's control API (counters, faults, delays) through cffi."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import cffi

HEADER = Path(__file__).resolve().parent / "fake_control.h"
COUNTERS = (
    "size_mismatch",
    "mixed_api",
    "concurrent",
    "bad_pointer",
    "matmul_unsafe",
    "sync_direction",
    "sync_order",
    "unsafe",
)
INPUT_FIELDS = ("type", "size", "buf", "pass_through", "fmt")
MEM_FIELDS = ("last_sync", "syncs_to_device", "syncs_from_device", "unread_output")


@functools.cache
def _ffi() -> cffi.FFI:
    ffi = cffi.FFI()
    ffi.cdef(HEADER.read_text())
    return ffi


class FakeRuntime:
    """Handle on the control API of a built test-double librknnrt.so.

    dlopen of the same path returns the library instance rkrt (or any raw binding)
    uses, so the counters seen here are theirs.
    """

    def __init__(self, so_path: str | Path) -> None:
        self.path = Path(so_path)
        self.ffi = _ffi()
        self.lib = self.ffi.dlopen(str(self.path))
        count = self.lib.fake_function_count()
        self.functions: tuple[str, ...] = tuple(
            self.ffi.string(self.lib.fake_function_name(i)).decode() for i in range(count)
        )

    def _function(self, name: str) -> bytes:
        if name not in self.functions:
            raise ValueError(
                f"{name!r} is not an rknn_* function of the ABI; known: {self.functions}"
            )
        return name.encode()

    def reset(self) -> None:
        """Zero call counts, misuse counters, faults, the run delay; live objects stay."""
        self.lib.fake_reset()

    def live(self) -> dict[str, int]:
        """Live contexts, rknn_tensor_mem blocks and outputs not yet released."""
        return {
            "contexts": int(self.lib.fake_live_contexts()),
            "mems": int(self.lib.fake_live_mems()),
            "outputs": int(self.lib.fake_live_outputs()),
        }

    def calls(self, name: str) -> int:
        """Calls of one rknn_* function since the last reset."""
        return int(self.lib.fake_call_count(self._function(name)))

    def total_calls(self) -> int:
        return int(self.lib.fake_call_count_total())

    def inject(self, name: str, nth: int = 1, code: int = -5) -> None:
        """Make the nth next call of `name` fail with `code` before doing anything
        (pointer-returning functions return NULL)."""
        if nth < 1:
            raise ValueError(f"nth must be >= 1, got {nth}")
        self.lib.fake_inject(self._function(name), nth, code)

    def set_run_delay(self, us: int, jitter_us: int = 0) -> None:
        """Each rknn_run sleeps us + uniform(0, jitter_us) microseconds, holding no global lock."""
        if us < 0 or jitter_us < 0:
            raise ValueError(f"delays must be >= 0, got us={us}, jitter_us={jitter_us}")
        self.lib.fake_set_run_delay(us, jitter_us)

    def allow_non_dmabuf(self, allow: bool = True) -> None:
        """Let rknn_create_mem_from_fd take fds that are not DMA-BUFs (memfd, files), as a
        caller that opted in with require_dmabuf=False expects; reset() refuses them again."""
        self.lib.fake_allow_non_dmabuf(int(allow))

    def counter(self, name: str) -> int:
        """A misuse counter: one of COUNTERS; zero for a correct caller."""
        if name not in COUNTERS:
            raise ValueError(f"unknown counter {name!r}; known: {COUNTERS}")
        return int(self.lib.fake_counter(name.encode()))

    def counters(self) -> dict[str, int]:
        return {name: self.counter(name) for name in COUNTERS}

    def weight_bytes(self) -> dict[str, int]:
        """Model weight bytes allocated since the last reset and held now (a context opened with
        RKNN_FLAG_SHARE_WEIGHT_MEM allocates none)."""
        return {"allocated": int(self.lib.fake_weight_bytes_allocated()),
                "in_use": int(self.lib.fake_weight_bytes_in_use())}  # fmt: skip

    def max_parallel_runs(self) -> int:
        """Most rknn_run calls in flight at once since the last reset."""
        return int(self.lib.fake_max_parallel_runs())

    def reset_run_gaps(self) -> None:
        """Start counting afresh the time contexts sit between two of their runs, and the
        time runs take."""
        self.lib.fake_reset_run_gaps()

    def run_gaps(self) -> tuple[float, int]:
        """Mean seconds from one rknn_run's return to the next rknn_run on the same context,
        and how many such gaps there were, since reset_run_gaps() (or reset())."""
        return self._mean_seconds(self.lib.fake_run_gaps)

    def run_times(self) -> tuple[float, int]:
        """Mean seconds an rknn_run took (entry to return), and how many runs, of those that
        entered since reset_run_gaps() (or reset())."""
        return self._mean_seconds(self.lib.fake_run_times)

    def run_ends(self) -> list[tuple[float, int, int]]:
        """(seconds on the double's clock, context, CPU) of each rknn_run's return, in order,
        of the runs that entered since reset_run_gaps() (or reset()); read it between runs."""
        n = int(self.lib.fake_run_ends(self.ffi.NULL, self.ffi.NULL, self.ffi.NULL, 0))
        if n < 0:
            raise RuntimeError("more runs returned than the double keeps: reset_run_gaps() sooner")
        ends = self.ffi.new("long long[]", n)
        contexts = self.ffi.new("unsigned long long[]", n)
        cpus = self.ffi.new("int[]", n)
        self.lib.fake_run_ends(ends, contexts, cpus, n)
        return [(ends[k] / 1e9, int(contexts[k]), int(cpus[k])) for k in range(n)]

    def _mean_seconds(self, read: Callable[..., None]) -> tuple[float, int]:
        total, count = self.ffi.new("long long*"), self.ffi.new("long long*")
        read(total, count)
        return (total[0] / count[0] / 1e9 if count[0] else 0.0), int(count[0])

    def runs_in_flight(self) -> int:
        """rknn_run calls in flight now; each has already read the run delay it sleeps."""
        return int(self.lib.fake_runs_in_flight())

    def last_input(self, index: int) -> dict[str, int]:
        """What the last rknn_inputs_set received for input `index`: type, size, buf (the
        pointer as an int), pass_through, fmt; all -1 before any call since the last reset."""
        return {f: int(self.lib.fake_last_input(index, f.encode())) for f in INPUT_FIELDS}

    def mem_info(self, address: int) -> dict[str, int]:
        """Cache maintenance of the live rknn_tensor_mem at `address` (the struct's address as
        an int): last_sync (mode, 0 none), syncs_to_device, syncs_from_device, unread_output."""
        mem = self.ffi.cast("void*", address)
        info = {f: int(self.lib.fake_mem_info(mem, f.encode())) for f in MEM_FIELDS}
        if info["last_sync"] < 0:
            raise ValueError(f"{address:#x} is not a live rknn_tensor_mem of this runtime")
        return info

    def last_init_flags(self) -> int:
        return int(self.lib.fake_last_init_flags())

    def core_mask(self, ctx: int) -> int:
        """Current core mask of a live context handle."""
        mask = int(self.lib.fake_core_mask(ctx))
        if mask < 0:
            raise ValueError(f"{ctx:#x} is not a live context of this runtime")
        return mask

    def last_error(self) -> str:
        """Why the calling thread's last failing rknn_* call failed."""
        return self.ffi.string(self.lib.fake_last_error()).decode()
