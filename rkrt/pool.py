"""Pool: one context per NPU core, shared by many threads and coroutines, with a bound on work
in flight."""

from __future__ import annotations

import contextlib
import functools
import queue
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

from .arguments import PathLike
from .batches import run_batch
from .cores import SOC_CORES, CoreMask, MaskLike, detect_soc, validate_mask
from .dispatch import Dispatcher
from .errors import ClosedError
from .model_file import Model
from .session import Session

Outputs = list[np.ndarray]
# Requests in flight per context by default: enough that a context finishing a run finds the
# next one queued even while the consumer waits for an earlier, slower result.
DEFAULT_PENDING_PER_CONTEXT = 4


def _on_idle(idle: queue.SimpleQueue[Session], call: Callable[..., Any], *args: Any) -> Any:
    """``call(session, *args)`` on the next idle context (a module function: tasks hold the
    queue, never the Pool)."""
    session = idle.get()
    try:
        return call(session, *args)
    finally:
        idle.put(session)  # before the result is published: a callback may close the pool


def _run(session: Session, *arrays: Any) -> Outputs:
    return session.run(*arrays)


@contextlib.contextmanager
def _lend(idle: queue.SimpleQueue[Session]) -> Iterator[Callable[..., Outputs]]:
    """An idle context's run, for as many calls as the holder makes in a row."""
    session = idle.get()
    try:
        yield session.run
    finally:
        idle.put(session)


class Pool:
    """Several duplicated contexts of one model, one per core mask in ``cores``.

    ``cores`` defaults to one context per NPU core of the SoC (3 on RK3588, 2 on RK3576) and to a
    single AUTO context elsewhere. :meth:`run` borrows an idle context in the calling thread
    (blocking while all are busy). :meth:`submit`, :meth:`imap`, :meth:`map`, :meth:`run_async`,
    :meth:`imap_async` and :meth:`run_batch` run on the pool's own threads, one per context. The
    GIL is released while the runtime computes, so contexts really run in parallel.

    Backpressure: at most ``max_pending`` requests (default: four per context) are
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
        self._closed = False
        pending = DEFAULT_PENDING_PER_CONTEXT * len(masks) if max_pending is None else max_pending
        # Before any context is opened: a bad max_pending costs nothing to refuse.
        self._dispatch = Dispatcher(self, len(masks), pending, "rkrt.Pool")
        self.max_pending: int = pending
        first = Session(model, core_mask=masks[0], library=library, soc=soc, **session_options)
        sessions = [first]
        try:
            for mask in masks[1:]:
                if first.is_dynamic:
                    # rknn_dup_context does not support dynamic-shape models (RKNN API user
                    # guide 1.5.2, 'Dynamic shape input'), nor do shared weights: each further
                    # context is opened from the model on its own and holds its own weights.
                    more = Session(model, core_mask=mask, library=library, soc=soc,
                                   **session_options)  # fmt: skip
                else:
                    more = first.dup(core_mask=mask)
                sessions.append(more)
        except BaseException:
            for s in sessions:
                s.close()
            raise
        self.sessions: tuple[Session, ...] = tuple(sessions)
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

    def apply(self, fn: Callable[..., Any], *args: Any, block: bool = True) -> Future:
        """``fn(session, *args)`` on the next idle context, on the pool's threads: a Future of
        what it returns. For work beyond one run (e.g. a zero-copy binding per context).

        Bounded by ``max_pending`` like :meth:`submit`.
        """
        return self._dispatch.submit(_on_idle, self._idle, fn, *args, block=block)

    def submit(self, *arrays: Any, block: bool = True) -> Future[Outputs]:
        """Run in the background; a Future of the outputs.

        Waits while ``max_pending`` requests are in flight; ``block=False`` raises
        :class:`rkrt.BusyError` instead. Cancelling the future before it starts skips the run.
        """
        return self.apply(_run, *arrays, block=block)

    def _run_one(self) -> Callable[[Any], Outputs]:
        idle = self._idle
        return lambda x: _on_idle(idle, _run, x)

    def imap(self, inputs: Iterable[Any], timeout: Optional[float] = None) -> Iterator[Outputs]:
        """Outputs for each item of ``inputs`` (an array, a list of arrays or a dict), in order.

        Lazy and bounded: ``inputs`` is read only while fewer than ``max_pending`` of its items
        are in flight. ``timeout`` (seconds, for the whole stream) raises TimeoutError. Leaving
        the loop early cancels the items not started.
        """
        return self._dispatch.imap(self._run_one(), inputs, timeout)

    def map(self, inputs: Iterable[Any], timeout: Optional[float] = None) -> list[Outputs]:
        """All outputs of :meth:`imap`, as a list.

        A list, tuple or array of inputs is not streamed through this thread: the pool's threads
        take the next item themselves, one each at most, which is the fastest way through a batch
        of requests. Any other iterable is read lazily, as :meth:`imap` does. The first failing
        item (in order) raises, after the items in progress have finished.
        """
        if isinstance(inputs, (list, tuple, np.ndarray)):
            return self._dispatch.map_sequence(
                functools.partial(_lend, self._idle), inputs, timeout
            )
        return list(self.imap(inputs, timeout))

    async def run_async(self, *arrays: Any) -> Outputs:
        """``await pool.run_async(x)``: Session.run on the pool's threads, never blocking the loop.

        Awaits a free slot while ``max_pending`` requests are in flight. Cancelling the await
        skips the run if it has not started; a run already started finishes on its context
        (which is never left mid-run) and its result, a fresh array, is dropped.
        """
        return await self._dispatch.run_async(_on_idle, self._idle, _run, *arrays)

    def imap_async(
        self, inputs: Union[Iterable[Any], AsyncIterable[Any]]
    ) -> AsyncIterator[Outputs]:
        """``async for y in pool.imap_async(xs)``: :meth:`imap` for an event loop.

        ``inputs`` may be an iterable or an async iterable; it is read only while fewer than
        ``max_pending`` of its items are in flight. Leaving the loop cancels the rest.
        """
        return self._dispatch.imap_async(self._run_one(), inputs)

    def run_batch(self, *arrays: Any) -> Outputs:
        """Every row of the inputs through the model, the rows split over all contexts.

        For models compiled with several batch sizes (and static ones, at their one size):
        the N rows of each input (positional in model order, or one dict by name) are cut into
        chunks of the compiled sizes, at least as many chunks as contexts where the sizes
        allow, run in parallel and stitched back in order: one float32 array of N rows per
        output, equal to running the chunks one by one on a single context.
        """
        self._dispatch.check_open()
        return run_batch(self.sessions[0], arrays, len(self.sessions), self.apply)

    # ---- lifecycle ----

    @property
    def in_flight(self) -> int:
        """Requests queued or running on the pool's threads now (at most ``max_pending``)."""
        return self._dispatch.in_flight

    def close(self, cancel: bool = False) -> None:
        """Finish accepted work (``cancel=True``: cancel what has not started), then close
        every context. Calling it again does nothing.

        Callers blocked in submit/run_async get ClosedError. Safe from a future's callback.
        """
        if self._closed:
            return
        self._closed = True
        self._dispatch.close(cancel)
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

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(cancel=exc_type is not None)

    def __len__(self) -> int:
        return len(self.sessions)

    def __repr__(self) -> str:
        masks = ", ".join(s.core_mask.name for s in self.sessions)
        return f"<rkrt.Pool [{masks}]{' (closed)' if self._closed else ''}>"
