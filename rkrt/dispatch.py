"""Dispatcher: a few worker threads, a bound on work in flight, futures, streams, asyncio.

The engine under Pool (one thread per context) and Session.run_async (one thread). Tasks are
``(future, fn, args)``: the threads hold a task only while running it, so the owner (a Pool,
a Session) stays collectable, and its finalizer stops the threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
import weakref
from collections import deque
from concurrent.futures import CancelledError, Future
from typing import (
    Any,
    AsyncIterable,
    AsyncIterator,
    Callable,
    ContextManager,
    Iterable,
    Iterator,
    Optional,
    Sequence,
    Union,
)

from .errors import BusyError, ClosedError
from .gate import Gate

# (future, fn, args); a stream task has no future: fn is _fill (one item, which publishes to
# its slot) or _pull (a map's ticket, which takes the next item itself)
_Task = tuple[Optional[Future], Callable[..., Any], tuple[Any, ...]]


class Dispatcher:
    """``n_threads`` threads running submitted calls, at most ``max_pending`` in flight.

    ``owner`` is what the threads work for: when it is collected without close(), they end.
    """

    def __init__(self, owner: object, n_threads: int, max_pending: int, what: str) -> None:
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(
                f"max_pending must be a positive int (requests queued or running at once), "
                f"not {max_pending!r}"
            )
        self.max_pending = max_pending
        self._what = what
        self._n_threads = n_threads
        self._owner = weakref.ref(owner)
        self._gate = Gate(max_pending, what)
        self._tasks: queue.SimpleQueue[Optional[_Task]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._stop: Optional[weakref.finalize] = None

    @property
    def in_flight(self) -> int:
        """Calls queued or running now."""
        return self._gate.in_flight

    def check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"this {self._what} is closed; open a new one")

    def _release(self, _: Future) -> None:
        self._gate.release()

    def _enqueue(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Future:
        """Queue a call whose gate slot the caller holds; the slot is given back when its
        future is done, cancelled while queued included."""
        future: Future = Future()
        future.add_done_callback(self._release)
        self._put(future, fn, args)
        return future

    def _put(self, future: Optional[Future], fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        with self._lock:
            if self._closed:
                closed = ClosedError(f"this {self._what} is closed; open a new one")
                if future is None:
                    _cancel_stream_task(fn, args, closed)
                else:
                    future.cancel()
                raise closed
            if not self._threads:
                self._start()
            self._tasks.put((future, fn, args))

    def _start(self) -> None:
        self._threads = [
            threading.Thread(target=_serve, args=(self._tasks,), daemon=True,
                             name=f"rkrt-{self._what.split('.')[-1].lower()}-{i}")
            for i in range(self._n_threads)
        ]  # fmt: skip
        owner = self._owner()
        if owner is not None:
            self._stop = weakref.finalize(owner, _stop, self._tasks, self._n_threads)
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[..., Any], *args: Any, block: bool = True) -> Future:
        """``fn(*args)`` on a worker thread; waits while ``max_pending`` calls are in flight
        (``block=False``: raises BusyError instead)."""
        self._gate.acquire(block)
        return self._enqueue(fn, args)

    async def run_async(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``await`` of ``fn(*args)`` on a worker thread, awaiting a free slot first.

        Cancelling skips the call if it has not started; one already started finishes
        (never left half done) and its result is dropped.
        """
        await self._gate.acquire_async()
        # A loop slot, not a concurrent Future wrapped for asyncio: one handoff to the loop
        # per call instead of a Condition, callbacks and a second future.
        slot = _LoopSlot(asyncio.get_running_loop())
        self._put(None, _fill, (slot, self._gate.release, lambda a: fn(*a), args))
        try:
            return await slot.waiter
        except asyncio.CancelledError:
            slot.cancelled = True  # not started: skipped; started: finishes, result dropped
            raise

    def imap(
        self, fn: Callable[[Any], Any], inputs: Iterable[Any], timeout: Optional[float]
    ) -> Iterator[Any]:
        """``fn(x)`` for each input, in order, reading ahead at most ``max_pending`` inputs."""
        self.check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._imap(fn, iter(inputs), deadline)

    def _imap(
        self, fn: Callable[[Any], Any], inputs: Iterator[Any], deadline: Optional[float]
    ) -> Iterator[Any]:
        # Streams use _Slot, not Future: a run's result is published with one lock release
        # instead of a Condition and callbacks, which keeps the worker's gap between two runs
        # on a context (Python under the GIL) as short as it can be.
        window: deque[_Slot] = deque()
        limit = self.max_pending
        acquire, release = self._gate.acquire, self._gate.release
        try:
            for x in inputs:
                if len(window) >= limit:
                    yield window.popleft().wait(deadline)
                acquire()
                slot = _Slot()
                self._put(None, _fill, (slot, release, fn, x))
                window.append(slot)
            while window:
                yield window.popleft().wait(deadline)
        finally:
            for slot in window:
                slot.cancelled = True  # a run not started is skipped; one started finishes

    def map_sequence(
        self,
        lend: Callable[[], ContextManager[Callable[[Any], Any]]],
        items: Sequence[Any],
        timeout: Optional[float],
    ) -> list[Any]:
        """``[fn(x) for x in items]`` on the workers, which take the next index themselves.

        A worker enters ``lend()`` for ``fn`` once per turn at the items (e.g. borrowing a
        context for them), not once per item.

        The calling thread only waits for the end: no per-item handoff through it, which is
        what keeps a worker's gap between two runs short. At most one item per worker is in
        flight (fewer if other work holds the ``max_pending`` slots). The first item to fail,
        in order, raises once the items in progress have finished; so does a timeout.
        """
        self.check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        job = _Pull(self, lend, items)
        if not job.n:
            return []
        self._gate.acquire()
        tickets = 1
        while tickets < min(self._n_threads, job.n):
            try:
                self._gate.acquire(block=False)
            except BusyError:
                break
            tickets += 1
        job.tickets = tickets
        for k in range(tickets):
            try:
                self._put(None, _pull, (job,))
            except ClosedError as closed:  # the tickets not queued give back their slots
                for _ in range(tickets - k - 1):
                    _pull_cancelled(job, closed)
                raise
        return job.wait(deadline)

    async def imap_async(
        self, fn: Callable[[Any], Any], inputs: Union[Iterable[Any], AsyncIterable[Any]]
    ) -> AsyncIterator[Any]:
        """:meth:`imap` for an event loop; ``inputs`` may be an async iterable."""
        self.check_open()
        loop = asyncio.get_running_loop()
        window: deque[_LoopSlot] = deque()
        limit = self.max_pending
        release = self._gate.release
        try:
            async for x in _aiter(inputs):
                if len(window) >= limit:
                    yield await window.popleft().waiter
                await self._gate.acquire_async()
                slot = _LoopSlot(loop)
                self._put(None, _fill, (slot, release, fn, x))
                window.append(slot)
            while window:
                yield await window.popleft().waiter
        finally:
            for slot in window:
                slot.cancelled = True  # a run not started is skipped; one started finishes
                slot.waiter.cancel()

    def close(self, cancel: bool = False) -> None:
        """Finish the queued calls (``cancel=True``: cancel them), then end the threads.

        Callers waiting for a slot get ClosedError. Safe from a future's callback."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._gate.close()
            threads = self._threads
            if cancel:
                _cancel_queued(self._tasks)
            if self._stop is not None:
                self._stop()  # after the queued tasks: those finish first
        me = threading.current_thread()
        for t in threads:
            if t is not me:
                t.join()


def _serve(tasks: queue.SimpleQueue[Optional[_Task]]) -> None:
    get = tasks.get
    while True:
        task = get()
        if task is None:
            return
        _do(task)
        del task  # a finished task's future holds callbacks that may hold the owner


class _Slot:
    """One stream item's result: a lock released once it is there (or failed, or skipped)."""

    __slots__ = ("ready", "result", "error", "cancelled")

    def __init__(self) -> None:
        self.ready = threading.Lock()
        self.ready.acquire()
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.cancelled = False

    def publish(self) -> None:
        self.ready.release()

    def wait(self, deadline: Optional[float]) -> Any:
        if deadline is None:
            self.ready.acquire()
        elif not self.ready.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise TimeoutError("the stream's timeout passed before this result was ready")
        if self.error is not None:
            raise self.error
        return self.result


class _LoopSlot:
    """A stream item's result for an event loop: an asyncio future resolved on its loop."""

    __slots__ = ("loop", "waiter", "result", "error", "cancelled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiter: asyncio.Future[Any] = loop.create_future()
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.cancelled = False

    def publish(self) -> None:
        # A closed loop raises RuntimeError here: nobody awaits this result any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if self.waiter.done():
            return
        if self.cancelled:
            self.waiter.cancel()
        elif self.error is not None:
            self.waiter.set_exception(self.error)
        else:
            self.waiter.set_result(self.result)


class _Pull:
    """One map over a sequence: tickets (one per worker taking part) that each run the next
    unclaimed item until another task is queued, then go back to the end of the task queue, so
    other work interleaves."""

    __slots__ = ("dispatcher", "lend", "items", "n", "results", "lock", "claimed", "tickets",
                 "stopped", "failed", "done")  # fmt: skip

    def __init__(
        self,
        dispatcher: Dispatcher,
        lend: Callable[[], ContextManager[Callable[[Any], Any]]],
        items: Sequence[Any],
    ) -> None:
        self.dispatcher = dispatcher  # its queue takes the tickets, its gate their slots
        self.lend, self.items, self.n = lend, items, len(items)
        self.results: list[Any] = [None] * self.n
        self.lock = threading.Lock()
        self.claimed = 0
        self.tickets = 0
        self.stopped = False
        self.failed: Optional[tuple[int, BaseException]] = None  # the first in order
        self.done = threading.Lock()
        self.done.acquire()

    def fail(self, index: int, error: BaseException) -> None:
        """Under the lock: no item is claimed after this; keep the failure first in order."""
        self.stopped = True
        if self.failed is None or index < self.failed[0]:
            self.failed = (index, error)

    def retire(self) -> None:
        """A ticket leaves (its item, if any, finished): its slot back; the last one ends it."""
        with self.lock:
            self.tickets -= 1
            last = not self.tickets
        self.dispatcher._gate.release()
        if last:
            self.done.release()

    def wait(self, deadline: Optional[float]) -> list[Any]:
        try:
            if deadline is None:
                self.done.acquire()
            elif not self.done.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise TimeoutError("the map's timeout passed before every result was ready")
        except BaseException:
            with self.lock:
                self.stopped = True  # the items in progress finish; no other starts
            raise
        if self.failed is not None:
            raise self.failed[1]
        return self.results


def _pull(job: _Pull) -> None:
    """A map's ticket on a worker: run unclaimed items one by one while no other task waits,
    then go back to the end of the task queue (or retire once no item is left)."""
    lock, items, results = job.lock, job.items, job.results
    queue_empty = job.dispatcher._tasks.empty  # False: another task waits for a worker
    others_wait = False
    with job.lend() as fn:
        while True:
            with lock:
                i = job.claimed
                if job.stopped or i >= job.n:
                    break
                job.claimed = i + 1
            try:
                results[i] = fn(items[i])
            except BaseException as exc:
                with lock:
                    job.fail(i, exc)
            if not queue_empty():
                others_wait = True
                break
    if not others_wait:
        job.retire()
        return
    with contextlib.suppress(ClosedError):  # then _put retired it (_pull_cancelled)
        job.dispatcher._put(None, _pull, (job,))


def _pull_cancelled(job: _Pull, error: BaseException) -> None:
    """A ticket skipped (close with cancel, or closed before it could go back in the queue):
    the items not claimed yet report ``error``."""
    with job.lock:
        if job.claimed < job.n:
            job.fail(job.claimed, error)
        job.stopped = True
    job.retire()


def _fill(
    slot: Union[_Slot, _LoopSlot], release: Callable[[], None], fn: Callable[[Any], Any], x: Any
) -> None:
    """A stream item on a worker: run unless its stream was left, give the gate slot back."""
    if slot.cancelled:
        slot.error = CancelledError()
    else:
        try:
            slot.result = fn(x)
        except BaseException as exc:
            slot.error = exc
    release()
    slot.publish()


def _fill_cancelled(slot: Union[_Slot, _LoopSlot], release: Callable[[], None], *_: Any) -> None:
    slot.cancelled = True
    _fill(slot, release, None, None)  # type: ignore[arg-type]


def _cancel_stream_task(
    fn: Callable[..., Any], args: tuple[Any, ...], error: BaseException
) -> None:
    if fn is _pull:
        _pull_cancelled(args[0], error)
    else:
        _fill_cancelled(*args)  # its stream reports CancelledError at that item


def _do(task: _Task) -> None:
    future, fn, args = task
    if future is None:  # a stream task (_fill, _pull): it publishes its own results
        fn(*args)
        return
    if not future.set_running_or_notify_cancel():
        return  # cancelled while queued: its slot was given back then
    try:
        result = fn(*args)
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _stop(tasks: queue.SimpleQueue[Optional[_Task]], n_threads: int) -> None:
    """End the threads once they reach this point of the queue."""
    for _ in range(n_threads):
        tasks.put(None)


def _cancel_queued(tasks: queue.SimpleQueue[Optional[_Task]]) -> None:
    while True:
        try:
            task = tasks.get_nowait()
        except queue.Empty:
            return
        if task is None:
            continue
        future, fn, args = task
        if future is None:
            _cancel_stream_task(fn, args, CancelledError())
        else:
            future.cancel()


async def _aiter(inputs: Union[Iterable[Any], AsyncIterable[Any]]) -> AsyncIterator[Any]:
    if hasattr(inputs, "__aiter__"):
        async for x in inputs:  # type: ignore[union-attr]
            yield x
    else:
        for x in inputs:  # type: ignore[union-attr]
            yield x
