"""Memory: many run() calls and open/close cycles keep RSS flat and leave nothing live.

Bounded here (10^5 runs, 10^3 open/close cycles); scripts/reliability_full.py runs 10^6 and
10^4 with the same functions. RSS is read after a warm-up (slabs, caches and allocator arenas
reach their steady size first); the tolerance absorbs allocator noise, not a per-call leak
(a leak of even 8 bytes per call would be 800 KiB over 10^5 calls).
"""

from __future__ import annotations

import gc
from typing import Callable

import numpy as np
import rkrt_support
from fake_rknnrt import FakeRuntime
from rkrt_support import inputs_for, mlp, rss_bytes

import rkrt

MODEL = mlp((8, 32, 4), dtype="float16", seed=9)
TOLERANCE = 384 * 1024


def rss() -> int:
    gc.collect()
    return rss_bytes()


def growth(work: Callable[[int], None], warmup: int, count: int) -> int:
    """RSS growth in bytes over `count` units of work, after `warmup` units."""
    work(warmup)
    before = rss()
    work(count)
    return rss() - before


def run_calls(count: int) -> None:
    x = inputs_for(MODEL)[0]
    with rkrt.Session(MODEL.to_bytes()) as s, s.dup() as d, d.bind() as b:
        out = [np.empty_like(y) for y in s.run(x)]
        for _ in range(count // 4):
            s.run(x)
            s.run(x.copy())
            s.run(x, out=out)
            b.run()


def open_close_cycles(count: int) -> None:
    blob = MODEL.to_bytes()
    x = inputs_for(MODEL)[0]
    for i in range(count):
        with rkrt.Session(blob) as s:
            if i % 2:
                s.run(x)
            else:
                with s.bind() as b:
                    b.run()


def check_flat(runtime: FakeRuntime, work: Callable[[int], None], warmup: int, count: int) -> int:
    grew = growth(work, warmup, count)
    assert runtime.live() == rkrt_support.NO_LEAKS
    assert runtime.counter("unsafe") == 0
    assert grew < TOLERANCE, f"RSS grew {grew / 1024:.0f} KiB over {count} units"
    return grew


def test_run_calls_keep_rss_flat(rt) -> None:
    grew = check_flat(rt, run_calls, 20_000, 100_000)
    assert rt.calls("rknn_run") == 120_000 + 2  # + one run per work() sizing out=
    print(f"10^5 run calls: RSS {grew / 1024:+.0f} KiB")


def test_open_close_cycles_keep_rss_flat(rt) -> None:
    grew = check_flat(rt, open_close_cycles, 200, 1_000)
    assert rt.calls("rknn_init") == rt.calls("rknn_destroy") == 1_200
    print(f"10^3 open/close cycles: RSS {grew / 1024:+.0f} KiB")
