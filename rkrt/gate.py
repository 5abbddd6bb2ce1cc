"""Gate: at most N tasks admitted at once; threads wait blocking, coroutines wait awaiting.

One FIFO of waiters of both kinds, so a thread and an event loop feeding the same Pool share
its bound fairly. A slot freed while someone waits is handed to the first waiter directly
(never put back and raced for), which is what keeps the order of admission the order of
arrival and lets a cancelled coroutine give back exactly the slot it may have been handed.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any, Union

from .errors import BusyError, ClosedError

_Waiter = Union[Any, "tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]"]


class Gate:
    """A counting semaphore of ``limit`` slots that threads and coroutines both wait on."""

    def __init__(self, limit: int, what: str) -> None:
        self._lock = threading.Lock()
        self._free = limit
        self._limit = limit
        self._what = what  # names the owner in errors ("rkrt.Pool")
        self._waiters: deque[_Waiter] = deque()
        self._closed = False

    @property
    def in_flight(self) -> int:
        """Slots taken now."""
        return self._limit - self._free

    def _refuse(self) -> ClosedError:
        return ClosedError(f"this {self._what} is closed; open a new one")

    def _took_free(self) -> bool:
        """Under the lock: ClosedError if closed; else take a free slot if nobody waits."""
        if self._closed:
            raise self._refuse()
        if self._free and not self._waiters:
            self._free -= 1
            return True
        return False

    def acquire(self, block: bool = True) -> None:
        """Take a slot, waiting while none is free (``block=False``: raise BusyError instead)."""
        with self._lock:
            if self._took_free():
                return
            if not block:
                raise BusyError(
                    f"{self._limit} requests are already in flight on this {self._what} "
                    f"(max_pending={self._limit}); wait for results, submit with block=True, "
                    "or open it with a larger max_pending"
                )
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        try:
            waiter.acquire()  # released by release() or close(): the slot is ours
        except BaseException:  # e.g. KeyboardInterrupt while waiting
            with self._lock:
                granted = waiter not in self._waiters
                if not granted:
                    self._waiters.remove(waiter)
            if granted:
                self.release()
            raise
        self._after_grant()

    async def acquire_async(self) -> None:
        """Take a slot, awaiting while none is free; cancellation gives back what it took."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._took_free():
                return
            waiter: asyncio.Future[None] = loop.create_future()
            entry = (loop, waiter)
            self._waiters.append(entry)
        try:
            await waiter
        except asyncio.CancelledError:
            with self._lock:
                queued = entry in self._waiters
                if queued:
                    self._waiters.remove(entry)
            # Handed a slot: if the handing-over already resolved the future, the slot is ours
            # to give back; if the future was cancelled first, _grant gives it back.
            if not queued and waiter.done() and not waiter.cancelled():
                self.release()
            raise
        self._after_grant()

    def _after_grant(self) -> None:
        if self._closed:  # woken by close(): the slot was only lent to say so
            self.release()
            raise self._refuse()

    def release(self) -> None:
        """Give a slot back: to the first waiter if any, else to the free count."""
        with self._lock:
            if not self._waiters:
                self._free += 1
                return
            waiter = self._waiters.popleft()
        self._hand(waiter)

    def _hand(self, waiter: _Waiter) -> None:
        if isinstance(waiter, tuple):
            loop, future = waiter
            try:
                loop.call_soon_threadsafe(self._grant, future)
            except RuntimeError:  # that loop is closed: nobody awaits there any more
                self.release()
        else:
            waiter.release()

    def _grant(self, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            self.release()
        else:
            future.set_result(None)

    def close(self) -> None:
        """Refuse new work; wake every waiter, which then raises ClosedError."""
        with self._lock:
            self._closed = True
            waiters, self._waiters = list(self._waiters), deque()
            self._free -= len(waiters)  # lent to each, given back by _after_grant
        for waiter in waiters:
            self._hand(waiter)
