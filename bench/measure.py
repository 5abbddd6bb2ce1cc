"""Timing and memory probes shared by the benchmark scripts (plain Python, runs in the guest)."""

from __future__ import annotations

import gc
import os
import time
from typing import Any, Callable


def time_calls(call: Callable[[], Any], n: int) -> list[int]:
    """Per-call wall time in ns of n calls."""
    clock = time.perf_counter_ns
    samples = [0] * n
    for i in range(n):
        t0 = clock()
        call()
        samples[i] = clock() - t0
    return samples


def rss_bytes() -> int:
    """Resident set size of this process (under qemu-user: the emulator's, guest included)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_growth(call: Callable[[], Any], n: int) -> int:
    """RSS after n more calls minus RSS before (both after a full collection)."""
    gc.collect()
    before = rss_bytes()
    for _ in range(n):
        call()
    gc.collect()
    return rss_bytes() - before
