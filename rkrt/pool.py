"""Pool: one context per NPU core, shared by many threads and coroutines, with a bound on work
in flight."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import weakref
from collections import deque
from concurrent.futures import Future
from typing import (
    Any,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Optional,
    Sequence,
    Union,
)

import numpy as np

from .batches import run_batch
from .cores import SOC_CORES, CoreMask, MaskLike, detect_soc, validate_mask
from .errors import ClosedError
from .gate import Gate
from .library import PathLike
from .session import Model, Session

Outputs = list[np.ndarray]
# One queued task: its future, and what to call on the borrowed session (with its arguments).
_Task = tuple[Future, Callable[..., Any], tuple[Any, ...]]


def _run(session: Session, *arrays: Any) -> Outputs:
    return session.run(*arrays)


class Pool:
    """Several duplicated contexts of one model, one per core mask in ``cores``.

    ``cores`` defaults to one context per NPU core of the SoC (3 on RK3588, 2 on RK3576) and to a
    single AUTO context elsewhere. :meth:`run` borrows an idle context in the calling thread
    (blocking while all are busy). :meth:`submit`, :meth:`imap`, :meth:`map`, :meth:`run_async`,
    :meth:`imap_async` and :meth:`run_batch` run on the pool's own threads, one per context. The
    GIL is released while the runtime computes, so contexts really run in parallel.

    Backpressure: at most ``max_pending`` requests (default: twice the number of contexts) are
    queued or running at once. Beyond that ``submit`` blocks until one finishes (or raises
    :class:`rkrt.BusyError` with ``block=False``), ``run_async`` awaits without blocking its
    event loop, and ``imap``/``map``/``imap_async`` read their input only as fast as results
    come back, so a producer faster than the NPU cannot grow memory without limit.

    ``close()`` finishes the work already accepted, then closes the contexts; ``close(cancel=
    True)`` cancels what has not started (its futures report cancelled), lets the runs in
    progress finish, then closes. Leaving a ``with`` block by an exception cancels; leaving it
    normally finishes. Either way close returns once no context is running.
    """

    def __init__(
        self,
        model: Model,
        cores: Optional[Sequence[MaskLike]] = None,
        *,
        max_pending: Optional[int] = None,
        library: Optional[PathLike] = None,
        soc: Optional[str] = None,
        **session_options: Any,
    ) -> None:
        soc = detect_soc(soc)
        masks = [validate_mask(m, soc) for m in (cores or SOC_CORES.get(soc, (CoreMask.AUTO,)))]
        if not masks:
            raise ValueError("cores must name at least one core mask")
        if max_pending is None:
            max_pending = 2 * len(masks)
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(
                f"max_pending must be a positive int (requests queued or running at once), "
                f"not {max_pending!r}; the default is twice the number of contexts"
            )
        self._lock = threading.Lock()
        self._closed = False
        self._threads: list[threading.Thread] = []
        first = Session(model, core_mask=masks[0], library=library, soc=soc, **session_options)
        sessions = [first]
        try:
            for mask in masks[1:]:
                sessions.append(first.dup(core_mask=mask))
        except BaseException:
            for s in sessions:
                s.close()
            raise
        self.sessions: tuple[Session, ...] = tuple(sessions)
        self.max_pending = max_pending
        self._gate = Gate(max_pending, "rkrt.Pool")
        self._tasks: queue.SimpleQueue[Optional[_Task]] = queue.SimpleQueue()
        self._idle: queue.SimpleQueue[Session] = queue.SimpleQueue()
        for s in self.sessions:
            self._idle.put(s)

    # ---- in the caller's thread ----

    def run(self, *arrays: Any, out: Optional[Sequence[np.ndarray]] = None) -> Outputs:
        """Session.run on the next idle context, in this thread."""
        if self._closed:
            raise ClosedError("this rkrt.Pool is closed; open a new one")
        session = self._idle.get()
        try:
            return session.run(*arrays, out=out)
        finally:
            self._idle.put(session)

    # ---- on the pool's threads ----

    @staticmethod
    def _serve(tasks: queue.SimpleQueue[Optional[_Task]], idle: queue.SimpleQueue[Session]) -> None:
        # No reference to the Pool, nor to a finished task while waiting (its future's
        # callbacks hold the Pool): an unclosed Pool is still collected (see _stop).
        get = tasks.get
        while True:
            task = get()
            if task is None:
                return
            _do(task, idle)
            del task

    def _enqueue(self, call: Callable[..., Any], args: tuple[Any, ...]) -> Future:
        """Queue a task whose gate slot the caller holds; the slot is given back when the task
        is done, cancelled while queued included."""
        future: Future = Future()
        future.add_done_callback(self._release)
        with self._lock:
            if self._closed:
                future.cancel()
                raise ClosedError("this rkrt.Pool is closed; open a new one")
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._serve, args=(self._tasks, self._idle),
                                     name=f"rkrt-pool-{i}", daemon=True)
                    for i in range(len(self.sessions))
                ]  # fmt: skip
                self._stop = weakref.finalize(self, _stop, self._tasks, len(self._threads))
                for t in self._threads:
                    t.start()
            self._tasks.put((future, call, args))
        return future

    def _release(self, _: Future) -> None:
        self._gate.release()

    def _submit_call(self, call: Callable[..., Any], *args: Any, block: bool = True) -> Future:
        self._gate.acquire(block)
        return self._enqueue(call, args)

    def submit(self, *arrays: Any, block: bool = True) -> Future[Outputs]:
        """Run in the background; a Future of the outputs.

        Waits while ``max_pending`` requests are in flight; ``block=False`` raises
        :class:`rkrt.BusyError` instead. Cancelling the future before it starts skips the run.
        """
        return self._submit_call(_run, *arrays, block=block)

    def imap(self, inputs: Iterable[Any], timeout: Optional[float] = None) -> Iterator[Outputs]:
        """Outputs for each item of ``inputs`` (an array, a list of arrays or a dict), in order.

        Lazy and bounded: ``inputs`` is read only while fewer than ``max_pending`` of its items
        are in flight. ``timeout`` (seconds, for the whole stream) raises TimeoutError. Leaving
        the loop early cancels the items not started.
        """
        self._check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._imap(iter(inputs), deadline)

    def _imap(self, inputs: Iterator[Any], deadline: Optional[float]) -> Iterator[Outputs]:
        window: deque[Future] = deque()
        limit = self.max_pending
        try:
            for x in inputs:
                if len(window) >= limit:
                    yield _result(window.popleft(), deadline)
                window.append(self.submit(x))
            while window:
                yield _result(window.popleft(), deadline)
        finally:
            for f in window:
                f.cancel()

    def map(self, inputs: Iterable[Any], timeout: Optional[float] = None) -> list[Outputs]:
        """All outputs of :meth:`imap`, as a list."""
        return list(self.imap(inputs, timeout))

    async def run_async(self, *arrays: Any) -> Outputs:
        """``await pool.run_async(x)``: Session.run on the pool's threads, never blocking the loop.

        Awaits a free slot while ``max_pending`` requests are in flight. Cancelling the await
        skips the run if it has not started; a run already started finishes on its context
        (which is never left mid-run) and its result, a fresh array, is dropped.
        """
        await self._gate.acquire_async()
        return await asyncio.wrap_future(self._enqueue(_run, arrays))

    async def imap_async(
        self, inputs: Union[Iterable[Any], AsyncIterable[Any]]
    ) -> AsyncIterator[Outputs]:
        """``async for y in pool.imap_async(xs)``: :meth:`imap` for an event loop.

        ``inputs`` may be an iterable or an async iterable; it is read only while fewer than
        ``max_pending`` of its items are in flight. Leaving the loop cancels the rest.
        """
        self._check_open()
        window: deque[asyncio.Future[Outputs]] = deque()
        limit = self.max_pending
        try:
            async for x in _aiter(inputs):
                if len(window) >= limit:
                    yield await window.popleft()
                await self._gate.acquire_async()
                window.append(asyncio.wrap_future(self._enqueue(_run, (x,))))
            while window:
                yield await window.popleft()
        finally:
            for f in window:
                f.cancel()

    def run_batch(self, *arrays: Any) -> Outputs:
        """Every row of the inputs through the model, the rows split over all contexts.

        For models compiled with several batch sizes (and static ones, at their one size):
        the N rows of each input (positional in model order, or one dict by name) are cut into
        chunks of the compiled sizes, at least as many chunks as contexts where the sizes
        allow, run in parallel and stitched back in order: one float32 array of N rows per
        output, equal to running the chunks one by one on a single context.
        """
        self._check_open()
        return run_batch(self.sessions[0], arrays, len(self.sessions), self._submit_call)

    # ---- lifecycle ----

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("this rkrt.Pool is closed; open a new one")

    @property
    def in_flight(self) -> int:
        """Requests queued or running on the pool's threads now (at most ``max_pending``)."""
        return self._gate.in_flight

    def close(self, cancel: bool = False) -> None:
        """Finish accepted work (``cancel=True``: cancel what has not started), then close
        every context. Calling it again does nothing.

        Callers blocked in submit/run_async get ClosedError. Safe from a future's callback.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._gate.close()
            threads = self._threads
            if cancel:
                self._cancel_queued()
            if threads:
                self._stop()  # after the queued tasks: those finish first
        me = threading.current_thread()
        for t in threads:
            if t is not me:
                t.join()
        # One context failing to close must not leak the others: close all, then report.
        errors = []
        for s in self.sessions:
            try:
                s.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def _cancel_queued(self) -> None:
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                return
            if task is not None:
                task[0].cancel()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(cancel=exc_type is not None)

    def __len__(self) -> int:
        return len(self.sessions)

    def __repr__(self) -> str:
        masks = ", ".join(s.core_mask.name for s in self.sessions)
        return f"<rkrt.Pool [{masks}]{' (closed)' if self._closed else ''}>"


def _do(task: _Task, idle: queue.SimpleQueue[Session]) -> None:
    future, call, args = task
    if not future.set_running_or_notify_cancel():
        return  # cancelled while queued: its slot was given back then
    session = idle.get()
    try:
        result = call(session, *args)
    except BaseException as exc:
        idle.put(session)
        future.set_exception(exc)
    else:
        # Back before set_result: a callback may close the pool.
        idle.put(session)
        future.set_result(result)


def _stop(tasks: queue.SimpleQueue[Optional[_Task]], n_threads: int) -> None:
    """End the pool's threads once they reach this point of the queue."""
    for _ in range(n_threads):
        tasks.put(None)


def _result(future: Future, deadline: Optional[float]) -> Any:
    if deadline is None:
        return future.result()
    return future.result(max(0.0, deadline - time.monotonic()))


async def _aiter(inputs: Union[Iterable[Any], AsyncIterable[Any]]) -> AsyncIterator[Any]:
    if hasattr(inputs, "__aiter__"):
        async for x in inputs:  # type: ignore[union-attr]
            yield x
    else:
        for x in inputs:  # type: ignore[union-attr]
            yield x

