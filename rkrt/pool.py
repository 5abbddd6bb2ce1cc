"""Pool: one context per NPU core, shared safely by many threads."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from .arguments import PathLike
from .cores import SOC_CORES, CoreMask, MaskLike, detect_soc, validate_mask
from .errors import ClosedError, UnsupportedRuntimeError
from .session import Model, Session


class Pool:
    """Several duplicated contexts of one model, one per core mask in ``cores``.

    ``cores`` defaults to one context per NPU core of the SoC (3 on RK3588, 2 on RK3576) and to a
    single AUTO context elsewhere. :meth:`run` borrows an idle context (blocking while all are
    busy); :meth:`submit` and :meth:`map` run on a thread per context. The GIL is released while
    the runtime computes, so contexts really run in parallel.
    """

    def __init__(
        self,
        model: Model,
        cores: Optional[Sequence[MaskLike]] = None,
        *,
        library: Optional[PathLike] = None,
        soc: Optional[str] = None,
        **session_options: Any,
    ) -> None:
        soc = detect_soc(soc)
        masks = [validate_mask(m, soc) for m in (cores or SOC_CORES.get(soc, (CoreMask.AUTO,)))]
        if not masks:
            raise ValueError("cores must name at least one core mask")
        self._executor: Optional[ThreadPoolExecutor] = None
        self._lock = threading.Lock()
        self._closed = False
        first = Session(model, core_mask=masks[0], library=library, soc=soc, **session_options)
        sessions = [first]
        try:
            if first.is_dynamic and len(masks) > 1:
                raise UnsupportedRuntimeError(
                    f"a Pool of {len(masks)} contexts duplicates the first one, which the runtime "
                    "does not support for dynamic-shape models (RKNN API user guide 1.5.2, "
                    "'Dynamic shape input'). Pass cores=[one mask], or open one rkrt.Session per "
                    "core yourself"
                )
            for mask in masks[1:]:
                sessions.append(first.dup(core_mask=mask))
        except BaseException:
            for s in sessions:
                s.close()
            raise
        self.sessions: tuple[Session, ...] = tuple(sessions)
        self._idle: queue.SimpleQueue[Session] = queue.SimpleQueue()
        for s in self.sessions:
            self._idle.put(s)

    def run(self, *arrays: Any, out: Optional[Sequence[np.ndarray]] = None) -> list[np.ndarray]:
        """Session.run on the next idle context."""
        if self._closed:
            raise ClosedError("this rkrt.Pool is closed; open a new one")
        session = self._idle.get()
        try:
            return session.run(*arrays, out=out)
        finally:
            self._idle.put(session)

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise ClosedError("this rkrt.Pool is closed; open a new one")
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=len(self.sessions), thread_name_prefix="rkrt-pool"
                )
            return self._executor

    def submit(self, *arrays: Any) -> Future[list[np.ndarray]]:
        """Run in the background; a Future of the outputs."""
        return self._pool().submit(self.run, *arrays)

    def map(
        self, inputs: Iterable[Any], timeout: Optional[float] = None
    ) -> Iterator[list[np.ndarray]]:
        """Outputs for each item of ``inputs`` (an array, a list of arrays or a dict), in order."""
        return self._pool().map(self.run, inputs, timeout=timeout)

    def close(self) -> None:
        """Wait for submitted work, then close every context. Calling it again does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        # One context failing to close must not leak the others: close all, then report.
        errors = []
        for s in self.sessions:
            try:
                s.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.sessions)

    def __repr__(self) -> str:
        masks = ", ".join(s.core_mask.name for s in self.sessions)
        return f"<rkrt.Pool [{masks}]{' (closed)' if self._closed else ''}>"
